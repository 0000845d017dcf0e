/*
 * Delivery status notifications (RFC 3464 multipart/report, RFC 3461
 * parameters): the bounce sent to the envelope sender when recipients
 * fail permanently or the queue lifetime runs out.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/strbuf.h"
#include "queue/envelope.h"

/* Largest part of the original message returned with RET=FULL. */
#define DSN_RETURN_FULL_MAX (256 * 1024)

struct dsn_report {
	const struct envelope *env;       /* original envelope */
	const size_t *rcpt_index;         /* failed recipients (env->rcpts[i]) */
	size_t nrcpts;
	const char *reporting_mta;        /* our host name */
	const char *from;                 /* "MAILER-DAEMON@host" */
	time_t now;
	int orig_fd;                      /* original message, offset 0; -1 if unavailable */
	uint64_t orig_len;
};

/* Build the whole bounce message (headers + body, CRLF) into out. */
int dsn_build_bounce(const struct dsn_report *rep, struct strbuf *out);

/* Whether a failure of this recipient should be reported to the sender. */
int dsn_wants_failure_report(const struct envelope *env, const struct envelope_rcpt *r);

#endif
