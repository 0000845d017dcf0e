/*
 * Bounce messages: RFC 3464 multipart/report with a human part, a
 * machine-readable delivery-status part and (a part of) the original.
 * Addresses that are not ASCII use the RFC 6533 "utf-8" address type and
 * the message/global-* media types, as Postfix does.
 */
#define LOG_MODULE "dsn"
#include "queue/dsn.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "queue/message_view.h"

/* Bounds of the pieces built before assembly (the caller bounds the whole). */
#define DSN_TEXT_MAX (4 * 1024 * 1024)
#define DSN_HEADERS_MAX (64 * 1024)
#define DSN_BOUNDARY_TRIES 100

static const char *const dsn_wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const dsn_months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* RFC 5322 date-time in local time; our own names so the locale cannot change them. */
static void dsn_format_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	long off, hh, mm;
	char sign;

	if (localtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "Thu, 01 Jan 1970 00:00:00 +0000");
		return;
	}
	off = tm.tm_gmtoff / 60;
	sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	hh = off / 60;
	mm = off % 60;
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
		 dsn_wdays[tm.tm_wday % 7], tm.tm_mday, dsn_months[tm.tm_mon % 12],
		 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, hh, mm);
}

static bool dsn_is_ascii(const char *s)
{
	for (; s != NULL && *s; s++) {
		if ((unsigned char)*s >= 0x80)
			return false;
	}
	return true;
}

/*
 * Copy text into a header field or a report line: CR, LF and other
 * controls become spaces so remote text can never start a new field or
 * end the part. 8-bit bytes are kept only where UTF-8 is allowed.
 */
static int dsn_append_clean(struct strbuf *sb, const char *s, bool allow_8bit)
{
	char buf[256];
	size_t n = 0;

	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80 && !allow_8bit)
			c = '?';
		buf[n++] = (char)c;
		if (n == sizeof(buf)) {
			if (strbuf_append(sb, buf, n) < 0)
				return -1;
			n = 0;
		}
	}
	return strbuf_append(sb, buf, n);
}

/* Whether any address of the report needs UTF-8 (RFC 6533 global types). */
static bool dsn_needs_utf8(const struct dsn_report *rep)
{
	const struct envelope *env = rep->env;

	if (env->smtputf8 || !dsn_is_ascii(env->sender))
		return true;
	for (size_t i = 0; i < rep->nrcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[rep->rcpt_index[i]];

		if (!dsn_is_ascii(r->addr) || !dsn_is_ascii(r->orcpt))
			return true;
	}
	return false;
}

/* A recipient whose last reply was not permanent failed because its queue lifetime ran out. */
static bool dsn_rcpt_expired(const struct envelope_rcpt *r)
{
	return r->last_code < 500;
}

/* 1 to 3 digits; advances *pp. */
static bool dsn_parse_digits(const char **pp, unsigned *out)
{
	const char *p = *pp;
	unsigned v = 0, n = 0;

	while (*p >= '0' && *p <= '9' && n < 3) {
		v = v * 10 + (unsigned)(*p++ - '0');
		n++;
	}
	if (n == 0 || (*p >= '0' && *p <= '9'))
		return false;
	*pp = p;
	*out = v;
	return true;
}

/*
 * The RFC 3463 status of a failed recipient: the enhanced code of the
 * last reply ("550 5.1.1 ...") when it agrees with the reply's class,
 * else a generic one.
 */
static void dsn_rcpt_status(const struct envelope_rcpt *r, char *buf, size_t len)
{
	const char *p = r->last_reply;
	unsigned subj, detail;
	char cls;

	if (dsn_rcpt_expired(r)) {
		snprintf(buf, len, "4.4.7");
		return;
	}
	snprintf(buf, len, "5.0.0");
	if (p == NULL || strlen(p) < 4 || (p[3] != ' ' && p[3] != '-'))
		return;
	p += 4;
	cls = p[0];
	if (cls != '0' + r->last_code / 100 || p[1] != '.')
		return;
	p += 2;
	if (!dsn_parse_digits(&p, &subj) || *p++ != '.' || !dsn_parse_digits(&p, &detail))
		return;
	if (*p != '\0' && *p != ' ')
		return;
	snprintf(buf, len, "%c.%u.%u", cls, subj, detail);
}

