/*
 * SMTP client pieces without I/O: the reply reader, EHLO keywords and
 * dot-stuffing. Kept apart from the connection logic so a fuzzer and unit
 * tests can drive them directly.
 */
#include "smtp/smtp_client.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void smtp_reply_reset(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void smtp_text_clean(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* The first line as "CODE text", a NUL inside made a "?" like any control. */
static void smtp_reply_keep_text(struct smtp_reply *r, const char *text, size_t len)
{
	size_t o = (size_t)snprintf(r->text, sizeof(r->text), "%03d", r->code);

	if (len > 0 && o + 1 < sizeof(r->text))
		r->text[o++] = ' ';
	for (size_t i = 0; i < len && o + 1 < sizeof(r->text); i++)
		r->text[o++] = text[i] == '\0' ? '?' : text[i];
	r->text[o] = '\0';
	smtp_text_clean(r->text);
}

enum smtp_reply_state smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
				      const char **text, size_t *textlen)
{
	int code;
	bool last;

	if (len < 3 || len > SMTP_REPLY_LINE_MAX || r->nlines >= SMTP_REPLY_LINES_MAX)
		return SMTP_REPLY_MALFORMED;
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return SMTP_REPLY_MALFORMED;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return SMTP_REPLY_MALFORMED;
	if (r->nlines > 0 && code != r->code)
		return SMTP_REPLY_MALFORMED;
	last = len == 3 || line[3] == ' ';
	*text = len > 3 ? line + 4 : line + 3;
	*textlen = len > 3 ? len - 4 : 0;
	if (r->nlines == 0) {
		r->code = code;
		smtp_reply_keep_text(r, *text, *textlen);
	}
	r->nlines++;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_MORE;
}

static bool smtp_ext_word(const char *text, size_t len, const char *word, const char **arg)
{
	size_t wl = strlen(word);

	if (len < wl || strncasecmp(text, word, wl) != 0)
		return false;
	if (len == wl) {
		*arg = text + len;
		return true;
	}
	if (text[wl] != ' ')
		return false;
	*arg = text + wl + 1;
	return true;
}

void smtp_ext_parse(struct smtp_ext *ext, const char *text, size_t len)
{
	static const struct { const char *word; unsigned flag; } words[] = {
		{ "PIPELINING", SMTP_EXT_PIPELINING },
		{ "8BITMIME", SMTP_EXT_8BITMIME },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
		{ "DSN", SMTP_EXT_DSN },
		{ "STARTTLS", SMTP_EXT_STARTTLS },
		{ "CHUNKING", SMTP_EXT_CHUNKING },
		{ "BINARYMIME", SMTP_EXT_BINARYMIME },
		{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
	};
	const char *arg;

	if (smtp_ext_word(text, len, "SIZE", &arg)) {
		uint64_t v = 0;
		const char *end = text + len;

		ext->flags |= SMTP_EXT_SIZE;
		while (arg < end && *arg >= '0' && *arg <= '9' && v < UINT64_MAX / 10 - 9)
			v = v * 10 + (uint64_t)(*arg++ - '0');
		ext->size_max = arg == end ? v : 0;
		return;
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (smtp_ext_word(text, len, words[i].word, &arg)) {
			ext->flags |= words[i].flag;
			return;
		}
	}
}

void smtp_dotstuff_init(struct smtp_dotstuff *ds)
{
	ds->at_line_start = true;
}

size_t smtp_dotstuff(struct smtp_dotstuff *ds, const char *in, size_t len, char *out)
{
	size_t o = 0;
	bool bol = ds->at_line_start;

	for (size_t i = 0; i < len; i++) {
		if (bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	ds->at_line_start = bol;
	return o;
}

size_t smtp_dotstuff_end(const struct smtp_dotstuff *ds, char out[5])
{
	size_t o = 0;

	if (!ds->at_line_start) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}
