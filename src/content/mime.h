/*
 * A raw message parsed once (GMime 3) into what the content engines need:
 * a flat array of parts in document order, each with its parent's index,
 * decoded body, file name, text in UTF-8 and, for HTML, the visible text
 * and links. Hostile input never crashes it and never makes it grow
 * without bound: past a limit parsing stops and the message says which
 * limit and keeps what was parsed so far.
 */
#ifndef POSTERN_CONTENT_MIME_H
#define POSTERN_CONTENT_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "content/html.h"

struct mime_limits {
	unsigned max_depth;          /* nesting of multipart and message/rfc822 */
	size_t max_parts;
	size_t max_decoded;          /* decoded body bytes of all parts together */
	size_t max_header;           /* header bytes of any one header block */
};

#define MIME_MAX_DEPTH_DEFAULT   20
#define MIME_MAX_PARTS_DEFAULT   1000
#define MIME_MAX_DECODED_DEFAULT ((size_t)64 * 1024 * 1024)
#define MIME_MAX_HEADER_DEFAULT  ((size_t)1024 * 1024)

/* Which limit stopped parsing (bits of mime_message.limit_exceeded). */
enum mime_limit {
	MIME_LIMIT_DEPTH   = 1 << 0,
	MIME_LIMIT_PARTS   = 1 << 1,
	MIME_LIMIT_DECODED = 1 << 2,
	MIME_LIMIT_HEADER  = 1 << 3,
};

/* Anomalies of a well-parsed message (bits of mime_message.flags). */
enum mime_flag {
	MIME_FLAG_BROKEN_BASE64     = 1 << 0,  /* bad characters, data after padding, cut quantum */
	MIME_FLAG_MISSING_BOUNDARY  = 1 << 1,  /* multipart without boundary, or boundary never seen */
	MIME_FLAG_TRUNCATED         = 1 << 2,  /* a multipart ended without its closing boundary */
	MIME_FLAG_BAD_HEADER        = 1 << 3,  /* invalid header name or conflicting headers */
};

struct mime_part {
	int parent;                  /* index in mime_message.parts, -1 for the root */
	unsigned depth;              /* 0 for the root */
	char *type;                  /* lower case: "text", "multipart", "application" */
	char *subtype;               /* lower case: "plain", "mixed", "octet-stream" */
	char *charset;               /* as declared, NULL if none */
	char *disposition;           /* lower case "attachment"/"inline", NULL if none */
	char *filename;              /* UTF-8 (RFC 2231/2047 decoded), NULL if none */
	char *encoding;              /* transfer encoding, lower case, NULL if none */
	char *magic_type;            /* libmagic's type of a non-text leaf, NULL if not typed */
	unsigned char *body;         /* decoded bytes of a leaf (NUL-terminated), NULL otherwise */
	size_t body_len;
	char *text;                  /* text leaves: the body in UTF-8, invalid bytes as U+FFFD */
	size_t text_len;
	struct html_doc *html;       /* text/html leaves: visible text and links, else NULL */
	bool is_attachment;          /* disposition attachment, or a file name, or uuencoded */
	bool from_uuencode;          /* extracted from a "begin NNN name" block of a text part */
	bool broken_base64;
};

struct mime_message {
	struct mime_part *parts;
	size_t nparts;
	size_t parts_cap;
	char *subject;               /* UTF-8, RFC 2047 decoded; NULL if absent */
	char *from;
	char *to;
	unsigned limit_exceeded;     /* enum mime_limit bits; 0: fully parsed */
	unsigned flags;              /* enum mime_flag bits */
	size_t decoded_total;        /* decoded bytes kept, against max_decoded */
	size_t header_bytes;         /* size of the top-level header block */
};

/* libmagic typing shared by threads (one magic_t behind a mutex). */
struct mime_magic;

/* Once per process, before any thread parses (g_mime_init). */
void mime_global_init(void);
/* At process end only: releases GMime's global caches. */
void mime_global_shutdown(void);

/* NULL when libmagic's database cannot be loaded (logged): parts go untyped. */
struct mime_magic *mime_magic_open(void);
void mime_magic_close(struct mime_magic *mg);

void mime_limits_default(struct mime_limits *l);
/*
 * Parse `len` bytes of a raw message. Never fails: a message GMime cannot
 * make sense of at all comes back with no parts. `magic` may be NULL.
 */
struct mime_message *mime_parse(const unsigned char *raw, size_t len,
				const struct mime_limits *limits, struct mime_magic *magic);
void mime_message_free(struct mime_message *m);

/* "depth", "parts", "decoded", "header" for one enum mime_limit bit. */
const char *mime_limit_name(unsigned bit);
/* "broken_base64", ... for one enum mime_flag bit. */
const char *mime_flag_name(unsigned bit);

#endif
