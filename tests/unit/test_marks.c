/* Marks: header lines and subject tags as envelope edits, and what they look like applied. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "content/marks.h"
#include "core/alloc.h"
#include "core/base64.h"
#include "core/strbuf.h"
#include "queue/envelope.h"
#include "unit.h"

static const struct marks_options mk_opts = {
	.status_header = "X-Postern-Status",
	.scl_header = "X-Postern-SCL",
	.reason_header = "X-Postern-Reason",
	.subject_tag = "[SPAM] ",
	.add_headers = true,
};

/* The message with env's edits applied, NUL-terminated. */
static char *mk_apply(const struct envelope *env, const char *raw)
{
	struct strbuf sb;
	size_t pos = 0, len = strlen(raw);

	strbuf_init(&sb, 1024 * 1024);
	for (size_t i = 0; i < env->nedits; i++) {
		const struct envelope_edit *e = &env->edits[i];

		strbuf_append(&sb, raw + pos, (size_t)e->offset - pos);
		strbuf_append(&sb, e->insert, e->insert_len);
		pos = (size_t)(e->offset + e->remove);
	}
	strbuf_append(&sb, raw + pos, len - pos);
	return strbuf_detach(&sb, NULL);
}

/* Apply marks to raw; returns the marked message (NULL when marks_apply refused). */
static char *mk_mark(const char *raw, const struct marks_options *o, const char *status, int scl,
		     const char *reasons, const char *extra)
{
	struct envelope *env = envelope_new();
	char *out = NULL;

	snprintf(env->id, sizeof(env->id), "0000000000000000000D");
	if (marks_apply(env, (const unsigned char *)raw, strlen(raw), o, status, scl, reasons, extra) == 0)
		out = mk_apply(env, raw);
	else
		CHECK_INT(env->nedits, 0);
	envelope_free(env);
	return out;
}

/* Every line of the header block at most 78 columns (plus the line end). */
static bool mk_lines_fit(const char *msg)
{
	const char *line = msg, *nl;

	for (; (nl = strchr(line, '\n')) != NULL && nl != line && !(nl == line + 1 && *line == '\r');
	     line = nl + 1) {
		size_t n = (size_t)(nl - line);

		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n > 78)
			return false;
	}
	return true;
}

/* The unfolded value of the first field called name (a fresh string), or NULL. */
static char *mk_field(const char *msg, const char *name)
{
	struct strbuf sb;
	const char *p = msg;
	size_t n = strlen(name);

	while (p && !(strncmp(p, name, n) == 0 && p[n] == ':')) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (p == NULL)
		return NULL;
	strbuf_init(&sb, 1024 * 1024);
	for (p += n + 1; *p; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n') {
			if (p[1] != ' ' && p[1] != '\t')
				break;
			continue;
		}
		strbuf_append(&sb, p, 1);
	}
	return strbuf_detach(&sb, NULL);
}

/* Decode a value made of "=?UTF-8?B?...?=" words separated by blanks. */
static char *mk_decode_words(const char *v)
{
	struct strbuf sb;
	char buf[128];

	strbuf_init(&sb, 1024 * 1024);
	while (*v == ' ')
		v++;
	while (*v) {
		const char *end;
		long n;

		CHECK(strncmp(v, "=?UTF-8?B?", 10) == 0);
		end = strstr(v + 10, "?=");
		CHECK(end != NULL);
		if (strncmp(v, "=?UTF-8?B?", 10) != 0 || end == NULL)
			break;
		CHECK(end + 2 - v <= 75);
		n = base64_decode(v + 10, (size_t)(end - v - 10), buf, sizeof(buf));
		CHECK(n >= 0);
		if (n > 0)
			strbuf_append(&sb, buf, (size_t)n);
		for (v = end + 2; *v == ' '; v++)
			;
	}
	return strbuf_detach(&sb, NULL);
}

TEST(marks_after_first_field_with_subject_tag)
{
	static const char raw[] = "Received: from a\r\n\tby b; date\r\n  continued\r\nFrom: x@y\r\n"
				  "Subject: hello\r\n\r\nbody\r\nSubject: not this one\r\n";
	char *m = mk_mark(raw, &mk_opts, "spam", 7, "bayes; rbl", NULL);

	CHECK_STR(m, "Received: from a\r\n\tby b; date\r\n  continued\r\n"
		     "X-Postern-Status: spam\r\nX-Postern-SCL: 7\r\nX-Postern-Reason: bayes; rbl\r\n"
		     "From: x@y\r\nSubject: [SPAM] hello\r\n\r\nbody\r\nSubject: not this one\r\n");
	free(m);
}

