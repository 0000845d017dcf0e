#include "unit.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "queue/dsn.h"

#define ORIGINAL "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\n" \
		 "the body line\r\nsecond body line\r\n"

struct dsn_fixture {
	struct envelope env;
	struct envelope_rcpt rcpts[3];
	size_t index[2];
	struct dsn_report rep;
	char path[512];
};

/* Write the original message into a scratch file for orig_fd. */
static int dsn_write_original(struct dsn_fixture *f, const char *data, size_t len)
{
	int fd;

	snprintf(f->path, sizeof(f->path), "%s/orig", unit_tmpdir());
	fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		return -1;
	return fd;
}

/*
 * Three recipients: a 550 with an enhanced code, one delivered, and one
 * that only ever got 4xx (queue lifetime expired). Two of them failed.
 */
static void dsn_fixture_init(struct dsn_fixture *f, const char *original, size_t len)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->env.id, sizeof(f->env.id), "0ABC123def");
	f->env.arrival = 1700000000;
	f->env.sender = "alice@example.org";
	f->env.envid = "env-42";
	f->env.rcpts = f->rcpts;
	f->env.nrcpts = 3;
	f->rcpts[0].addr = "bob@example.net";
	f->rcpts[0].orcpt = "rfc822;Bob@example.net";
	f->rcpts[0].state = RCPT_FAILED;
	f->rcpts[0].last_code = 550;
	f->rcpts[0].last_reply = "550 5.1.1 <bob@example.net>: no such user";
	f->rcpts[0].remote = "mx.example.net[192.0.2.1]:25";
	f->rcpts[1].addr = "carol@example.net";
	f->rcpts[1].state = RCPT_DELIVERED;
	f->rcpts[2].addr = "dave@example.com";
	f->rcpts[2].state = RCPT_FAILED;
	f->rcpts[2].last_code = 451;
	f->rcpts[2].last_reply = "451 4.7.1 greylisted, try later";
	f->rcpts[2].remote = "mx.example.com[192.0.2.7]";
	f->index[0] = 0;
	f->index[1] = 2;
	f->rep.env = &f->env;
	f->rep.rcpt_index = f->index;
	f->rep.nrcpts = 2;
	f->rep.reporting_mta = "gw.example.org";
	f->rep.from = "MAILER-DAEMON@gw.example.org";
	f->rep.now = 1700003600;
	f->rep.orig_fd = original ? dsn_write_original(f, original, len) : -1;
	f->rep.orig_len = len;
}

static void dsn_fixture_done(struct dsn_fixture *f)
{
	if (f->rep.orig_fd >= 0)
		close(f->rep.orig_fd);
}

static bool has_line(const char *msg, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = msg; (p = strstr(p, line)) != NULL; p++) {
		if ((p == msg || p[-1] == '\n') && p[n] == '\r' && p[n + 1] == '\n')
			return true;
	}
	return false;
}

static size_t count_str(const char *msg, const char *s)
{
	size_t n = 0;

	for (const char *p = msg; (p = strstr(p, s)) != NULL; p++)
		n++;
	return n;
}

/* The boundary parameter of the top-level Content-Type. */
static void extract_boundary(const char *msg, char *out, size_t len)
{
	const char *p = strstr(msg, "boundary=\"");
	const char *q;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += strlen("boundary=\"");
	q = strchr(p, '"');
	if (q != NULL)
		snprintf(out, len, "%.*s", (int)(q - p), p);
}

/* Every LF is part of a CRLF. */
static bool all_crlf(const char *msg, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			return false;
		if (msg[i] == '\r' && (i + 1 == len || msg[i + 1] != '\n'))
			return false;
	}
	return true;
}

/* The boundary occurs only as the 3 delimiters and the close delimiter, each on its own line. */
static void check_boundary_only_delimits(const char *msg, const char *b)
{
	char delim[200], close_delim[200];

	snprintf(delim, sizeof(delim), "--%s", b);
	snprintf(close_delim, sizeof(close_delim), "--%s--", b);
	CHECK(strlen(b) > 10);
	CHECK_INT(count_str(msg, b), 5);   /* header parameter + 3 delimiters + close */
	CHECK(has_line(msg, delim));
	CHECK(has_line(msg, close_delim));
	CHECK_INT(count_str(msg, delim), 4);
}

