/*
 * The edited view of a queued message: reads against a materialised copy,
 * and the view as delivery (through tests/tools/smtp_sink.py), bounces and
 * the header reader see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "content/marks.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/strbuf.h"
#include "dns/dns.h"
#include "queue/delivery.h"
#include "queue/dsn.h"
#include "queue/envelope.h"
#include "queue/message_view.h"
#include "testpeer.h"
#include "unit.h"

#define MV_FILE_LEN 5000

/* A scratch file holding data; the fd is open for reading and writing. */
static int mv_file(const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", unit_tmpdir(), name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	if (fd >= 0)
		CHECK(write(fd, data, len) == (ssize_t)len);
	return fd;
}

/* The straightforward way: apply every edit to a copy, in order. */
static unsigned char *mv_materialise(const struct envelope *env, const unsigned char *file,
				     size_t file_len, size_t *out_len)
{
	struct strbuf sb;
	size_t pos = 0;

	strbuf_init(&sb, SIZE_MAX);
	for (size_t i = 0; env != NULL && i < env->nedits; i++) {
		const struct envelope_edit *e = &env->edits[i];

		strbuf_append(&sb, file + pos, (size_t)e->offset - pos);
		strbuf_append(&sb, e->insert, e->insert_len);
		pos = (size_t)(e->offset + e->remove);
	}
	strbuf_append(&sb, file + pos, file_len - pos);
	return (unsigned char *)strbuf_detach(&sb, out_len);
}

/* Read the whole view in chunks of the given size (a varying one when 0). */
static void mv_check_sequential(const struct envelope *env, int fd, const unsigned char *want,
				size_t want_len, size_t chunk)
{
	unsigned char *got = xmalloc(want_len + 1);
	size_t off = 0, step = chunk ? chunk : 1;
	ssize_t n;

	while (off < want_len) {
		n = message_view_pread(env, fd, MV_FILE_LEN, got + off, step, off);
		CHECK(n > 0);
		if (n <= 0)
			break;
		off += (size_t)n;
		if (chunk == 0)
			step = step * 7 % 997 + 1;
	}
	CHECK_INT(off, want_len);
	CHECK(memcmp(got, want, want_len) == 0);
	CHECK_INT(message_view_pread(env, fd, MV_FILE_LEN, got, 10, want_len), 0);
	CHECK_INT(message_view_pread(env, fd, MV_FILE_LEN, got, 10, want_len + 100), 0);
	free(got);
}

/* Random offsets and lengths against the materialised copy. */
static void mv_check_random(const struct envelope *env, int fd, const unsigned char *want,
			    size_t want_len, unsigned seed)
{
	unsigned char buf[1500];

	srand(seed);
	for (int k = 0; k < 400; k++) {
		size_t off = (size_t)rand() % (want_len + 10);
		size_t len = (size_t)rand() % sizeof(buf);
		size_t expect = off >= want_len ? 0 : want_len - off < len ? want_len - off : len;
		ssize_t n = message_view_pread(env, fd, MV_FILE_LEN, buf, len, off);

		CHECK_INT(n, (ssize_t)expect);
		if (n == (ssize_t)expect && expect > 0)
			CHECK(memcmp(buf, want + off, expect) == 0);
	}
}

static void mv_check_view(const struct envelope *env, int fd, const unsigned char *file, unsigned seed)
{
	size_t want_len;
	unsigned char *want = mv_materialise(env, file, MV_FILE_LEN, &want_len);

	CHECK_INT(message_view_size(env, MV_FILE_LEN), want_len);
	mv_check_sequential(env, fd, want, want_len, 1);
	mv_check_sequential(env, fd, want, want_len, 3);
	mv_check_sequential(env, fd, want, want_len, 16 * 1024);
	mv_check_sequential(env, fd, want, want_len, 0);
	mv_check_random(env, fd, want, want_len, seed);
	free(want);
}