/* "mx.example.net" from "mx.example.net[192.0.2.1]:25"; the address when there is no name. */
static void dsn_remote_host(const char *remote, char *buf, size_t len)
{
	const char *lb = strchr(remote, '[');
	const char *rb;

	if (lb == NULL) {
		snprintf(buf, len, "%s", remote);
	} else if (lb > remote) {
		snprintf(buf, len, "%.*s", (int)(lb - remote), remote);
	} else {
		rb = strchr(lb, ']');
		if (rb == NULL)
			rb = lb + strlen(lb);
		snprintf(buf, len, "%.*s", (int)(rb - lb - 1), lb + 1);
	}
}

/* The human-readable first part. */
static int dsn_build_text(const struct dsn_report *rep, bool utf8, struct strbuf *sb)
{
	const struct envelope *env = rep->env;
	int rc = 0;

	rc |= strbuf_appendf(sb, "This is the mail system at host %s.\r\n\r\n", rep->reporting_mta);
	rc |= strbuf_appends(sb, "I'm sorry to have to inform you that your message could not\r\n"
				 "be delivered to one or more recipients. It's attached below.\r\n\r\n");
	rc |= strbuf_appends(sb, "The failed recipients and the reasons follow.\r\n\r\n");
	for (size_t i = 0; i < rep->nrcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[rep->rcpt_index[i]];

		rc |= strbuf_appends(sb, "<");
		rc |= dsn_append_clean(sb, r->addr, utf8);
		rc |= strbuf_appends(sb, ">: ");
		if (dsn_rcpt_expired(r))
			rc |= strbuf_appends(sb, "delivery time expired; last error: ");
		if (r->remote != NULL && r->last_code > 0) {
			rc |= strbuf_appends(sb, "host ");
			rc |= dsn_append_clean(sb, r->remote, false);
			rc |= strbuf_appends(sb, " said: ");
		}
		rc |= dsn_append_clean(sb, r->last_reply ? r->last_reply : "unknown error", false);
		rc |= strbuf_appends(sb, "\r\n\r\n");
	}
	rc |= strbuf_appendf(sb, "Queue ID: %s\r\n", env->id);
	return rc ? -1 : 0;
}

/* "rfc822; a@b" from an ORCPT given as "rfc822;a@b". */
static int dsn_append_orcpt(struct strbuf *sb, const char *orcpt, bool utf8)
{
	const char *semi = strchr(orcpt, ';');
	int rc = 0;

	rc |= strbuf_appends(sb, "Original-Recipient: ");
	if (semi == NULL) {
		rc |= strbuf_appends(sb, "rfc822; ");
	} else {
		char type[32];

		snprintf(type, sizeof(type), "%.*s", (int)(semi - orcpt), orcpt);
		rc |= dsn_append_clean(sb, type, false);
		rc |= strbuf_appends(sb, "; ");
		orcpt = semi + 1;
		while (*orcpt == ' ')
			orcpt++;
	}
	rc |= dsn_append_clean(sb, orcpt, utf8);
	rc |= strbuf_appends(sb, "\r\n");
	return rc ? -1 : 0;
}

static int dsn_build_rcpt_fields(const struct dsn_report *rep, const struct envelope_rcpt *r,
				 bool utf8, struct strbuf *sb)
{
	char status[16], host[300], date[64];
	int rc = 0;

	rc |= strbuf_appends(sb, "\r\n");
	rc |= strbuf_appendf(sb, "Final-Recipient: %s; ", dsn_is_ascii(r->addr) ? "rfc822" : "utf-8");
	rc |= dsn_append_clean(sb, r->addr, utf8);
	rc |= strbuf_appends(sb, "\r\n");
	if (r->orcpt != NULL)
		rc |= dsn_append_orcpt(sb, r->orcpt, utf8);
	dsn_rcpt_status(r, status, sizeof(status));
	rc |= strbuf_appendf(sb, "Action: failed\r\nStatus: %s\r\n", status);
	if (r->remote != NULL && r->remote[0] != '\0') {
		dsn_remote_host(r->remote, host, sizeof(host));
		rc |= strbuf_appends(sb, "Remote-MTA: dns; ");
		rc |= dsn_append_clean(sb, host, false);
		rc |= strbuf_appends(sb, "\r\n");
	}
	if (r->last_code > 0 && r->last_reply != NULL) {
		rc |= strbuf_appends(sb, "Diagnostic-Code: smtp; ");
		rc |= dsn_append_clean(sb, r->last_reply, false);
		rc |= strbuf_appends(sb, "\r\n");
	}
	dsn_format_date(rep->now, date, sizeof(date));
	rc |= strbuf_appendf(sb, "Last-Attempt-Date: %s\r\n", date);
	return rc ? -1 : 0;
}

