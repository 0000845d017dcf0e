/*
 * Marks are built as two insertions into the spooled message: one block of
 * header lines after the first header field, and the subject tag in front
 * of the Subject value. Both are checked against the envelope's existing
 * edits before either is added, so a message gets all of its marks or none.
 *
 * Everything written comes from configuration and from engine reasons that
 * may quote the message, so every value is cleaned (no control characters,
 * bounded), folded to 78 columns, and RFC 2047 encoded when not ASCII:
 * nothing a sender puts in a message can break out of our header lines.
 */
#include "content/marks.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/strbuf.h"

#define LOG_MODULE "marks"
#include "core/log.h"

#define MARKS_FOLD_COLUMN 78
#define MARKS_NAME_MAX 76
#define MARKS_TAG_MAX 64
#define MARKS_ENCODED_WORD_MAX 75      /* RFC 2047 section 2 */
#define MARKS_ENCODED_OVERHEAD 12      /* "=?UTF-8?B?" "?=" */
#define MARKS_BLOCK_MAX (32 * 1024)    /* all header lines of one message */

/* What marks need to know about the message's header block. */
struct marks_scan {
	size_t first_end;      /* offset right after the first header field */
	const char *eol;       /* "\r\n" or "\n", as the message's first line */
	bool has_subject;
	size_t subject_value;  /* offset of the first Subject's value */
	bool subject_empty;    /* the value is nothing but the line end */
};

/* A header line being written: the buffer, the current column and the line end. */
struct marks_line {
	struct strbuf *sb;
	size_t col;
	const char *eol;
};

static bool marks_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Offset just past the line that starts at pos (len when it has no line end). */
static size_t marks_line_end(const unsigned char *raw, size_t len, size_t pos)
{
	const unsigned char *nl = memchr(raw + pos, '\n', len - pos);

	return nl ? (size_t)(nl - raw) + 1 : len;
}

static bool marks_line_is_empty(const unsigned char *raw, size_t len, size_t pos)
{
	return raw[pos] == '\n' || (raw[pos] == '\r' && pos + 1 < len && raw[pos + 1] == '\n');
}

/* Where the value of a field starts: past the colon, blanks and folds. */
static size_t marks_value_start(const unsigned char *raw, size_t len, size_t pos)
{
	for (;;) {
		while (pos < len && marks_is_wsp(raw[pos]))
			pos++;
		if (pos + 1 < len && raw[pos] == '\n' && marks_is_wsp(raw[pos + 1]))
			pos += 1;
		else if (pos + 2 < len && raw[pos] == '\r' && raw[pos + 1] == '\n' && marks_is_wsp(raw[pos + 2]))
			pos += 2;
		else
			return pos;
	}
}

/* Whether the line at pos is a "Subject:" field (blanks before the colon are obsolete but legal). */
static bool marks_line_is_subject(const unsigned char *raw, size_t len, size_t pos, size_t *value)
{
	size_t p = pos + 7;

	if (len - pos < 8 || strncasecmp((const char *)raw + pos, "subject", 7) != 0)
		return false;
	while (p < len && marks_is_wsp(raw[p]))
		p++;
	if (p >= len || raw[p] != ':')
		return false;
	*value = marks_value_start(raw, len, p + 1);
	return true;
}

/* Find the first field's end, the line-end style and the Subject; -1 without a line end. */
static int marks_scan_headers(const unsigned char *raw, size_t len, struct marks_scan *s)
{
	const unsigned char *nl = memchr(raw, '\n', len);
	size_t pos;

	memset(s, 0, sizeof(*s));
	if (nl == NULL)
		return -1;
	s->eol = nl > raw && nl[-1] == '\r' ? "\r\n" : "\n";
	if (marks_line_is_empty(raw, len, 0))
		return 0;      /* no header at all: the marks become the header */
	pos = (size_t)(nl - raw) + 1;
	while (pos < len && marks_is_wsp(raw[pos]))
		pos = marks_line_end(raw, len, pos);
	if (raw[pos - 1] != '\n')
		return -1;
	s->first_end = pos;
	for (pos = 0; pos < len && !marks_line_is_empty(raw, len, pos);
	     pos = marks_line_end(raw, len, pos)) {
		if (!marks_is_wsp(raw[pos]) && marks_line_is_subject(raw, len, pos, &s->subject_value)) {
			s->has_subject = true;
			s->subject_empty = s->subject_value >= len || raw[s->subject_value] == '\n' ||
					   raw[s->subject_value] == '\r';
			break;
		}
	}
	return 0;
}

/* RFC 5322 field name: printable ASCII without colon, and short enough to leave room for a value. */
static bool marks_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > MARKS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e || name[i] == ':')
			return false;
	}
	return true;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t marks_utf8_len(const unsigned char *s, size_t n)
{
	size_t need;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need;
}