TEST(message_view_reads_match_materialised_copy)
{
	unsigned char file[MV_FILE_LEN];
	struct envelope *env = envelope_new();
	int fd;

	for (size_t i = 0; i < sizeof(file); i++)
		file[i] = (unsigned char)(i * 131 + 7);
	fd = mv_file("msg", file, sizeof(file));

	/* no edits: exactly the file */
	mv_check_view(env, fd, file, 1);
	mv_check_view(NULL, fd, file, 2);
	/* one insertion */
	CHECK_INT(envelope_add_edit(env, 100, 0, "X-One: 1\r\n", 10), 0);
	mv_check_view(env, fd, file, 3);
	/* at the very start and the very end, a removal, a replacement, adjacent edits */
	CHECK_INT(envelope_add_edit(env, 0, 0, "Received: first\r\n", 17), 0);
	CHECK_INT(envelope_add_edit(env, MV_FILE_LEN, 0, "\r\n-- end\r\n", 10), 0);
	CHECK_INT(envelope_add_edit(env, 200, 300, NULL, 0), 0);
	CHECK_INT(envelope_add_edit(env, 500, 1, "replaced", 8), 0);
	CHECK_INT(envelope_add_edit(env, 501, 0, "+", 1), 0);
	CHECK_INT(envelope_add_edit(env, 4000, 999, "tail", 4), 0);
	mv_check_view(env, fd, file, 4);
	envelope_free(env);

	/* removal of everything from the start, and of the whole file */
	env = envelope_new();
	CHECK_INT(envelope_add_edit(env, 0, 10, NULL, 0), 0);
	mv_check_view(env, fd, file, 5);
	envelope_free(env);
	env = envelope_new();
	CHECK_INT(envelope_add_edit(env, 0, MV_FILE_LEN, "all new", 7), 0);
	mv_check_view(env, fd, file, 6);
	envelope_free(env);
	close(fd);
}

TEST(message_view_random_edit_sets)
{
	unsigned char file[MV_FILE_LEN], ins[300];
	int fd;

	for (size_t i = 0; i < sizeof(file); i++)
		file[i] = (unsigned char)(i * 17 + (i >> 8));
	for (size_t i = 0; i < sizeof(ins); i++)
		ins[i] = (unsigned char)(0xff - i);
	fd = mv_file("msg", file, sizeof(file));
	srand(42);
	for (unsigned round = 0; round < 60; round++) {
		struct envelope *env = envelope_new();
		int n = rand() % 8;

		for (int k = 0; k < n; k++) {
			uint64_t off = (uint64_t)(rand() % (MV_FILE_LEN + 1));
			uint64_t rem = rand() % 3 ? 0 : (uint64_t)(rand() % 200);

			if (off + rem > MV_FILE_LEN)
				rem = MV_FILE_LEN - off;
			envelope_add_edit(env, off, rem, ins, (size_t)(rand() % (int)sizeof(ins)));
		}
		mv_check_view(env, fd, file, round);
		envelope_free(env);
	}
	close(fd);
}

TEST(message_view_short_file_and_bad_edits)
{
	static const char data[] = "Subject: x\r\n\r\nbody\r\n";
	struct envelope *env = envelope_new();
	char buf[64];
	int fd = mv_file("msg", data, strlen(data));

	CHECK_INT(envelope_add_edit(env, 0, 0, "A: b\r\n", 6), 0);
	/* the file is shorter than the spool said: a short count, like pread */
	CHECK_INT(message_view_pread(env, fd, strlen(data) + 50, buf, sizeof(buf), 0),
		  (ssize_t)(6 + strlen(data)));
	/* an edit past the message is refused */
	CHECK_INT(envelope_add_edit(env, 100, 0, "z", 1), 0);
	errno = 0;
	CHECK_INT(message_view_pread(env, fd, strlen(data), buf, sizeof(buf), 0), -1);
	CHECK_INT(errno, EINVAL);
	envelope_free(env);
	/* a bad descriptor */
	CHECK_INT(message_view_pread(NULL, -1, 10, buf, sizeof(buf), 0), -1);
	close(fd);
}

TEST(message_view_headers_block)
{
	static const char data[] = "Received: from a\r\n\tby b\r\nSubject: s\r\n\r\nbody\r\nX: not a header\r\n";
	struct envelope *env = envelope_new();
	char *h = NULL;
	int fd = mv_file("msg", data, strlen(data));

	CHECK_INT(envelope_add_edit(env, 25, 0, "X-Postern-Status: clean\r\n", 25), 0);
	CHECK_INT(message_view_headers(env, fd, strlen(data), 4096, &h),
		  (ssize_t)strlen("Received: from a\r\n\tby b\r\nX-Postern-Status: clean\r\nSubject: s\r\n"));
	CHECK_STR(h, "Received: from a\r\n\tby b\r\nX-Postern-Status: clean\r\nSubject: s\r\n");
	free(h);
	/* cut by max: whole lines only */
	CHECK_INT(message_view_headers(env, fd, strlen(data), 30, &h), 25);
	CHECK_STR(h, "Received: from a\r\n\tby b\r\n");
	free(h);
	envelope_free(env);
	close(fd);
	/* no empty line: the whole (short) message */
	fd = mv_file("msg2", "A: b\nC: d", 9);
	CHECK_INT(message_view_headers(NULL, fd, 9, 100, &h), 9);
	CHECK_STR(h, "A: b\nC: d");
	free(h);
	close(fd);
}

