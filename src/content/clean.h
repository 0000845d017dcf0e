/*
 * The virus "clean" action: the infected parts of an accepted message are
 * replaced by a short text/plain note naming the virus, and the rest is
 * delivered. Like marks, the change is a set of envelope edits (see
 * queue/message_view.h): the spool file stays exactly as received.
 *
 * GMime does not keep byte offsets, so a strict MIME walker over the raw
 * bytes finds each part's range; it must agree with the parsed message
 * (content/mime.h) part by part, or nothing is cleaned.
 */
#ifndef POSTERN_CONTENT_CLEAN_H
#define POSTERN_CONTENT_CLEAN_H

#include <stdbool.h>
#include <stddef.h>

#include "content/pipeline.h"
#include "queue/envelope.h"

#define CLEAN_TOKEN_MAX 128          /* type or subtype, NUL included */

/* One MIME entity of the raw message, in the order of mime_message.parts. */
struct clean_part {
	int parent;                  /* index in clean_walk.parts, -1 for the message */
	char type[CLEAN_TOKEN_MAX];  /* lower case, "text" when not declared */
	char subtype[CLEAN_TOKEN_MAX];
	size_t start;                /* first byte of its header block */
	size_t body;                 /* first byte of its body */
	size_t end;                  /* end of its body: the line end before the next delimiter */
	bool in_multipart;           /* a child of a multipart: [start, end) lies between delimiters */
};

struct clean_walk {
	struct clean_part *parts;
	size_t nparts;
};

/*
 * Walk the MIME structure of raw: multiparts by their boundaries and
 * message/rfc822 bodies, recursively, in document order. Strict: -1 (and
 * w empty) for anything it cannot place with certainty — a header line
 * that is not a field, a multipart without boundary, with a boundary
 * that could be taken for an enclosing one, without its first or closing
 * delimiter, an encoded message/rfc822, or more nesting or parts than
 * mime.h's defaults. A Content-Type it cannot parse makes a leaf of type
 * application/octet-stream, as GMime reads it.
 */
int clean_walk_parts(const unsigned char *raw, size_t len, struct clean_walk *w);
void clean_walk_free(struct clean_walk *w);

/*
 * Replace every part r's results ask to clean (action CONTENT_CLEAN) with
 * a text/plain note "The attachment <name> was removed by postern: virus
 * <NAME> was found in it.", and mark the message with one
 * "X-Postern-Virus-Cleaned: <name> removed" header per removed part, all
 * as edits in env. A part inside a message/rfc822 (or a uuencoded file
 * inside a text part) takes the nearest enclosing multipart child with it.
 * raw/len is the whole spooled message, r the content stage's result for
 * it. extra_headers (NULL or "Name: value" lines, at most MARKS_VALUE_MAX
 * bytes in all) go in the same header block, after the Cleaned ones: the
 * block is the one place marks can go. 0 on success (why: what was removed); -1 with env unchanged and the
 * reason in why when the message cannot be cleaned with certainty — the
 * virus is in the message itself, the structure is unsure or disagrees
 * with r->mime, or the edits do not fit: the caller must then quarantine.
 */
int content_clean_parts(struct envelope *env, const unsigned char *raw, size_t len,
			const struct content_result *r, const char *extra_headers, char *why, size_t whylen);

#endif
