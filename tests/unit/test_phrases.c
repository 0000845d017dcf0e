#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "content/mime.h"
#include "content/phrases.h"

static char *write_list(const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", unit_tmpdir(), name) < 0)
		abort();
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct phrases *load_text(const char *text, char *err, size_t errlen)
{
	char *path = write_list("phrases.txt", text);
	struct phrases *p = phrases_load(path, err, errlen);

	free(path);
	return p;
}

/* The error for `text`, without the path before the first ':'. */
static void check_error(const char *text, const char *want)
{
	char err[512] = "";
	struct phrases *p = load_text(text, err, sizeof(err));
	const char *tail = strstr(err, "phrases.txt:");

	CHECK(p == NULL);
	CHECK(tail != NULL);
	if (tail != NULL)
		CHECK_STR(tail + strlen("phrases.txt:"), want);
	phrases_free(p);
}

static struct mime_message *parse(const char *raw)
{
	struct mime_limits l;

	mime_global_init();
	mime_limits_default(&l);
	return mime_parse((const unsigned char *)raw, strlen(raw), &l, NULL);
}

/* Run the engine on `raw`; the number of results, the first copied to *r. */
static size_t run(const char *list, const char *raw, struct engine_result *r)
{
	char err[512] = "";
	struct phrases *p = load_text(list, err, sizeof(err));
	struct content_engine *e;
	struct engine_results out = { 0 };
	struct content_message msg = { 0 };
	size_t n;

	CHECK(p != NULL);
	if (p == NULL) {
		fprintf(stderr, "%s\n", err);
		return 0;
	}
	e = phrases_engine_create(p);
	msg.raw = (const unsigned char *)raw;
	msg.raw_len = strlen(raw);
	msg.mime = parse(raw);
	e->check(e->state, &msg, &out);
	n = out.count;
	if (n > 0)
		*r = out.items[0];
	engine_results_free(&out);
	mime_message_free(msg.mime);
	e->free(e->state);
	free(e);
	return n;
}

TEST(phrases_parse_errors)
{
	check_error("# ok\n1 body \"a\"\n\n200 body \"x\"\n", "4: bad weight (a number from -100 to 100 with at most 2 decimals)");
	check_error("1.234 body \"x\"\n", "1: bad weight (a number from -100 to 100 with at most 2 decimals)");
	check_error("1e2 body \"x\"\n", "1: bad weight (a number from -100 to 100 with at most 2 decimals)");
	check_error("-100.01 body \"x\"\n", "1: bad weight (a number from -100 to 100 with at most 2 decimals)");
	check_error("1 header \"x\"\n", "1: expected subject, body or both after the weight");
	check_error("1 body x\n", "1: expected a phrase in double quotes");
	check_error("1 body \"x\n", "1: unterminated phrase (missing closing \")");
	check_error("1 body \"\"\n", "1: empty phrase");
	check_error("1 body \"a\\nb\"\n", "1: bad escape in phrase (only \\\" and \\\\)");
	check_error("\n\n1 body \"x\" trailing\n", "3: unexpected text after the phrase");
	check_error("1 body\n", "1: expected a phrase in double quotes");
}

TEST(phrases_parse_limits)
{
	char line[300], err[512];
	struct phrases *p;

	snprintf(line, sizeof(line), "1 body \"%.*s\"\n", 201, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	check_error(line, "1: phrase longer than 200 bytes");
	snprintf(line, sizeof(line), "-100 both \"%.*s\" # max\n", 200, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	p = load_text(line, err, sizeof(err));
	CHECK(p != NULL);
	if (p != NULL)
		CHECK_INT(phrases_count(p), 1);
	phrases_free(p);

	{
		size_t n = 100001 * 2;
		char *many = malloc(n + 1);

		for (size_t i = 0; i < n; i += 2)
			memcpy(many + i, "#\n", 2);
		many[n] = '\0';
		check_error(many, "100001: more than 100000 lines");
		free(many);
	}
	p = phrases_load("/nonexistent/phrases.txt", err, sizeof(err));
	CHECK(p == NULL);
	CHECK(strstr(err, "/nonexistent/phrases.txt") != NULL);
}

TEST(phrases_parse_escapes_and_comments)
{
	char err[512] = "";
	struct phrases *p = load_text("  # comment\r\n\t2.5\tsubject   \"say \\\"hi\\\" \\\\o/\"  # why\r\n+3 both \"x\"\n", err,
				      sizeof(err));
	struct engine_result r;

	CHECK(p != NULL);
	if (p != NULL)
		CHECK_INT(phrases_count(p), 2);
	phrases_free(p);
	CHECK_INT(run("2.5 subject \"say \\\"hi\\\" \\\\o/\"\n",
		      "Subject: SAY \"Hi\" \\o/ now\r\n\r\nbody\r\n", &r), 1);
	CHECK(fabs(r.score - 2.5) < 1e-9);
}

TEST(phrases_weights_summed_once)
{
	struct engine_result r;

	CHECK_INT(run("3 body \"free money\"\n1.25 body \"click\"\n50 body \"absent\"\n",
		      "Subject: hi\r\n\r\nFree Money! free money! CLICK here, click there.\r\n", &r), 1);
	CHECK_STR(r.engine, "phrases");
	CHECK_STR(r.symbol, "PHRASES");
	CHECK_INT(r.category, CATEGORY_SPAM);
	CHECK_INT(r.action, CONTENT_NONE);
	CHECK(fabs(r.score - 4.25) < 1e-9);
	CHECK_STR(r.reason, "\"free money\" (+3.00), \"click\" (+1.25)");
}

TEST(phrases_nothing_found_no_result)
{
	struct engine_result r;

	CHECK_INT(run("3 body \"free money\"\n", "Subject: free money\r\n\r\nhello\r\n", &r), 0);
}

TEST(phrases_subject_body_both)
{
	const char *list = "1 subject \"alpha\"\n10 body \"beta\"\n100 both \"gamma\"\n";
	struct engine_result r;

	/* Everything in the subject: only subject and both count. */
	CHECK_INT(run(list, "Subject: alpha beta gamma\r\n\r\nnothing\r\n", &r), 1);
	CHECK(fabs(r.score - 101) < 1e-9);
	/* Everything in the body: only body and both count. */
	CHECK_INT(run(list, "Subject: hi\r\n\r\nalpha beta gamma\r\n", &r), 1);
	CHECK(fabs(r.score - 110) < 1e-9);
	/* gamma in both places still counts once. */
	CHECK_INT(run(list, "Subject: gamma\r\n\r\ngamma\r\n", &r), 1);
	CHECK(fabs(r.score - 100) < 1e-9);
}

TEST(phrases_negative_weights)
{
	struct engine_result r;

	CHECK_INT(run("5 body \"offer\"\n-7.5 both \"our newsletter\"\n",
		      "Subject: Our Newsletter\r\n\r\nThis month's offer.\r\n", &r), 1);
	CHECK(fabs(r.score - -2.5) < 1e-9);
	CHECK_STR(r.reason, "\"offer\" (+5.00), \"our newsletter\" (-7.50)");
}

TEST(phrases_mime_message)
{
	struct engine_result r;
	const char *raw =
		"From: a@example.org\r\n"
		"Subject: =?UTF-8?B?V2luIGEgcHJpemU=?=\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
		"\r\n"
		"--XX\r\n"
		"Content-Type: text/html; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"<p>Wire <b>the</b> <!-- x -->money</p><script>urgent transfer</script>\r\n"
		"--XX\r\n"
		"Content-Type: text/plain\r\n"
		"Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
		"\r\n"
		"urgent transfer\r\n"
		"--XX--\r\n";

	/* Subject is RFC 2047 decoded; HTML counts by its visible text; attachments not at all. */
	CHECK_INT(run("2 subject \"win a prize\"\n3 body \"wire the money\"\n40 body \"urgent transfer\"\n", raw, &r), 1);
	CHECK(fabs(r.score - 5) < 1e-9);
}

TEST(phrases_reason_lists_five)
{
	struct engine_result r;

	CHECK_INT(run("1 body \"a1\"\n1 body \"a2\"\n1 body \"a3\"\n1 body \"a4\"\n1 body \"a5\"\n1 body \"a6\"\n1 body \"a7\"\n",
		      "Subject: x\r\n\r\na1 a2 a3 a4 a5 a6 a7\r\n", &r), 1);
	CHECK(fabs(r.score - 7) < 1e-9);
	CHECK_STR(r.reason, "\"a1\" (+1.00), \"a2\" (+1.00), \"a3\" (+1.00), \"a4\" (+1.00), \"a5\" (+1.00) and 2 more");
}
