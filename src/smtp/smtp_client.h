/*
 * The pure parts of an SMTP client (RFC 5321), shared by outbound delivery
 * and recipient callouts: reading a server reply line by line, reading the
 * extensions of an EHLO reply, and dot-stuffing a message for DATA while
 * it streams. No I/O and no allocation.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINES_MAX 100    /* more lines make the reply malformed */
#define SMTP_REPLY_LINE_MAX 1000    /* bytes per line without CRLF (RFC 5321 4.5.3.1.5 says 512) */
#define SMTP_REPLY_TEXT_MAX 512     /* what is kept of the first line, with the NUL */

/* A reply being read; zero it (or smtp_reply_reset) before the first line. */
struct smtp_reply {
	int code;                   /* 200..599 once the first line is in */
	unsigned nlines;
	/* "250 2.1.0 Ok": first line, continuation dash made a space, controls made '?' */
	char text[SMTP_REPLY_TEXT_MAX];
};

enum smtp_reply_state {
	SMTP_REPLY_MORE = 0,        /* a continuation line: more follow */
	SMTP_REPLY_DONE,            /* the last line: the reply is complete */
	SMTP_REPLY_MALFORMED,       /* not a reply: the connection cannot go on */
};

void smtp_reply_reset(struct smtp_reply *r);
/*
 * Add one line (without CRLF). text is where the line's text starts (after
 * "250-" or "250 "), for callers that read each line, like EHLO.
 */
enum smtp_reply_state smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
				      const char **text, size_t *textlen);

/* Remote text goes to logs and bounces: control characters become '?'. */
void smtp_text_clean(char *s);

/* EHLO keywords the client acts on. */
enum smtp_ext_flag {
	SMTP_EXT_PIPELINING = 1 << 0,
	SMTP_EXT_SIZE = 1 << 1,
	SMTP_EXT_8BITMIME = 1 << 2,
	SMTP_EXT_SMTPUTF8 = 1 << 3,
	SMTP_EXT_DSN = 1 << 4,
	SMTP_EXT_STARTTLS = 1 << 5,
	SMTP_EXT_CHUNKING = 1 << 6,
	SMTP_EXT_BINARYMIME = 1 << 7,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1 << 8,
};

struct smtp_ext {
	unsigned flags;             /* enum smtp_ext_flag bits */
	uint64_t size_max;          /* SIZE argument; 0: absent, unlimited or beyond 64 bits */
};

/* One line of an EHLO reply after the greeting line (text as from smtp_reply_feed). */
void smtp_ext_parse(struct smtp_ext *ext, const char *text, size_t len);

/*
 * DATA transparency (RFC 5321 4.5.2): a '.' starting a line is doubled.
 * The input already has CRLF line ends (the spool stores them so).
 */
struct smtp_dotstuff {
	bool at_line_start;
};

void smtp_dotstuff_init(struct smtp_dotstuff *ds);
/*
 * Stuff len bytes of in into out, which must hold 2 * len bytes; returns the
 * bytes written. Calls can split the message anywhere.
 */
size_t smtp_dotstuff(struct smtp_dotstuff *ds, const char *in, size_t len, char *out);
/* The end of data: CRLF if the message did not end a line, then ".\r\n"; returns the length (<= 5). */
size_t smtp_dotstuff_end(const struct smtp_dotstuff *ds, char out[5]);

#endif
