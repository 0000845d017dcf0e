#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/*
 * The one piece of process-wide state outside struct postern: the log sink
 * must work before the context exists and from worker threads, so it lives
 * here behind a mutex.
 */
static struct {
	pthread_mutex_t lock;
	enum log_level level;
	int file_fd;
	char *file_path;
	bool to_stderr;
	bool to_syslog;
} log_state = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.level = LOG_LEVEL_INFO,
	.file_fd = -1,
	.to_stderr = true,
};

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static int log_open_file(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_configure(const struct log_options *opts)
{
	int fd = -1;

	if (opts->file != NULL && (fd = log_open_file(opts->file)) < 0)
		return -1;
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file_fd >= 0)
		close(log_state.file_fd);
	free(log_state.file_path);
	log_state.file_fd = fd;
	log_state.file_path = opts->file ? strdup(opts->file) : NULL;
	log_state.level = opts->level;
	log_state.to_stderr = opts->to_stderr;
	if (opts->to_syslog && !log_state.to_syslog)
		openlog("postern", LOG_PID | LOG_NDELAY, LOG_MAIL);
	log_state.to_syslog = opts->to_syslog;
	pthread_mutex_unlock(&log_state.lock);
	return 0;
}

void log_reopen(void)
{
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file_path != NULL) {
		int fd = log_open_file(log_state.file_path);
		if (fd >= 0) {
			if (log_state.file_fd >= 0)
				close(log_state.file_fd);
			log_state.file_fd = fd;
		}
	}
	pthread_mutex_unlock(&log_state.lock);
}

bool log_enabled(enum log_level level)
{
	return level <= log_state.level;
}

static void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
{
	static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[4096];
	struct timespec ts;
	struct tm tm;
	int head, body;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	head = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ postern[%d] %s %s: ",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(), log_level_names[level], module);
	body = vsnprintf(line + head, sizeof(line) - (size_t)head - 1, fmt, ap);
	if (body < 0)
		body = 0;
	if ((size_t)(head + body) > sizeof(line) - 2)
		body = (int)sizeof(line) - 2 - head;
	/* Never let a peer's bytes break the one-line-per-event format. */
	for (int i = head; i < head + body; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	line[head + body] = '\n';

	pthread_mutex_lock(&log_state.lock);
	if (log_state.to_stderr)
		(void)!write(STDERR_FILENO, line, (size_t)(head + body + 1));
	if (log_state.file_fd >= 0)
		(void)!write(log_state.file_fd, line, (size_t)(head + body + 1));
	if (log_state.to_syslog) {
		line[head + body] = '\0';
		syslog(syslog_prio[level], "%s", line + head);
	}
	pthread_mutex_unlock(&log_state.lock);
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vwrite(level, module, fmt, ap);
	va_end(ap);
}

void log_panic(const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, module, fmt, ap);
	va_end(ap);
	abort();
}
