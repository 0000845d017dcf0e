/*
 * The DATA decoder must give the same result however the bytes are split
 * across reads (an attacker controls the TCP segmentation), and must never
 * read or write out of bounds. The first byte picks the mode and the split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "smtp/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void collect(void *arg, const char *p, size_t n)
{
	strbuf_append(arg, p, n);
}

static size_t decode(const char *in, size_t len, size_t step, bool dot, enum bare_newline_policy p,
		     struct strbuf *out, struct smtp_data_decoder *d)
{
	size_t consumed = 0;

	smtp_data_init(d, dot, p, 64);
	while (consumed < len && d->state != SMTP_DATA_DONE) {
		size_t n = len - consumed < step ? len - consumed : step;
		size_t used = smtp_data_feed(d, in + consumed, n, collect, out);
		if (used > n)
			abort();
		consumed += used;
		if (used < n && d->state != SMTP_DATA_DONE)
			abort();
	}
	if (!dot)
		smtp_data_finish(d, collect, out);
	return consumed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data_decoder a, b;
	struct strbuf oa, ob;
	bool dot;
	enum bare_newline_policy policy;
	size_t step, ca, cb;

	if (size < 1)
		return 0;
	dot = data[0] & 1;
	policy = (data[0] & 2) ? BARE_NEWLINE_NORMALIZE : BARE_NEWLINE_REJECT;
	step = (size_t)(data[0] >> 2) + 1;
	strbuf_init(&oa, 1 << 24);
	strbuf_init(&ob, 1 << 24);
	ca = decode((const char *)data + 1, size - 1, size, dot, policy, &oa, &a);
	cb = decode((const char *)data + 1, size - 1, step, dot, policy, &ob, &b);
	if (ca != cb || oa.len != ob.len || (oa.len && memcmp(oa.data, ob.data, oa.len) != 0) ||
	    a.bare_newline_seen != b.bare_newline_seen || a.line_too_long != b.line_too_long)
		abort();
	/* Normalised output never holds a bare CR or LF. */
	if (dot && policy == BARE_NEWLINE_NORMALIZE) {
		for (size_t i = 0; i < oa.len; i++) {
			if ((oa.data[i] == '\n' && (i == 0 || oa.data[i - 1] != '\r')) ||
			    (oa.data[i] == '\r' && (i + 1 == oa.len || oa.data[i + 1] != '\n')))
				abort();
		}
	}
	strbuf_free(&oa);
	strbuf_free(&ob);
	return 0;
}