TEST(dsn_bounce_headers_and_fields)
{
	struct dsn_fixture f;
	struct strbuf out;
	char b[128];

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(all_crlf(out.data, out.len));
	CHECK(has_line(out.data, "From: \"Mail Delivery System\" <MAILER-DAEMON@gw.example.org>"));
	CHECK(has_line(out.data, "To: <alice@example.org>"));
	CHECK(has_line(out.data, "Subject: Undelivered Mail Returned to Sender"));
	CHECK(strstr(out.data, "\r\nDate: ") != NULL);
	CHECK(strstr(out.data, "\r\nMessage-ID: <0ABC123def.bounce.") != NULL);
	CHECK(strstr(out.data, "@gw.example.org>\r\n") != NULL);
	CHECK(has_line(out.data, "Auto-Submitted: auto-replied"));
	CHECK(has_line(out.data, "MIME-Version: 1.0"));
	CHECK(strstr(out.data, "\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"") != NULL);
	extract_boundary(out.data, b, sizeof(b));
	check_boundary_only_delimits(out.data, b);
	CHECK(has_line(out.data, "Content-Type: text/plain; charset=us-ascii"));
	CHECK(has_line(out.data, "Content-Type: message/delivery-status"));
	CHECK(has_line(out.data, "Content-Type: message/rfc822"));

	/* per-message fields */
	CHECK(has_line(out.data, "Reporting-MTA: dns; gw.example.org"));
	CHECK(has_line(out.data, "X-Postern-Queue-ID: 0ABC123def"));
	CHECK(has_line(out.data, "Original-Envelope-Id: env-42"));
	CHECK(strstr(out.data, "\r\nArrival-Date: ") != NULL);

	/* first failed recipient: permanent */
	CHECK(has_line(out.data, "Final-Recipient: rfc822; bob@example.net"));
	CHECK(has_line(out.data, "Original-Recipient: rfc822; Bob@example.net"));
	CHECK(has_line(out.data, "Status: 5.1.1"));
	CHECK(has_line(out.data, "Remote-MTA: dns; mx.example.net"));
	CHECK(has_line(out.data, "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user"));
	/* second: expired */
	CHECK(has_line(out.data, "Final-Recipient: rfc822; dave@example.com"));
	CHECK(has_line(out.data, "Status: 4.4.7"));
	CHECK(has_line(out.data, "Remote-MTA: dns; mx.example.com"));
	CHECK(has_line(out.data, "Diagnostic-Code: smtp; 451 4.7.1 greylisted, try later"));
	CHECK_INT(count_str(out.data, "\r\nAction: failed\r\n"), 2);
	CHECK_INT(count_str(out.data, "\r\nLast-Attempt-Date: "), 2);
	/* the delivered recipient is not reported */
	CHECK(strstr(out.data, "carol@example.net") == NULL);
	/* per-recipient blocks are separated by an empty line */
	CHECK(strstr(out.data, "\r\n\r\nFinal-Recipient: rfc822; bob@example.net\r\n") != NULL);
	CHECK(strstr(out.data, "\r\n\r\nFinal-Recipient: rfc822; dave@example.com\r\n") != NULL);

	/* the human part names both with the server's reply */
	CHECK(strstr(out.data, "<bob@example.net>: host mx.example.net[192.0.2.1]:25 said: 550 5.1.1") != NULL);
	CHECK(strstr(out.data, "<dave@example.com>: delivery time expired") != NULL);

	/* RET unset and small: the whole original */
	CHECK(strstr(out.data, ORIGINAL) != NULL);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_bounce_ret_hdrs_returns_headers_only)
{
	struct dsn_fixture f;
	struct strbuf out;
	char b[128];

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	f.env.ret = DSN_RET_HDRS;
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Content-Type: text/rfc822-headers"));
	CHECK(strstr(out.data, "message/rfc822") == NULL);
	CHECK(has_line(out.data, "Subject: hello"));
	CHECK(strstr(out.data, "the body line") == NULL);
	extract_boundary(out.data, b, sizeof(b));
	check_boundary_only_delimits(out.data, b);
	CHECK(all_crlf(out.data, out.len));
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_bounce_ret_full_returns_message)
{
	struct dsn_fixture f;
	struct strbuf out;

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	f.env.ret = DSN_RET_FULL;
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Content-Type: message/rfc822"));
	CHECK(strstr(out.data, "\r\nContent-Type: message/rfc822\r\n\r\n" ORIGINAL) != NULL);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_bounce_large_original_returns_headers)
{
	size_t len = DSN_RETURN_FULL_MAX + 100;
	char *big = malloc(len + 1);
	const char *hdr = "Subject: big\r\n\r\n";
	struct dsn_fixture f;
	struct strbuf out;

	memcpy(big, hdr, strlen(hdr));
	for (size_t i = strlen(hdr); i < len; i++)
		big[i] = (i % 80 == 79) ? '\n' : 'x';
	dsn_fixture_init(&f, big, len);
	f.env.ret = DSN_RET_FULL;
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Content-Type: text/rfc822-headers"));
	CHECK(has_line(out.data, "Subject: big"));
	CHECK(strstr(out.data, "xxxxxxxxxx") == NULL);
	CHECK(out.len < 64 * 1024);
	strbuf_free(&out);
	dsn_fixture_done(&f);
	free(big);
}

TEST(dsn_bounce_without_original)
{
	struct dsn_fixture f;
	struct strbuf out;
	char b[128], delim[200];

	dsn_fixture_init(&f, NULL, 0);
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	extract_boundary(out.data, b, sizeof(b));
	snprintf(delim, sizeof(delim), "--%s", b);
	CHECK_INT(count_str(out.data, delim), 3);
	CHECK(strstr(out.data, "rfc822-headers") == NULL);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_boundary_avoids_content)
{
	char original[512], first[128], b[128];
	struct dsn_fixture f;
	struct strbuf out;

	/* learn the first candidate, then put it into the original */
	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	extract_boundary(out.data, first, sizeof(first));
	strbuf_free(&out);
	dsn_fixture_done(&f);

	snprintf(original, sizeof(original), "Subject: x\r\n\r\n--%s\r\nevil\r\n--%s--\r\n", first, first);
	dsn_fixture_init(&f, original, strlen(original));
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	extract_boundary(out.data, b, sizeof(b));
	CHECK(strcmp(b, first) != 0);
	CHECK(strstr(first, b) == NULL);
	check_boundary_only_delimits(out.data, b);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_reply_text_cannot_inject_fields)
{
	struct dsn_fixture f;
	struct strbuf out;

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	f.rcpts[0].last_reply = "550 5.7.1 bad\r\nX-Injected: yes\r\n\r\n--x";
	f.rcpts[0].remote = "mx\r\nX-Remote-Injected: 1[192.0.2.1]";
	f.env.envid = "id\nX-Envid-Injected: 1";
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(strstr(out.data, "\nX-Injected") == NULL);
	CHECK(strstr(out.data, "\nX-Remote-Injected") == NULL);
	CHECK(strstr(out.data, "\nX-Envid-Injected") == NULL);
	CHECK(has_line(out.data, "Status: 5.7.1"));
	CHECK(all_crlf(out.data, out.len));
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_status_fallbacks)
{
	struct dsn_fixture f;
	struct strbuf out;

	dsn_fixture_init(&f, NULL, 0);
	f.rep.nrcpts = 1;
	f.rcpts[0].last_reply = "550 mailbox unavailable";
	f.rcpts[0].remote = NULL;
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Status: 5.0.0"));
	CHECK(strstr(out.data, "Remote-MTA:") == NULL);
	strbuf_reset(&out);

	/* an enhanced code of another class than the reply is not trusted */
	f.rcpts[0].last_reply = "550 4.2.2 confused server";
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Status: 5.0.0"));
	strbuf_reset(&out);

	/* no server reply at all (lifetime expired while unreachable) */
	f.rcpts[0].last_code = 0;
	f.rcpts[0].last_reply = "connection refused";
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Status: 4.4.7"));
	CHECK(strstr(out.data, "Diagnostic-Code:") == NULL);
	CHECK(strstr(out.data, "connection refused") != NULL);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_utf8_recipient)
{
	struct dsn_fixture f;
	struct strbuf out;

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	f.rcpts[0].addr = "j\xc3\xb6rg@example.net";
	f.rcpts[0].orcpt = NULL;
	strbuf_init(&out, 1 << 20);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), 0);
	CHECK(has_line(out.data, "Final-Recipient: utf-8; j\xc3\xb6rg@example.net"));
	CHECK(has_line(out.data, "Final-Recipient: rfc822; dave@example.com"));
	CHECK(has_line(out.data, "Content-Type: message/global-delivery-status"));
	CHECK(strstr(out.data, "report-type=delivery-status") != NULL);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_bounce_respects_size_limit)
{
	struct dsn_fixture f;
	struct strbuf out;

	dsn_fixture_init(&f, ORIGINAL, strlen(ORIGINAL));
	strbuf_init(&out, 200);
	CHECK_INT(dsn_build_bounce(&f.rep, &out), -1);
	strbuf_free(&out);
	dsn_fixture_done(&f);
}

TEST(dsn_notify_rules)
{
	struct envelope env;
	struct envelope_rcpt r;

	memset(&env, 0, sizeof(env));
	memset(&r, 0, sizeof(r));
	env.sender = "alice@example.org";
	CHECK_INT(dsn_wants_failure_report(&env, &r), 1);
	r.notify = DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
	CHECK_INT(dsn_wants_failure_report(&env, &r), 1);
	r.notify = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY;
	CHECK_INT(dsn_wants_failure_report(&env, &r), 0);
	r.notify = DSN_NOTIFY_NEVER;
	CHECK_INT(dsn_wants_failure_report(&env, &r), 0);
	r.notify = 0;
	env.sender = "";
	CHECK_INT(dsn_wants_failure_report(&env, &r), 0);
	env.sender = "alice@example.org";
	env.is_bounce = true;
	r.notify = DSN_NOTIFY_FAILURE;
	CHECK_INT(dsn_wants_failure_report(&env, &r), 0);
}