static const char mv_message[] =
	"Received: from client.test (client.test [192.0.2.1])\r\n"
	"\tby gateway.test with ESMTP id 0001; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
	"From: <sender@origin.test>\r\n"
	"To: <rcpt@dest.test>\r\n"
	"Subject:\r\n hello there\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; d=origin.test; s=x; bh=abc=; b=def=\r\n"
	"\r\n"
	"Hello.\r\n"
	".a line that needs dot-stuffing\r\n"
	"\xc3\xa9t\xc3\xa9 8bit\r\n";

static const struct marks_options mv_marks = {
	.status_header = "X-Postern-Status",
	.scl_header = "X-Postern-SCL",
	.reason_header = "X-Postern-Reason",
	.subject_tag = "[SPAM] ",
	.add_headers = true,
};

static const char mv_marked[] =
	"Received: from client.test (client.test [192.0.2.1])\r\n"
	"\tby gateway.test with ESMTP id 0001; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
	"X-Postern-Status: spam\r\n"
	"X-Postern-SCL: 7\r\n"
	"X-Postern-Reason: bayes 0.99\r\n"
	"From: <sender@origin.test>\r\n"
	"To: <rcpt@dest.test>\r\n"
	"Subject:\r\n [SPAM] hello there\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; d=origin.test; s=x; bh=abc=; b=def=\r\n"
	"\r\n"
	"Hello.\r\n"
	".a line that needs dot-stuffing\r\n"
	"\xc3\xa9t\xc3\xa9 8bit\r\n";

struct mv_delivery {
	struct event_base *base;
	struct config cfg;
	struct postern pt;
	pid_t dnsd, sink;
	int calls;
	struct delivery_rcpt_result result;
};

static void mv_delivery_done(void *arg, const struct delivery_rcpt_result *results, size_t n)
{
	struct mv_delivery *t = arg;

	t->calls++;
	if (n == 1)
		t->result = results[0];
}

/* The whole content of a file, NUL-terminated; NULL when missing. */
static char *mv_read(const char *dir, const char *name, size_t *len)
{
	char path[PATH_MAX];
	struct stat st;
	char *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		return NULL;
	}
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	close(fd);
	return buf;
}

