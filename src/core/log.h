/*
 * Logging: one line per event, "key=value" fields after a module tag, to
 * stderr, a file and/or syslog. A file defines LOG_MODULE (anywhere before
 * its first use) and then uses log_info() and friends.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

struct log_options {
	enum log_level level;
	const char *file;   /* NULL: no file */
	bool to_stderr;
	bool to_syslog;
};

/* (Re)configure the process-wide log sink; safe to call again on reload. */
int log_configure(const struct log_options *opts);
/* Reopen the log file (after rotation). */
void log_reopen(void);
int log_level_parse(const char *name, enum log_level *out);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An impossible state: log and abort (Postfix's msg_panic). */
_Noreturn void log_panic(const char *module, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Each .c file defines LOG_MODULE (its tag) before using these. */
#define log_error(...) log_msg(LOG_LEVEL_ERROR, LOG_MODULE, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, LOG_MODULE, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, LOG_MODULE, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, LOG_MODULE, __VA_ARGS__); } while (0)
#define panic(...) log_panic(LOG_MODULE, __VA_ARGS__)

#endif
