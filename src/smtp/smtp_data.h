/*
 * The DATA/BDAT byte stream decoder: finds the end of DATA, removes dot
 * stuffing, and handles bare CR and bare LF by policy. Pure and streaming:
 * bytes go in as they arrive, decoded spans come out through a callback.
 *
 * Only CRLF "." CRLF ends DATA, and only when the CRLF before the dot was a
 * real one: a line start produced by normalising a bare CR or LF never
 * begins an end marker. That is what keeps one message from smuggling
 * another (CVE-2023-51764 and relatives).
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

enum smtp_data_state {
	SMTP_DATA_LINE_START,       /* after a real CRLF */
	SMTP_DATA_SOFT_LINE_START,  /* after a normalised bare CR/LF */
	SMTP_DATA_MID,
	SMTP_DATA_CR,               /* a CR waiting for its LF */
	SMTP_DATA_DOT,              /* a line that began with '.' */
	SMTP_DATA_DOT_CR,           /* ".\r" at a real line start */
	SMTP_DATA_DONE,
};

struct smtp_data_decoder {
	enum smtp_data_state state;
	bool dot_stuffed;           /* DATA: yes; BDAT: no (and no end marker) */
	enum bare_newline_policy policy;
	size_t max_line;            /* longest text line, without CRLF */
	size_t line_len;
	bool bare_newline_seen;
	bool line_too_long;
};

typedef void (*smtp_data_emit)(void *arg, const char *data, size_t len);

void smtp_data_init(struct smtp_data_decoder *d, bool dot_stuffed,
		    enum bare_newline_policy policy, size_t max_line);
/*
 * Decode up to len bytes; returns how many were consumed. With DATA the
 * decoder stops right after the end marker (state SMTP_DATA_DONE), so the
 * bytes that follow (pipelined commands) stay with the caller.
 */
size_t smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
		      smtp_data_emit emit, void *arg);
/* End of the last BDAT chunk: flush a pending CR. */
void smtp_data_finish(struct smtp_data_decoder *d, smtp_data_emit emit, void *arg);

#endif
