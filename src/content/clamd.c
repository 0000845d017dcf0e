/*
 * clamd's INSTREAM protocol: "zINSTREAM\0", then chunks each prefixed by
 * its length as 4 bytes big-endian, then a zero-length chunk; clamd
 * answers one NUL-terminated line: "stream: OK", "stream: NAME FOUND" or
 * "... ERROR" (e.g. "INSTREAM size limit exceeded. ERROR", after which it
 * closes the connection, so a failed send still reads the answer).
 */
#include "content/clamd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOG_MODULE "clamd"
#include "core/alloc.h"
#include "core/log.h"

#define CLAMD_REPLY_MAX 1024
#define CLAMD_VERSION_TTL 60        /* seconds a VERSION answer is reused */

struct clamd_client {
	char *unix_path;                    /* NULL: TCP */
	char *host;
	char *port;
	unsigned timeout_ms;
	size_t chunk_size;

	pthread_mutex_t version_lock;       /* guards the two fields below */
	char version[VIRUS_VERSION_MAX];
	time_t version_at;                  /* monotonic seconds; 0: never asked */
};

static time_t clamd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* "host:port" or "[v6]:port"; false when the port is missing. */
static bool clamd_parse_tcp(struct clamd_client *c, const char *addr)
{
	const char *colon, *end;

	if (addr[0] == '[') {
		end = strchr(addr, ']');
		if (end == NULL || end[1] != ':' || end[2] == '\0')
			return false;
		c->host = xstrndup(addr + 1, (size_t)(end - addr - 1));
		c->port = xstrdup(end + 2);
		return true;
	}
	colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr || colon[1] == '\0')
		return false;
	c->host = xstrndup(addr, (size_t)(colon - addr));
	c->port = xstrdup(colon + 1);
	return true;
}

struct clamd_client *clamd_client_new(const struct clamd_options *o, char *err, size_t errlen)
{
	struct clamd_client *c;
	const char *addr = o->address;

	if (addr == NULL || addr[0] == '\0') {
		snprintf(err, errlen, "no clamd address configured");
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	if (strncmp(addr, "unix:", 5) == 0)
		addr += 5;
	if (addr[0] == '/') {
		if (strlen(addr) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(err, errlen, "clamd socket path too long: %s", addr);
			free(c);
			return NULL;
		}
		c->unix_path = xstrdup(addr);
	} else if (!clamd_parse_tcp(c, addr)) {
		snprintf(err, errlen, "bad clamd address \"%s\" (want /path or host:port)", addr);
		free(c->host);
		free(c);
		return NULL;
	}
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : CLAMD_DEFAULT_TIMEOUT_MS;
	c->chunk_size = o->chunk_size ? o->chunk_size : CLAMD_DEFAULT_CHUNK;
	if (c->chunk_size > UINT32_MAX)
		c->chunk_size = CLAMD_DEFAULT_CHUNK;
	pthread_mutex_init(&c->version_lock, NULL);
	return c;
}

void clamd_client_free(struct clamd_client *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->version_lock);
	free(c->unix_path);
	free(c->host);
	free(c->port);
	free(c);
}

/* A non-blocking connect bounded by the timeout, then blocking I/O with timeouts. */
static int clamd_connect_addr(const struct clamd_client *c, const struct sockaddr *sa,
			      socklen_t salen, char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = c->timeout_ms / 1000,
			      .tv_usec = (c->timeout_ms % 1000) * 1000 };
	struct pollfd pfd;
	int fd, soerr = 0, flags;
	socklen_t len = sizeof(soerr);

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, sa, salen) < 0) {
		if (errno != EINPROGRESS) {
			snprintf(err, errlen, "connect: %s", strerror(errno));
			goto fail;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, (int)c->timeout_ms) <= 0) {
			snprintf(err, errlen, "connect: timed out");
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
			snprintf(err, errlen, "connect: %s", strerror(soerr ? soerr : errno));
			goto fail;
		}
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		snprintf(err, errlen, "socket options: %s", strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static int clamd_connect(const struct clamd_client *c, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = -1, rc;

	if (c->unix_path != NULL) {
		memcpy(sun.sun_path, c->unix_path, strlen(c->unix_path) + 1);
		fd = clamd_connect_addr(c, (struct sockaddr *)&sun, sizeof(sun), err, errlen);
		if (fd < 0)
			snprintf(err + strlen(err), errlen - strlen(err), " (%s)", c->unix_path);
		return fd;
	}
	rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s:%s: %s", c->host, c->port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = clamd_connect_addr(c, ai->ai_addr, ai->ai_addrlen, err, errlen);
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err + strlen(err), errlen - strlen(err), " (%s:%s)", c->host, c->port);
	return fd;
}