/*
 * The value as we will write it: control characters and runs of blanks
 * become one space, invalid UTF-8 becomes '?', ends are trimmed, and the
 * text is cut at MARKS_VALUE_MAX without splitting a character. out holds
 * MARKS_VALUE_MAX + 1 bytes; returns the length and whether any byte is not ASCII.
 */
static size_t marks_clean_value(const char *in, size_t inlen, char *out, bool *non_ascii)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0, i = 0, n;

	*non_ascii = false;
	while (i < inlen) {
		if (s[i] < 0x20 || s[i] == 0x7f || s[i] == ' ') {
			if (o > 0 && out[o - 1] != ' ' && o < MARKS_VALUE_MAX)
				out[o++] = ' ';
			i++;
			continue;
		}
		n = marks_utf8_len(s + i, inlen - i);
		if (o + (n ? n : 1) > MARKS_VALUE_MAX)
			break;
		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		*non_ascii |= n > 1;
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

/* One word of a value: on this line if it fits in 78 columns, else on a folded one. */
static int marks_put_word(struct marks_line *l, const char *word, size_t len)
{
	int rc = 0;

	if (l->col > 0 && l->col + 1 + len > MARKS_FOLD_COLUMN) {
		rc |= strbuf_appends(l->sb, l->eol);
		l->col = 0;
	}
	rc |= strbuf_append(l->sb, " ", 1);
	rc |= strbuf_append(l->sb, word, len);
	l->col += 1 + len;
	return rc ? -1 : 0;
}

static int marks_put_ascii(struct marks_line *l, const char *v, size_t len)
{
	const char *end = v + len, *sp;

	for (; v < end; v = sp + 1) {
		sp = memchr(v, ' ', (size_t)(end - v));
		if (sp == NULL)
			sp = end;
		if (marks_put_word(l, v, (size_t)(sp - v)) < 0)
			return -1;
	}
	return 0;
}

/* Bytes of s (whole UTF-8 characters) whose encoded-word fits in room columns. */
static size_t marks_encoded_take(const unsigned char *s, size_t len, size_t room)
{
	size_t take = 0, n;

	while (take < len) {
		n = marks_utf8_len(s + take, len - take);
		if (n == 0)
			n = 1;   /* cleaned before; a stray byte still makes progress */
		if (MARKS_ENCODED_OVERHEAD + 4 * ((take + n + 2) / 3) > room)
			break;
		take += n;
	}
	return take;
}

/*
 * Base64 encoded-words, each as long as the current line allows (at most
 * 75 characters) and never splitting a UTF-8 character: a decoder joins
 * adjacent encoded-words without the folding between them.
 */
static int marks_put_encoded(struct marks_line *l, const char *v, size_t len)
{
	const unsigned char *s = (const unsigned char *)v;
	char word[MARKS_ENCODED_WORD_MAX + 1];
	char *b64 = word + MARKS_ENCODED_OVERHEAD - 2;
	const size_t min_room = MARKS_ENCODED_OVERHEAD + 8;   /* one 4-byte character */
	size_t pos = 0, room, take;
	long n;

	memcpy(word, "=?UTF-8?B?", MARKS_ENCODED_OVERHEAD - 2);
	while (pos < len) {
		room = l->col + 1 + min_room <= MARKS_FOLD_COLUMN ? MARKS_FOLD_COLUMN - 1 - l->col
								 : MARKS_FOLD_COLUMN - 1;
		if (room > MARKS_ENCODED_WORD_MAX)
			room = MARKS_ENCODED_WORD_MAX;
		take = marks_encoded_take(s + pos, len - pos, room);
		n = base64_encode(s + pos, take, b64, sizeof(word) - (MARKS_ENCODED_OVERHEAD - 2) - 2);
		if (n < 0)
			return -1;
		memcpy(b64 + n, "?=", 2);
		if (marks_put_word(l, word, MARKS_ENCODED_OVERHEAD + (size_t)n) < 0)
			return -1;
		pos += take;
	}
	return 0;
}

/* "Name: value" + line end; an empty value after cleaning writes nothing. */
static int marks_header(struct strbuf *sb, const char *eol, const char *name, size_t name_len,
			const char *value, size_t value_len)
{
	char clean[MARKS_VALUE_MAX + 1];
	struct marks_line l = { .sb = sb, .col = name_len + 1, .eol = eol };
	bool non_ascii;
	size_t len;
	int rc;

	if (!marks_name_valid(name, name_len))
		return -1;
	len = marks_clean_value(value, value_len, clean, &non_ascii);
	if (len == 0)
		return 0;
	if (strbuf_append(sb, name, name_len) < 0 || strbuf_append(sb, ":", 1) < 0)
		return -1;
	rc = non_ascii ? marks_put_encoded(&l, clean, len) : marks_put_ascii(&l, clean, len);
	return rc < 0 || strbuf_appends(sb, eol) < 0 ? -1 : 0;
}

static int marks_header_str(struct strbuf *sb, const char *eol, const char *name, const char *value)
{
	if (name == NULL || value == NULL)
		return 0;
	return marks_header(sb, eol, name, strlen(name), value, strlen(value));
}

/* extra_headers: "Name: value" lines, LF or CRLF separated, empty lines ignored. */
static int marks_extra_headers(struct strbuf *sb, const char *eol, const char *extra)
{
	const char *line = extra, *nl, *colon;
	size_t len;

	for (; *line != '\0'; line = nl + (*nl != '\0')) {
		nl = line + strcspn(line, "\n");
		len = (size_t)(nl - line);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == 0)
			continue;
		colon = memchr(line, ':', len);
		if (colon == NULL || marks_header(sb, eol, line, (size_t)(colon - line), colon + 1,
						  len - (size_t)(colon - line) - 1) < 0)
			return -1;
	}
	return 0;
}

