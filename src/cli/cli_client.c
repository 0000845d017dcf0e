/*
 * The admin socket client of `postern queue|status|reload|bans`: resolve
 * the socket, send one request line, read one reply line, unwrap it.
 */
#include "cli/cli_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/strbuf.h"

#define CLI_CLIENT_TIMEOUT_MS (30 * 1000)
#define CLI_CLIENT_REPLY_MAX (64 * 1024 * 1024)

char *cli_client_socket_path(const char *config_path, const char *socket_path)
{
	const char *file = config_path ? config_path : POSTERN_DEFAULT_CONFIG;
	struct config_error err;
	struct config *cfg;
	char msg[1024];
	char *path;

	if (socket_path != NULL)
		return xstrdup(socket_path);
	memset(&err, 0, sizeof(err));
	cfg = config_load(file, &err);
	if (cfg == NULL) {
		config_error_format(&err, msg, sizeof(msg));
		fprintf(stderr, "postern: %s\n", msg);
		return NULL;
	}
	if (cfg->admin_socket == NULL) {
		fprintf(stderr, "postern: %s: [server] admin_socket is not set\n", file);
		config_unref(cfg);
		return NULL;
	}
	path = xstrdup(cfg->admin_socket);
	config_unref(cfg);
	return path;
}

static int cli_client_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static long cli_client_ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* One deadline covers the whole exchange, so a stalled gateway cannot hang the command. */
static int cli_client_wait(int fd, short events, const struct timespec *deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		long left = cli_client_ms_left(deadline);
		int n;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static int cli_client_send_all(int fd, const char *buf, size_t len, const struct timespec *deadline)
{
	while (len > 0) {
		ssize_t n;

		if (cli_client_wait(fd, POLLOUT, deadline) < 0)
			return -1;
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read up to the first newline (bounded by the strbuf's limit); -1 with errno, EPIPE for an early close. */
static int cli_client_read_line(int fd, struct strbuf *line, const struct timespec *deadline)
{
	char buf[16384];

	for (;;) {
		ssize_t n;
		char *nl;

		if (cli_client_wait(fd, POLLIN, deadline) < 0)
			return -1;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EPIPE;
			return -1;
		}
		nl = memchr(buf, '\n', (size_t)n);
		if (strbuf_append(line, buf, nl ? (size_t)(nl - buf) : (size_t)n) < 0) {
			errno = EMSGSIZE;
			return -1;
		}
		if (nl != NULL)
			return 0;
	}
}

/* The gateway answers {"ok":true,"result":...} or {"ok":false,"error":"..."}. */
static json_t *cli_client_unwrap(const char *path, const struct strbuf *line)
{
	json_error_t jerr;
	json_t *reply = json_loadb(line->data ? line->data : "", line->len, 0, &jerr);
	json_t *ok = json_object_get(reply, "ok"), *result = NULL;

	if (!json_is_boolean(ok)) {
		fprintf(stderr, "postern: %s: malformed reply from the gateway\n", path);
	} else if (!json_is_true(ok)) {
		const char *why = json_string_value(json_object_get(reply, "error"));

		fprintf(stderr, "postern: %s\n", why ? why : "the gateway reported an unknown error");
	} else {
		result = json_incref(json_object_get(reply, "result"));
		if (result == NULL)
			result = json_null();
	}
	json_decref(reply);
	return result;
}

json_t *cli_client_request(const char *socket_path, json_t *req)
{
	struct timespec deadline;
	struct strbuf line;
	json_t *result = NULL;
	char *text = NULL, *dumped;
	int fd;

	if ((fd = cli_client_connect(socket_path)) < 0) {
		fprintf(stderr, "postern: cannot connect to %s: %s \xe2\x80\x94 is the gateway running?\n",
			socket_path, strerror(errno));
		return NULL;
	}
	strbuf_init(&line, CLI_CLIENT_REPLY_MAX);
	if ((dumped = json_dumps(req, JSON_COMPACT)) == NULL) {
		fprintf(stderr, "postern: cannot encode the request\n");
		goto out;
	}
	text = xasprintf("%s\n", dumped);
	free(dumped);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += CLI_CLIENT_TIMEOUT_MS / 1000;
	if (cli_client_send_all(fd, text, strlen(text), &deadline) < 0 ||
	    cli_client_read_line(fd, &line, &deadline) < 0) {
		fprintf(stderr, "postern: %s: %s\n", socket_path,
			errno == EPIPE ? "the gateway closed the connection without a reply"
			: errno == ETIMEDOUT ? "no reply within 30 seconds"
			: strerror(errno));
		goto out;
	}
	result = cli_client_unwrap(socket_path, &line);
out:
	close(fd);
	strbuf_free(&line);
	free(text);
	return result;
}

const char *cli_option_value(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "postern: option '%s' needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

int cli_parse_options(int argc, char **argv, struct cli_common_opts *o, int max_words, cli_option_fn own,
		      void *arg)
{
	memset(o, 0, sizeof(*o));
	if (max_words > CLI_MAX_WORDS)
		max_words = CLI_MAX_WORDS;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int rc = own != NULL && a[0] == '-' ? own(arg, argc, argv, &i) : 0;

		if (rc < 0)
			return -1;
		if (rc > 0)
			continue;
		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if ((o->config = cli_option_value(argc, argv, &i)) == NULL)
				return -1;
		} else if (strcmp(a, "--socket") == 0) {
			if ((o->socket = cli_option_value(argc, argv, &i)) == NULL)
				return -1;
		} else if (strcmp(a, "--json") == 0) {
			o->json = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->help = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "postern: unknown option '%s'\n", a);
			return -1;
		} else if (o->nwords == max_words) {
			return -1;
		} else {
			o->words[o->nwords++] = a;
		}
	}
	return 0;
}