TEST(marks_keep_the_line_end_style)
{
	static const char raw[] = "Received: from a\nsubject  : hi\n\nbody\n";
	char *m = mk_mark(raw, &mk_opts, "spam", -1, NULL, "X-Postern-Virus: Eicar-Test\r\n\nX-Two: 2");

	CHECK_STR(m, "Received: from a\nX-Postern-Status: spam\nX-Postern-Virus: Eicar-Test\n"
		     "X-Two: 2\nsubject  : [SPAM] hi\n\nbody\n");
	free(m);
}

TEST(marks_folded_subject)
{
	static const char raw[] = "Received: r\r\nSubject:\r\n \tfolded value\r\n second\r\n\r\nb\r\n";
	char *m = mk_mark(raw, &mk_opts, NULL, -1, NULL, NULL);

	CHECK_STR(m, "Received: r\r\nSubject:\r\n \t[SPAM] folded value\r\n second\r\n\r\nb\r\n");
	free(m);
}

TEST(marks_missing_or_empty_subject)
{
	static const char none[] = "Received: r\r\nFrom: a@b\r\n\r\nSubject: in the body\r\n";
	static const char empty[] = "Received: r\r\nSubject: \r\n\r\nb\r\n";
	struct marks_options tag_only = mk_opts;
	char *m;

	m = mk_mark(none, &mk_opts, "spam", 5, NULL, NULL);
	CHECK_STR(m, "Received: r\r\nX-Postern-Status: spam\r\nX-Postern-SCL: 5\r\nSubject: [SPAM]\r\n"
		     "From: a@b\r\n\r\nSubject: in the body\r\n");
	free(m);
	tag_only.add_headers = false;
	m = mk_mark(none, &tag_only, "spam", 5, "r", NULL);
	CHECK_STR(m, "Received: r\r\nSubject: [SPAM]\r\nFrom: a@b\r\n\r\nSubject: in the body\r\n");
	free(m);
	m = mk_mark(empty, &tag_only, NULL, -1, NULL, NULL);
	CHECK_STR(m, "Received: r\r\nSubject: [SPAM]\r\n\r\nb\r\n");
	free(m);
}

TEST(marks_already_tagged_subject_is_left_alone)
{
	static const char raw[] = "Received: r\r\nSubject: [spam] again\r\n\r\nb\r\n";
	static const char bare[] = "Received: r\r\nSubject: [SPAM]\r\n\r\nb\r\n";
	char *m = mk_mark(raw, &mk_opts, "spam", 9, NULL, NULL);

	CHECK_STR(m, "Received: r\r\nX-Postern-Status: spam\r\nX-Postern-SCL: 9\r\n"
		     "Subject: [spam] again\r\n\r\nb\r\n");
	free(m);
	m = mk_mark(bare, &mk_opts, NULL, -1, NULL, NULL);
	CHECK_STR(m, bare);
	free(m);
}

TEST(marks_long_reasons_are_folded_and_bounded)
{
	static const char raw[] = "Received: r\r\nSubject: s\r\n\r\nb\r\n";
	struct strbuf reasons;
	char *m, *v, *want;

	strbuf_init(&reasons, 1 << 20);
	for (int i = 0; i < 30; i++)
		strbuf_appendf(&reasons, "RULE_NUMBER_%d(%d.5) ", i, i);
	m = mk_mark(raw, &mk_opts, "spam", 9, reasons.data, NULL);
	CHECK(m != NULL && mk_lines_fit(m));
	v = mk_field(m, "X-Postern-Reason");
	/* unfolding gives the text back, trailing blank trimmed */
	want = xstrndup(reasons.data, reasons.len - 1);
	CHECK(v != NULL && v[0] == ' ' && strcmp(v + 1, want) == 0);
	free(want);
	free(v);
	free(m);

	/* far too long, with one unbreakable word: cut, never a line over 998 */
	strbuf_reset(&reasons);
	for (int i = 0; i < 5000; i++)
		strbuf_append(&reasons, "x", 1);
	m = mk_mark(raw, &mk_opts, "spam", 9, reasons.data, NULL);
	v = mk_field(m, "X-Postern-Reason");
	CHECK_INT(strlen(v), MARKS_VALUE_MAX + 1);
	free(v);
	free(m);
	strbuf_free(&reasons);
}