/* The tag without its trailing blanks: what "already tagged" and a new Subject use. */
static size_t marks_tag_core_len(const char *tag)
{
	size_t n = strlen(tag);

	while (n > 0 && tag[n - 1] == ' ')
		n--;
	return n;
}

static bool marks_tag_valid(const char *tag)
{
	size_t n = strlen(tag);

	if (n == 0 || n > MARKS_TAG_MAX || marks_tag_core_len(tag) == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)tag[i] < 0x20 || (unsigned char)tag[i] > 0x7e)
			return false;
	}
	return true;
}

static int marks_build_block(struct strbuf *sb, const struct marks_scan *s,
			     const struct marks_options *o, const char *status, int scl,
			     const char *reasons, const char *extra_headers)
{
	char scl_text[16];
	int rc = 0;

	if (o->add_headers) {
		snprintf(scl_text, sizeof(scl_text), "%d", scl);
		rc |= marks_header_str(sb, s->eol, o->status_header, status);
		rc |= marks_header_str(sb, s->eol, o->scl_header, scl >= 0 ? scl_text : NULL);
		rc |= marks_header_str(sb, s->eol, o->reason_header, reasons);
		if (extra_headers != NULL)
			rc |= marks_extra_headers(sb, s->eol, extra_headers);
	}
	if (o->subject_tag != NULL && !s->has_subject)
		rc |= marks_header(sb, s->eol, "Subject", 7, o->subject_tag,
				   marks_tag_core_len(o->subject_tag));
	return rc ? -1 : 0;
}

int marks_apply(struct envelope *env, const unsigned char *raw, size_t len,
		const struct marks_options *o, const char *status, int scl, const char *reasons,
		const char *extra_headers)
{
	const char *tag = o->subject_tag;
	char tag_text[MARKS_TAG_MAX + 2];
	struct marks_scan s;
	struct strbuf block;
	size_t tag_len = 0;
	int rc = -1;

	if (tag != NULL && !marks_tag_valid(tag)) {
		log_warn("queue_id=%s subject tag must be printable ASCII, at most %d bytes",
			 env->id, MARKS_TAG_MAX);
		return -1;
	}
	if (marks_scan_headers(raw, len, &s) < 0) {
		log_warn("queue_id=%s no header lines to mark", env->id);
		return -1;
	}
	/*
	 * The tag and one space before a subject, however the tag was
	 * written: a config value loses its trailing blank.
	 */
	if (tag != NULL && s.has_subject &&
	    (len - s.subject_value < marks_tag_core_len(tag) ||
	     strncasecmp((const char *)raw + s.subject_value, tag, marks_tag_core_len(tag)) != 0))
		tag_len = (size_t)snprintf(tag_text, sizeof(tag_text), "%.*s%s", (int)marks_tag_core_len(tag), tag,
					   s.subject_empty ? "" : " ");
	strbuf_init(&block, MARKS_BLOCK_MAX);
	if (marks_build_block(&block, &s, o, status, scl, reasons, extra_headers) < 0) {
		log_warn("queue_id=%s marks not added: malformed or oversized header", env->id);
		goto out;
	}
	if (!envelope_edit_fits(env, s.first_end, 0, block.len) ||
	    (tag_len > 0 && !envelope_edit_fits(env, s.subject_value, 0, tag_len)) ||
	    env->nedits + 2 > ENVELOPE_EDITS_MAX) {
		log_warn("queue_id=%s marks collide with earlier edits", env->id);
		goto out;
	}
	if (envelope_add_edit(env, s.first_end, 0, block.data, block.len) < 0 ||
	    envelope_add_edit(env, s.subject_value, 0, tag_text, tag_len) < 0)
		panic("queue_id=%s checked edits refused", env->id);
	rc = 0;
out:
	strbuf_free(&block);
	return rc;
}
