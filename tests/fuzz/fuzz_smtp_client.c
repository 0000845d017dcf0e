/*
 * The SMTP client's parsers see whatever a remote server sends: replies
 * and EHLO keywords must never read or write out of bounds, and a reply's
 * text must stay printable. Dot-stuffing must round-trip through the
 * server side's DATA decoder for any CRLF text, however it is split.
 * The first byte picks the split size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_replies(const char *in, size_t len)
{
	struct smtp_reply r;
	struct smtp_ext ext = { 0 };
	size_t start = 0;

	smtp_reply_reset(&r);
	while (start < len) {
		const char *nl = memchr(in + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - in) : len, linelen = end - start;
		const char *text;
		size_t textlen;
		enum smtp_reply_state st;

		if (linelen > 0 && in[start + linelen - 1] == '\r')
			linelen--;
		st = smtp_reply_feed(&r, in + start, linelen, &text, &textlen);
		if (st != SMTP_REPLY_MALFORMED) {
			if (text < in + start || text + textlen > in + start + linelen)
				abort();
			smtp_ext_parse(&ext, text, textlen);
		}
		for (const char *p = r.text; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
		if (strlen(r.text) >= sizeof(r.text))
			abort();
		if (st != SMTP_REPLY_MORE)
			smtp_reply_reset(&r);
		start = end + 1;
	}
}

static bool only_crlf_newlines(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && (i + 1 == len || in[i + 1] != '\n'))
			return false;
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			return false;
	}
	return true;
}

static void collect(void *arg, const char *p, size_t n)
{
	strbuf_append(arg, p, n);
}

static void fuzz_dotstuff(const char *in, size_t len, size_t step)
{
	struct smtp_dotstuff ds;
	struct smtp_data_decoder dec;
	struct strbuf wire, back;
	char *out = malloc(2 * step), end[5];
	size_t used, n;

	strbuf_init(&wire, 4 * len + 16);
	strbuf_init(&back, 4 * len + 16);
	smtp_dotstuff_init(&ds);
	for (size_t i = 0; i < len; i += step) {
		n = len - i < step ? len - i : step;
		strbuf_append(&wire, out, smtp_dotstuff(&ds, in + i, n, out));
	}
	n = smtp_dotstuff_end(&ds, end);
	strbuf_append(&wire, end, n);
	if (only_crlf_newlines(in, len)) {
		smtp_data_init(&dec, true, BARE_NEWLINE_REJECT, SIZE_MAX);
		used = smtp_data_feed(&dec, wire.data, wire.len, collect, &back);
		/* the end marker is where we put it, and the text comes back whole */
		if (dec.state != SMTP_DATA_DONE || used != wire.len)
			abort();
		if (back.len < len || memcmp(back.data, in, len) != 0)
			abort();
		if (back.len != len && !(back.len == len + 2 && memcmp(back.data + len, "\r\n", 2) == 0))
			abort();
	}
	strbuf_free(&wire);
	strbuf_free(&back);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_replies((const char *)data + 1, size - 1);
	fuzz_dotstuff((const char *)data + 1, size - 1, (size_t)data[0] % 64 + 1);
	return 0;
}