/* The message/delivery-status part: per-message fields, then one block per recipient. */
static int dsn_build_status(const struct dsn_report *rep, bool utf8, struct strbuf *sb)
{
	const struct envelope *env = rep->env;
	char date[64];
	int rc = 0;

	rc |= strbuf_appends(sb, "Reporting-MTA: dns; ");
	rc |= dsn_append_clean(sb, rep->reporting_mta, false);
	rc |= strbuf_appendf(sb, "\r\nX-Postern-Queue-ID: %s\r\n", env->id);
	if (env->envid != NULL) {
		rc |= strbuf_appends(sb, "Original-Envelope-Id: ");
		rc |= dsn_append_clean(sb, env->envid, utf8);
		rc |= strbuf_appends(sb, "\r\n");
	}
	dsn_format_date(env->arrival, date, sizeof(date));
	rc |= strbuf_appendf(sb, "Arrival-Date: %s\r\n", date);
	for (size_t i = 0; i < rep->nrcpts && rc == 0; i++)
		rc |= dsn_build_rcpt_fields(rep, &env->rcpts[rep->rcpt_index[i]], utf8, sb);
	return rc ? -1 : 0;
}

/* Read the original as edited (its marks included) until len bytes or its end; -1 on error. */
static ssize_t dsn_read_original(const struct dsn_report *rep, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = message_view_pread(rep->env, rep->orig_fd, rep->orig_len, buf + got,
					       len - got, got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/*
 * The returned original: the whole message when the sender asked for it
 * (or did not say) and it is small enough, else only its header block.
 * BINARYMIME content cannot travel in a DATA transaction, so it is never
 * returned whole.
 */
static int dsn_build_original(const struct dsn_report *rep, bool utf8, struct strbuf *type,
			      struct strbuf *sb)
{
	const struct envelope *env = rep->env;
	uint64_t size = message_view_size(env, rep->orig_len);
	bool full = env->ret != DSN_RET_HDRS && size <= DSN_RETURN_FULL_MAX &&
		    env->body != BODY_BINARYMIME;
	size_t want = full ? (size_t)size : (size_t)(size < DSN_HEADERS_MAX ? size : DSN_HEADERS_MAX);
	char *buf = xmalloc(want + 1);
	ssize_t got = dsn_read_original(rep, buf, want);
	size_t len;
	int rc = 0;

	if (got < 0) {
		log_warn("id=%s cannot read the original message: %s", env->id, strerror(errno));
		free(buf);
		return -1;
	}
	if (full) {
		len = (size_t)got;
		rc |= strbuf_appends(type, utf8 ? "message/global" : "message/rfc822");
		if (env->body == BODY_8BITMIME || env->smtputf8)
			rc |= strbuf_appends(type, "\r\nContent-Transfer-Encoding: 8bit");
	} else {
		len = message_header_block_len(buf, (size_t)got, (uint64_t)got == size);
		rc |= strbuf_appends(type, utf8 ? "message/global-headers" : "text/rfc822-headers");
		if (!utf8 && env->body == BODY_8BITMIME)
			rc |= strbuf_appends(type, "\r\nContent-Transfer-Encoding: 8bit");
	}
	rc |= strbuf_append(sb, buf, len);
	free(buf);
	return rc ? -1 : 0;
}

/*
 * A boundary made of the queue id, the time and a try counter, checked
 * against every part: "=_" cannot start a base64 or quoted-printable
 * line, and the check covers raw content that happens to contain it.
 */
static int dsn_choose_boundary(const struct dsn_report *rep, struct strbuf *const *parts,
			       size_t nparts, char *boundary, size_t len)
{
	for (unsigned t = 0; t < DSN_BOUNDARY_TRIES; t++) {
		bool clash = false;

		snprintf(boundary, len, "=_postern_%s_%lld_%u", rep->env->id, (long long)rep->now, t);
		for (size_t i = 0; i < nparts && !clash; i++)
			clash = parts[i]->len > 0 &&
				memmem(parts[i]->data, parts[i]->len, boundary, strlen(boundary)) != NULL;
		if (!clash)
			return 0;
	}
	return -1;
}

/* A part's body must end with CRLF so the next delimiter starts its own line. */
static int dsn_append_part(struct strbuf *out, const char *boundary, const char *desc,
			   const char *type, const struct strbuf *body)
{
	int rc = 0;

	rc |= strbuf_appendf(out, "--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n\r\n",
			     boundary, desc, type);
	rc |= strbuf_append(out, body->data ? body->data : "", body->len);
	if (body->len < 2 || memcmp(body->data + body->len - 2, "\r\n", 2) != 0)
		rc |= strbuf_appends(out, "\r\n");
	return rc ? -1 : 0;
}

/* Keeps Message-IDs unique when one message bounces twice within a second. */
static unsigned dsn_random(void)
{
	unsigned v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (unsigned)getpid();
	return v % 1000000;
}

/* The RFC 5322 header of the bounce; Auto-Submitted (RFC 3834) keeps autoresponders from answering it. */
static int dsn_append_headers(const struct dsn_report *rep, const char *boundary, struct strbuf *out)
{
	const struct envelope *env = rep->env;
	char date[64];
	int rc = 0;

	dsn_format_date(rep->now, date, sizeof(date));
	rc |= strbuf_appends(out, "From: \"Mail Delivery System\" <");
	rc |= dsn_append_clean(out, rep->from, true);
	rc |= strbuf_appends(out, ">\r\nTo: <");
	rc |= dsn_append_clean(out, env->sender, true);
	rc |= strbuf_appends(out, ">\r\nSubject: Undelivered Mail Returned to Sender\r\n");
	rc |= strbuf_appendf(out, "Date: %s\r\n", date);
	rc |= strbuf_appendf(out, "Message-ID: <%s.bounce.%lld%06u@", env->id, (long long)rep->now,
			     dsn_random());
	rc |= dsn_append_clean(out, rep->reporting_mta, false);
	rc |= strbuf_appends(out, ">\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	rc |= strbuf_appendf(out, "Content-Type: multipart/report; report-type=delivery-status; "
				  "boundary=\"%s\"\r\n", boundary);
	rc |= strbuf_appends(out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");
	return rc ? -1 : 0;
}

int dsn_build_bounce(const struct dsn_report *rep, struct strbuf *out)
{
	bool utf8 = dsn_needs_utf8(rep);
	struct strbuf text, status, orig, orig_type;
	struct strbuf *parts[] = { &text, &status, &orig };
	char boundary[128];
	int rc = -1;

	strbuf_init(&text, DSN_TEXT_MAX);
	strbuf_init(&status, DSN_TEXT_MAX);
	strbuf_init(&orig, DSN_RETURN_FULL_MAX + DSN_HEADERS_MAX);
	strbuf_init(&orig_type, 256);
	if (dsn_build_text(rep, utf8, &text) < 0 || dsn_build_status(rep, utf8, &status) < 0) {
		log_warn("id=%s bounce report too large", rep->env->id);
		goto out;
	}
	if (rep->orig_fd >= 0 && dsn_build_original(rep, utf8, &orig_type, &orig) < 0)
		goto out;
	if (dsn_choose_boundary(rep, parts, 3, boundary, sizeof(boundary)) < 0) {
		log_warn("id=%s no usable MIME boundary for the bounce", rep->env->id);
		goto out;
	}
	if (dsn_append_headers(rep, boundary, out) < 0 ||
	    dsn_append_part(out, boundary, "Notification",
			    utf8 ? "text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
				 : "text/plain; charset=us-ascii", &text) < 0 ||
	    dsn_append_part(out, boundary, "Delivery report",
			    utf8 ? "message/global-delivery-status" : "message/delivery-status",
			    &status) < 0 ||
	    (rep->orig_fd >= 0 &&
	     dsn_append_part(out, boundary, "Undelivered Message", orig_type.data, &orig) < 0) ||
	    strbuf_appendf(out, "--%s--\r\n", boundary) < 0) {
		log_warn("id=%s bounce message exceeds its size limit", rep->env->id);
		goto out;
	}
	rc = 0;
out:
	strbuf_free(&text);
	strbuf_free(&status);
	strbuf_free(&orig);
	strbuf_free(&orig_type);
	return rc;
}

int dsn_wants_failure_report(const struct envelope *env, const struct envelope_rcpt *r)
{
	if (env->sender == NULL || env->sender[0] == '\0' || env->is_bounce)
		return 0;
	if (r->notify == 0)
		return 1;
	if (r->notify & DSN_NOTIFY_NEVER)
		return 0;
	return (r->notify & DSN_NOTIFY_FAILURE) != 0;
}