/* Marks applied by marks_apply reach the next hop through delivery_smtp; nothing else changes. */
TEST(message_view_delivery_sends_the_marked_message)
{
	struct mv_delivery t;
	struct envelope *env = envelope_new();
	struct delivery_request req;
	struct hostport host;
	struct timeval tv = { 20, 0 };
	char sinkdir[PATH_MAX], tool[PATH_MAX], port_s[16], servers[64], err[256] = "", size_opt[64];
	unsigned port = testpeer_free_port(), dns_port = 0;
	size_t rcpt_index = 0, len = 0;
	char *argv[] = { "/usr/bin/python3", tool, "--port", port_s, "--dir", sinkdir, NULL };
	char *msg, *envfile;
	int fd;

	memset(&t, 0, sizeof(t));
	memset(&req, 0, sizeof(req));
	t.base = event_base_new();
	t.cfg.refcount = 1;
	t.cfg.hostname = "gateway.test";
	t.cfg.mx_port = 25;
	t.cfg.timeout_connect = 5;
	t.cfg.timeout_reply = 5;
	t.cfg.max_per_destination = 2;
	t.dnsd = testpeer_dnsd("dest.test A 127.0.0.1\n", &dns_port);
	CHECK(t.dnsd > 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_port);
	t.pt.base = t.base;
	t.pt.cfg = &t.cfg;
	t.pt.dns = dns_resolver_new(t.base, servers, 1000, 2, err, sizeof(err));
	CHECK(t.pt.dns != NULL);
	t.pt.delivery = delivery_smtp_new(&t.pt);
	snprintf(sinkdir, sizeof(sinkdir), "%s/sink", unit_tmpdir());
	mkdir(sinkdir, 0700);
	CHECK(testpeer_tool("smtp_sink.py", tool, sizeof(tool)));
	snprintf(port_s, sizeof(port_s), "%u", port);
	t.sink = testpeer_start(argv, "ready", 0);
	CHECK(t.sink > 0);

	snprintf(env->id, sizeof(env->id), "0000000000000000000B");
	env->sender = xstrdup("sender@origin.test");
	env->body = BODY_8BITMIME;
	envelope_add_rcpt(env, "rcpt@dest.test");
	env->size = strlen(mv_message);
	CHECK_INT(marks_apply(env, (const unsigned char *)mv_message, strlen(mv_message), &mv_marks,
			      "spam", 7, "bayes 0.99", NULL), 0);
	fd = mv_file("spooled", mv_message, strlen(mv_message));
	host.host = "127.0.0.1";
	host.port = (uint16_t)port;
	req.env = env;
	req.rcpt_index = &rcpt_index;
	req.nrcpts = 1;
	req.domain = "dest.test";
	req.hosts = &host;
	req.nhosts = 1;
	req.body_fd = fd;
	req.body_len = strlen(mv_message);
	delivery_smtp_start(t.pt.delivery, &req, mv_delivery_done, &t);
	event_base_loopexit(t.base, &tv);
	while (t.calls == 0 && event_base_loop(t.base, EVLOOP_ONCE) == 0 && !event_base_got_exit(t.base))
		;
	CHECK_INT(t.calls, 1);
	CHECK_INT(t.result.status, DELIVERY_OK);

	msg = mv_read(sinkdir, "1.msg", &len);
	CHECK(msg != NULL);
	if (msg != NULL) {
		CHECK_INT(len, strlen(mv_marked));
		CHECK_STR(msg, mv_marked);
	}
	envfile = mv_read(sinkdir, "1.env", &len);
	snprintf(size_opt, sizeof(size_opt), "SIZE=%zu", strlen(mv_marked));
	CHECK(envfile != NULL && strstr(envfile, size_opt) != NULL);
	free(msg);
	free(envfile);
	close(fd);
	envelope_free(env);
	delivery_smtp_free(t.pt.delivery);
	dns_resolver_free(t.pt.dns);
	event_base_free(t.base);
	testpeer_stop(t.sink);
	testpeer_stop(t.dnsd);
	CHECK_INT(t.cfg.refcount, 1);
}

/* A bounce returns the original as it was marked: what the recipient's server would have seen. */
TEST(message_view_bounce_returns_the_marked_original)
{
	struct envelope *env = envelope_new();
	struct envelope_rcpt *r;
	struct dsn_report rep;
	struct strbuf out;
	size_t index = 0;
	int fd = mv_file("spooled", mv_message, strlen(mv_message));

	snprintf(env->id, sizeof(env->id), "0000000000000000000C");
	env->arrival = 1700000000;
	env->sender = xstrdup("sender@origin.test");
	env->body = BODY_8BITMIME;
	r = envelope_add_rcpt(env, "rcpt@dest.test");
	r->state = RCPT_FAILED;
	r->last_code = 550;
	r->last_reply = xstrdup("550 5.1.1 <rcpt@dest.test>: no such user");
	CHECK_INT(marks_apply(env, (const unsigned char *)mv_message, strlen(mv_message), &mv_marks,
			      "spam", 7, "bayes 0.99", NULL), 0);
	memset(&rep, 0, sizeof(rep));
	rep.env = env;
	rep.rcpt_index = &index;
	rep.nrcpts = 1;
	rep.reporting_mta = "gateway.test";
	rep.from = "MAILER-DAEMON@gateway.test";
	rep.now = 1700003600;
	rep.orig_fd = fd;
	rep.orig_len = strlen(mv_message);
	strbuf_init(&out, 4 * 1024 * 1024);
	CHECK_INT(dsn_build_bounce(&rep, &out), 0);
	CHECK(memmem(out.data, out.len, mv_marked, strlen(mv_marked)) != NULL);
	strbuf_reset(&out);
	/* RET=HDRS: the marked header block only */
	env->ret = DSN_RET_HDRS;
	CHECK_INT(dsn_build_bounce(&rep, &out), 0);
	CHECK(strstr(out.data, "X-Postern-Status: spam\r\nX-Postern-SCL: 7\r\n") != NULL);
	CHECK(strstr(out.data, "Subject:\r\n [SPAM] hello there\r\n") != NULL);
	CHECK(strstr(out.data, "Hello.") == NULL);
	strbuf_free(&out);
	envelope_free(env);
	close(fd);
}
