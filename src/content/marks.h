/*
 * Marks on accepted mail: X-Postern-* header lines and a subject tag,
 * recorded as edits in the envelope (see queue/message_view.h) so the
 * spooled bytes, and any DKIM signature over them, stay as received.
 */
#ifndef POSTERN_MARKS_H
#define POSTERN_MARKS_H

#include <stdbool.h>
#include <stddef.h>

#include "queue/envelope.h"

/* Longest header value we write (before encoding); longer text is cut. */
#define MARKS_VALUE_MAX 900

struct marks_options {
	const char *status_header;   /* "X-Postern-Status", NULL: not written */
	const char *scl_header;      /* "X-Postern-SCL", NULL: not written */
	const char *reason_header;   /* "X-Postern-Reason", NULL: not written */
	const char *subject_tag;     /* "[SPAM] " (printable ASCII) or NULL */
	bool add_headers;            /* false: only the subject tag */
};

/*
 * Add the marks to env as edits. raw/len is the spooled message, at least
 * its whole header block. The header lines go right after the message's
 * first header field (the Received line the gateway writes first), in the
 * message's own line-end style: status, then SCL (when scl >= 0), then
 * reasons (when not NULL or empty), then extra_headers ("Name: value"
 * lines separated by LF or CRLF, or NULL). Values are cleaned of control
 * characters, cut to MARKS_VALUE_MAX, folded at 78 columns and, when not
 * ASCII, written as RFC 2047 UTF-8 encoded-words. The subject tag (its
 * trailing blanks replaced by one space) goes in front of the first
 * Subject's value unless it is already there; without a
 * Subject, a "Subject: <tag>" line is added with the headers.
 * 0 on success; -1 (env unchanged) when the message has no line end in
 * its first len bytes, an option or an extra header line is malformed, or
 * the edits would collide with edits already in env.
 */
int marks_apply(struct envelope *env, const unsigned char *raw, size_t len,
		const struct marks_options *o, const char *status, int scl, const char *reasons,
		const char *extra_headers);

#endif