TEST(marks_values_cannot_inject_headers)
{
	static const char raw[] = "Received: r\r\nSubject: s\r\n\r\nb\r\n";
	char *m = mk_mark(raw, &mk_opts, "spam\r\nBcc: victim@example.org", 3,
			  "a\nb\r\n\r\nbody injection\x01\x7f", NULL);

	CHECK_STR(m, "Received: r\r\nX-Postern-Status: spam Bcc: victim@example.org\r\nX-Postern-SCL: 3\r\n"
		     "X-Postern-Reason: a b body injection\r\nSubject: [SPAM] s\r\n\r\nb\r\n");
	free(m);
}

TEST(marks_non_ascii_reasons_are_encoded_words)
{
	static const char raw[] = "Received: r\r\nSubject: s\r\n\r\nb\r\n";
	static const char reason[] = "Pi\xc3\xa8" "ce jointe dangereuse \xe2\x80\x94 "
				     "\xe6\x81\xb6\xe6\x84\x8f\xe8\xbd\xaf\xe4\xbb\xb6 \xf0\x9f\x92\xa3 "
				     "and a long ASCII tail so that several encoded words are needed";
	char *m = mk_mark(raw, &mk_opts, "spam", 8, reason, NULL);
	char *v, *text;

	CHECK(m != NULL && mk_lines_fit(m));
	v = mk_field(m, "X-Postern-Reason");
	CHECK(v != NULL && strstr(v, "=?UTF-8?B?") != NULL);
	text = mk_decode_words(v);
	CHECK_STR(text, reason);
	free(text);
	free(v);
	free(m);

	/* invalid UTF-8 becomes '?' rather than a lie about the charset */
	m = mk_mark(raw, &mk_opts, NULL, -1, "caf\xc3 \xff ok \xc3\xa9", NULL);
	v = mk_field(m, "X-Postern-Reason");
	text = mk_decode_words(v);
	CHECK_STR(text, "caf? ? ok \xc3\xa9");
	free(text);
	free(v);
	free(m);
}

TEST(marks_refused_cases_change_nothing)
{
	static const char raw[] = "Received: r\r\nSubject: s\r\n\r\nb\r\n";
	struct marks_options bad_tag = mk_opts;
	struct envelope *env = envelope_new();

	/* no line end at all */
	CHECK(mk_mark("Received: r", &mk_opts, "spam", 1, NULL, NULL) == NULL);
	/* an unterminated continuation of the first field */
	CHECK(mk_mark("Received: r\r\n more", &mk_opts, "spam", 1, NULL, NULL) == NULL);
	/* malformed extra headers */
	CHECK(mk_mark(raw, &mk_opts, "spam", 1, NULL, "no colon here") == NULL);
	CHECK(mk_mark(raw, &mk_opts, "spam", 1, NULL, "Bad Name: x") == NULL);
	CHECK(mk_mark(raw, &mk_opts, "spam", 1, NULL, ": x") == NULL);
	/* a tag with a line break, or empty */
	bad_tag.subject_tag = "[SPAM]\r\nBcc: x ";
	CHECK(mk_mark(raw, &bad_tag, "spam", 1, NULL, NULL) == NULL);
	bad_tag.subject_tag = "  ";
	CHECK(mk_mark(raw, &bad_tag, "spam", 1, NULL, NULL) == NULL);
	/* marking twice collides with the first marks and adds nothing */
	snprintf(env->id, sizeof(env->id), "0000000000000000000E");
	CHECK_INT(marks_apply(env, (const unsigned char *)raw, strlen(raw), &mk_opts, "spam", 1, NULL, NULL), 0);
	CHECK_INT(env->nedits, 2);
	CHECK_INT(marks_apply(env, (const unsigned char *)raw, strlen(raw), &mk_opts, "spam", 1, NULL, NULL), -1);
	CHECK_INT(env->nedits, 2);
	envelope_free(env);
}

TEST(marks_message_without_header)
{
	char *m = mk_mark("\r\nbody only\r\n", &mk_opts, "spam", 2, NULL, NULL);

	CHECK_STR(m, "X-Postern-Status: spam\r\nX-Postern-SCL: 2\r\nSubject: [SPAM]\r\n\r\nbody only\r\n");
	free(m);
}