static bool clamd_send_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* One NUL- or EOF-terminated answer, without its trailing newline. */
static bool clamd_read_reply(int fd, char *buf, size_t buflen)
{
	size_t len = 0;
	ssize_t n;

	while (len < buflen - 1) {
		n = recv(fd, buf + len, buflen - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0)
			break;
		if (memchr(buf + len, '\0', (size_t)n) != NULL) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return len > 0;
}

static bool clamd_send_stream(const struct clamd_client *c, int fd, const void *data, size_t len)
{
	static const char cmd[] = "zINSTREAM";
	const unsigned char *p = data;
	uint32_t hdr;
	size_t n;

	if (!clamd_send_all(fd, cmd, sizeof(cmd)))
		return false;
	while (len > 0) {
		n = len < c->chunk_size ? len : c->chunk_size;
		hdr = htonl((uint32_t)n);
		if (!clamd_send_all(fd, &hdr, sizeof(hdr)) || !clamd_send_all(fd, p, n))
			return false;
		p += n;
		len -= n;
	}
	hdr = 0;
	return clamd_send_all(fd, &hdr, sizeof(hdr));
}

/* "stream: OK", "stream: Eicar-Signature FOUND", "<why> ERROR". */
static enum virus_status clamd_parse_reply(const char *reply, struct virus_result *out)
{
	static const char prefix[] = "stream: ";
	const char *s = reply;
	size_t len;

	if (strncmp(s, prefix, sizeof(prefix) - 1) == 0)
		s += sizeof(prefix) - 1;
	len = strlen(s);
	if (strcmp(s, "OK") == 0) {
		out->status = VIRUS_CLEAN;
		out->name[0] = '\0';
	} else if (len > 6 && strcmp(s + len - 6, " FOUND") == 0) {
		out->status = VIRUS_INFECTED;
		snprintf(out->name, sizeof(out->name), "%.*s", (int)(len - 6), s);
	} else {
		out->status = VIRUS_ERROR;
		snprintf(out->name, sizeof(out->name), "clamd: %.100s", reply);
	}
	return out->status;
}

int clamd_version(struct clamd_client *c, char *buf, size_t buflen)
{
	static const char cmd[] = "zVERSION";
	char err[192], reply[CLAMD_REPLY_MAX];
	int fd = clamd_connect(c, err, sizeof(err));
	bool ok;

	if (fd < 0) {
		snprintf(buf, buflen, "%s", err);
		return -1;
	}
	ok = clamd_send_all(fd, cmd, sizeof(cmd)) && clamd_read_reply(fd, reply, sizeof(reply));
	close(fd);
	if (!ok) {
		snprintf(buf, buflen, "no VERSION answer: %s", strerror(errno));
		return -1;
	}
	snprintf(buf, buflen, "%s", reply);
	return 0;
}

/* The signature version changes with clamd's own reloads: ask again now and then. */
static void clamd_cached_version(struct clamd_client *c, char *buf, size_t buflen)
{
	char fresh[VIRUS_VERSION_MAX];
	time_t now = clamd_now();
	bool stale;

	pthread_mutex_lock(&c->version_lock);
	stale = c->version_at == 0 || now - c->version_at >= CLAMD_VERSION_TTL;
	if (!stale)
		snprintf(buf, buflen, "%s", c->version);
	pthread_mutex_unlock(&c->version_lock);
	if (!stale)
		return;
	if (clamd_version(c, fresh, sizeof(fresh)) < 0) {
		snprintf(buf, buflen, "clamd (version unknown)");
		return;
	}
	pthread_mutex_lock(&c->version_lock);
	snprintf(c->version, sizeof(c->version), "%s", fresh);
	c->version_at = now;
	pthread_mutex_unlock(&c->version_lock);
	snprintf(buf, buflen, "%s", fresh);
}

enum virus_status clamd_scan_buffer(struct clamd_client *c, const void *data, size_t len,
				    struct virus_result *out)
{
	char err[192], reply[CLAMD_REPLY_MAX];
	bool sent;
	int fd;

	memset(out, 0, sizeof(*out));
	fd = clamd_connect(c, err, sizeof(err));
	if (fd < 0) {
		out->status = VIRUS_ERROR;
		snprintf(out->name, sizeof(out->name), "clamd %.110s", err);
		return out->status;
	}
	sent = clamd_send_stream(c, fd, data, len);
	if (!sent)
		snprintf(err, sizeof(err), "%s", strerror(errno));
	/* clamd explains a refused stream (size limit) before closing: read it. */
	if (!clamd_read_reply(fd, reply, sizeof(reply))) {
		close(fd);
		out->status = VIRUS_ERROR;
		snprintf(out->name, sizeof(out->name), "clamd: %.110s", sent ? "no answer" : err);
		return out->status;
	}
	close(fd);
	if (clamd_parse_reply(reply, out) != VIRUS_ERROR && !sent) {
		out->status = VIRUS_ERROR;
		snprintf(out->name, sizeof(out->name), "clamd: stream cut short: %.90s", err);
	}
	clamd_cached_version(c, out->version, sizeof(out->version));
	if (out->status == VIRUS_ERROR)
		log_warn("scan failed: %s", out->name);
	return out->status;
}
