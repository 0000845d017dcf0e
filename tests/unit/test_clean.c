/* The virus "clean" action: the MIME walker against GMime, and infected parts replaced by edits. */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content/clean.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "queue/envelope.h"
#include "unit.h"

#define MIME_SUITE "/work/shared/testsuites/mime"
#define CORPUS "/work/shared/corpus/mail"
#define CL_FILE_MAX (4 * 1024 * 1024)

/* The message with LF line ends turned into CRLF, as the spool keeps it. */
static char *cl_crlf(const char *lf)
{
	struct strbuf sb;

	strbuf_init(&sb, 1024 * 1024);
	for (; *lf != '\0'; lf++)
		strbuf_append(&sb, *lf == '\n' ? "\r\n" : lf, *lf == '\n' ? 2 : 1);
	return strbuf_detach(&sb, NULL);
}

/* The message with env's edits applied, NUL-terminated. */
static char *cl_view(const struct envelope *env, const char *raw)
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

static struct mime_message *cl_parse(const char *raw, size_t len)
{
	struct mime_limits l;

	mime_global_init();
	mime_limits_default(&l);
	return mime_parse((const unsigned char *)raw, len, &l, NULL);
}

/* The index of the part named filename, -1 if none. */
static int cl_part_named(const struct mime_message *m, const char *filename)
{
	for (size_t i = 0; i < m->nparts; i++) {
		if (m->parts[i].filename != NULL && strcmp(m->parts[i].filename, filename) == 0)
			return (int)i;
	}
	return -1;
}

/* A VIRUS_FOUND result as the virus engine writes it, with the clean action. */
static void cl_found(struct content_result *r, int part, const char *virus)
{
	struct engine_result *res = engine_results_add(&r->results, "virus", "VIRUS_FOUND");

	res->action = CONTENT_CLEAN;
	res->category = CATEGORY_VIRUS;
	res->part_index = part;
	snprintf(res->reason, sizeof(res->reason), "%s in part %d (x)", virus, part + 1);
}

/*
 * Clean raw (CRLF already) with viruses in the parts named by files[i];
 * returns the view, or NULL when content_clean_parts refused (env then unchanged).
 */
static char *cl_clean(const char *raw, const char *const *files, const char *const *viruses, size_t n)
{
	struct content_result r = { .mime = cl_parse(raw, strlen(raw)) };
	struct envelope *env = envelope_new();
	char why[256], *out = NULL;

	snprintf(env->id, sizeof(env->id), "0000000000000000000C");
	for (size_t i = 0; i < n; i++) {
		int part = files[i] != NULL ? cl_part_named(r.mime, files[i]) : -1;

		CHECK(files[i] == NULL || part >= 0);
		cl_found(&r, part, viruses[i]);
	}
	if (content_clean_parts(env, (const unsigned char *)raw, strlen(raw), &r, NULL, why, sizeof(why)) == 0) {
		out = cl_view(env, raw);
		CHECK(strncmp(why, "removed ", 8) == 0);
	} else {
		CHECK_INT(env->nedits, 0);
		CHECK(why[0] != '\0');
	}
	envelope_free(env);
	mime_message_free(r.mime);
	engine_results_free(&r.results);
	return out;
}

static const char *const note_head =
	"Content-Type: text/plain; charset=us-ascii\r\nContent-Disposition: inline\r\n\r\n";

static char *cl_note(const char *name, const char *virus)
{
	char *s;

	if (asprintf(&s, "%sThe attachment %s was removed by postern: virus %s was found in it.\r\n",
		     note_head, name, virus) < 0)
		abort();
	return s;
}

static const char mixed_lf[] =
	"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\n"
	"From: a@example.org\n"
	"To: b@example.net\n"
	"Subject: report\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\n"
	"\n"
	"preamble\n"
	"--outer\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"\n"
	"Hello, the report is attached.\n"
	"--outer\n"
	"Content-Type: application/zip; name=\"clam.zip\"\n"
	"Content-Disposition: attachment; filename=\"clam.zip\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"UEsDBAoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
	"--outer--\n"
	"epilogue\n";

TEST(clean_replaces_attachment_keeps_text)
{
	char *raw = cl_crlf(mixed_lf);
	const char *files[] = { "clam.zip" }, *viruses[] = { "Clamav.Test.File-6" };
	char *view = cl_clean(raw, files, viruses, 1);
	char *note = cl_note("clam.zip", "Clamav.Test.File-6"), *expect;

	CHECK(view != NULL);
	if (asprintf(&expect,
		     "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		     "X-Postern-Virus-Cleaned: clam.zip removed\r\n"
		     "From: a@example.org\r\nTo: b@example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
		     "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n"
		     "--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
		     "Hello, the report is attached.\r\n"
		     "--outer\r\n%s\r\n--outer--\r\nepilogue\r\n", note) < 0)
		abort();
	CHECK_STR(view, expect);
	/* The cleaned view parses as the same structure, the text part intact. */
	if (view != NULL) {
		struct mime_message *m = cl_parse(view, strlen(view));

		CHECK_INT(m->nparts, 3);
		CHECK_INT(m->flags, 0);
		CHECK_STR(m->parts[1].text, "Hello, the report is attached.");
		CHECK_STR(m->parts[2].subtype, "plain");
		CHECK(strstr(m->parts[2].text, "virus Clamav.Test.File-6") != NULL);
		mime_message_free(m);
	}
	free(expect);
	free(note);
	free(view);
	free(raw);
}

TEST(clean_nested_alternative_inside_mixed)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Subject: nested\n"
		"Content-Type: multipart/mixed; boundary=\"=_mixed\"\n"
		"\n"
		"--=_mixed\n"
		"Content-Type: multipart/alternative;\n"
		"\tboundary=\"=_alt\"\n"
		"\n"
		"--=_alt\n"
		"Content-Type: text/plain\n"
		"\n"
		"plain text\n"
		"--=_alt\n"
		"Content-Type: text/html\n"
		"\n"
		"<p>html text</p>\n"
		"--=_alt--\n"
		"\n"
		"--=_mixed\n"
		"Content-Type: application/octet-stream; name=evil.exe\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"TVqQAAMAAAAEAAAA\n"
		"--=_mixed--\n");
	const char *files[] = { "evil.exe" }, *viruses[] = { "Win.Trojan.Test" };
	char *view = cl_clean(raw, files, viruses, 1);
	char *note = cl_note("evil.exe", "Win.Trojan.Test");

	CHECK(view != NULL);
	if (view != NULL) {
		CHECK(strstr(view, "--=_alt\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
			     "--=_alt\r\nContent-Type: text/html\r\n\r\n<p>html text</p>\r\n--=_alt--\r\n\r\n"
			     "--=_mixed\r\n") != NULL);
		CHECK(strstr(view, "TVqQ") == NULL);
		CHECK(strstr(view, note) != NULL);
		CHECK(strstr(view, "\r\nX-Postern-Virus-Cleaned: evil.exe removed\r\nSubject: nested\r\n") != NULL);
	}
	free(view);
	free(note);
	free(raw);
}

/* An infected leaf that is the whole body of an attached message takes the message with it. */
TEST(clean_rfc822_attachment)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: multipart/mixed; boundary=b1\n"
		"\n"
		"--b1\n"
		"\n"
		"see the forwarded message\n"
		"--b1\n"
		"Content-Type: message/rfc822\n"
		"Content-Disposition: attachment; filename=fwd.eml\n"
		"\n"
		"From: c@example.com\n"
		"Subject: inner\n"
		"Content-Type: application/x-msdownload; name=inner.exe\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"TVqQAAMAAAAEAAAA\n"
		"--b1--\n");
	const char *files[] = { "inner.exe" }, *viruses[] = { "Win.Worm.Inner" };
	char *view = cl_clean(raw, files, viruses, 1);
	char *note = cl_note("fwd.eml", "Win.Worm.Inner");

	CHECK(view != NULL);
	if (view != NULL) {
		CHECK(strstr(view, "--b1\r\n\r\nsee the forwarded message\r\n--b1\r\n") != NULL);
		CHECK(strstr(view, "Subject: inner") == NULL);
		CHECK(strstr(view, note) != NULL);
		CHECK(strstr(view, "\r\n--b1--\r\n") != NULL);
	}
	free(view);
	free(note);
	free(raw);
}

/* Inside an attached multipart message only the infected leaf goes. */
TEST(clean_rfc822_multipart_attachment)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: multipart/mixed; boundary=b1\n"
		"\n"
		"--b1\n"
		"Content-Type: text/plain\n"
		"\n"
		"outer text\n"
		"--b1\n"
		"Content-Type: message/rfc822\n"
		"\n"
		"From: c@example.com\n"
		"Subject: inner\n"
		"Content-Type: multipart/mixed; boundary=\"b2\"\n"
		"\n"
		"--b2\n"
		"Content-Type: text/plain\n"
		"\n"
		"inner text\n"
		"--b2\n"
		"Content-Type: application/zip; name=inner.zip\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"UEsDBAoAAAAAAAAA\n"
		"--b2--\n"
		"--b1--\n");
	const char *files[] = { "inner.zip" }, *viruses[] = { "Zip.Inner" };
	char *view = cl_clean(raw, files, viruses, 1);
	char *note = cl_note("inner.zip", "Zip.Inner"), *expect;

	if (asprintf(&expect, "--b2\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--b2\r\n%s\r\n--b2--\r\n--b1--\r\n",
		     note) < 0)
		abort();
	CHECK(view != NULL);
	if (view != NULL) {
		CHECK(strstr(view, "Subject: inner\r\n") != NULL);
		CHECK(strstr(view, expect) != NULL);
	}
	free(expect);
	free(view);
	free(note);
	free(raw);
}

TEST(clean_two_infected_parts)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: multipart/mixed; boundary=sep\n"
		"\n"
		"--sep\n"
		"Content-Type: application/octet-stream; name=one.bin\n"
		"\n"
		"first\n"
		"--sep\n"
		"Content-Type: text/plain\n"
		"\n"
		"keep me\n"
		"--sep\n"
		"Content-Type: application/octet-stream; name=two.bin\n"
		"\n"
		"second\n"
		"--sep--\n");
	const char *files[] = { "one.bin", "two.bin" }, *viruses[] = { "Virus.One", "Virus.Two" };
	char *view = cl_clean(raw, files, viruses, 2);
	char *n1 = cl_note("one.bin", "Virus.One"), *n2 = cl_note("two.bin", "Virus.Two"), *expect;

	if (asprintf(&expect,
		     "Received: from a by b\r\n"
		     "X-Postern-Virus-Cleaned: one.bin removed\r\n"
		     "X-Postern-Virus-Cleaned: two.bin removed\r\n"
		     "Content-Type: multipart/mixed; boundary=sep\r\n\r\n"
		     "--sep\r\n%s\r\n--sep\r\nContent-Type: text/plain\r\n\r\nkeep me\r\n--sep\r\n%s\r\n--sep--\r\n",
		     n1, n2) < 0)
		abort();
	CHECK_STR(view, expect);
	free(expect);
	free(n1);
	free(n2);
	free(view);
	free(raw);
}

/* The same part twice (two signatures) is one note naming both. */
TEST(clean_same_part_two_viruses)
{
	char *raw = cl_crlf(mixed_lf);
	const char *files[] = { "clam.zip", "clam.zip" }, *viruses[] = { "Sig.A", "Sig.B" };
	char *view = cl_clean(raw, files, viruses, 2);
	char *note = cl_note("clam.zip", "Sig.A, Sig.B");

	CHECK(view != NULL && strstr(view, note) != NULL);
	CHECK(view != NULL && strstr(strstr(view, "X-Postern-Virus-Cleaned") + 1, "X-Postern-Virus-Cleaned") == NULL);
	free(note);
	free(view);
	free(raw);
}

TEST(clean_refuses_single_part_message)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: application/octet-stream; name=whole.exe\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"TVqQAAMAAAAEAAAA\n");
	const char *files[] = { "whole.exe" }, *viruses[] = { "Whole.Virus" };

	CHECK(cl_clean(raw, files, viruses, 1) == NULL);
	free(raw);
}

/* A single attached message at the top: climbing out of it reaches the message itself. */
TEST(clean_refuses_rfc822_at_top)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: message/rfc822\n"
		"\n"
		"Subject: inner\n"
		"Content-Type: application/octet-stream; name=in.exe\n"
		"\n"
		"MZ\n");
	const char *files[] = { "in.exe" }, *viruses[] = { "V" };

	CHECK(cl_clean(raw, files, viruses, 1) == NULL);
	free(raw);
}

/* The raw-message scan (part -1) cannot be cleaned, even beside a part that could. */
TEST(clean_refuses_whole_message_result)
{
	char *raw = cl_crlf(mixed_lf);
	const char *files[] = { "clam.zip", NULL }, *viruses[] = { "A", "B" };

	CHECK(cl_clean(raw, files, viruses, 2) == NULL);
	free(raw);
}

/* Structures the walker cannot be sure of are refused, never half cleaned. */
TEST(clean_refuses_unsure_structure)
{
	static const char *const unsure[] = {
		/* no closing delimiter */
		"Received: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nt\n"
		"--b\nContent-Type: application/octet-stream; name=v.bin\n\nvirus\n",
		/* inner boundary starts with the outer one */
		"Received: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
		"Content-Type: multipart/mixed; boundary=b2\n\n--b2\nContent-Type: text/plain\n\nt\n"
		"--b2\nContent-Type: application/octet-stream; name=v.bin\n\nvirus\n--b2--\n--b--\n",
		/* a part header line that is not a field */
		"Received: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nt\n"
		"--b\nContent-Type: application/octet-stream; name=v.bin\nnot a field\n\nvirus\n--b--\n",
	};
	const char *files[] = { "v.bin" }, *viruses[] = { "V" };

	for (size_t i = 0; i < sizeof(unsure) / sizeof(unsure[0]); i++) {
		char *raw = cl_crlf(unsure[i]);
		struct mime_message *m = cl_parse(raw, strlen(raw));
		struct content_result r = { .mime = m };
		struct envelope *env = envelope_new();
		char why[256] = "";
		int part = cl_part_named(m, "v.bin");

		cl_found(&r, part >= 0 ? part : 0, "V");
		CHECK_INT(content_clean_parts(env, (const unsigned char *)raw, strlen(raw), &r, NULL, why, sizeof(why)), -1);
		CHECK_INT(env->nedits, 0);
		CHECK(why[0] != '\0');
		CHECK(cl_clean(raw, part >= 0 ? files : NULL, viruses, part >= 0 ? 1 : 0) == NULL);
		envelope_free(env);
		engine_results_free(&r.results);
		mime_message_free(m);
		free(raw);
	}
}

/* A file uuencoded in a text part is removed with its text part. */
TEST(clean_uuencoded_file_takes_its_text_part)
{
	char *raw = cl_crlf(
		"Received: from a by b\n"
		"Content-Type: multipart/mixed; boundary=u\n"
		"\n"
		"--u\n"
		"Content-Type: text/plain\n"
		"\n"
		"first text\n"
		"--u\n"
		"Content-Type: text/plain\n"
		"\n"
		"here it is\n"
		"begin 644 uu.com\n"
		"#86)C\n"
		"`\n"
		"end\n"
		"--u--\n");
	const char *files[] = { "uu.com" }, *viruses[] = { "UU.Virus" };
	char *view = cl_clean(raw, files, viruses, 1);
	char *note = cl_note("uu.com", "UU.Virus");

	CHECK(view != NULL);
	if (view != NULL) {
		CHECK(strstr(view, "--u\r\nContent-Type: text/plain\r\n\r\nfirst text\r\n--u\r\n") != NULL);
		CHECK(strstr(view, note) != NULL);
		CHECK(strstr(view, "begin 644") == NULL);
	}
	free(note);
	free(view);
	free(raw);
}

/* Edits already in the envelope that collide leave it unchanged. */
TEST(clean_refuses_colliding_edits)
{
	char *raw = cl_crlf(mixed_lf);
	struct content_result r = { .mime = cl_parse(raw, strlen(raw)) };
	struct envelope *env = envelope_new();
	const char *zip = strstr(raw, "UEsDB");
	char why[256];

	cl_found(&r, cl_part_named(r.mime, "clam.zip"), "V");
	CHECK_INT(envelope_add_edit(env, (uint64_t)(zip - raw), 4, "xxxx", 4), 0);
	CHECK_INT(content_clean_parts(env, (const unsigned char *)raw, strlen(raw), &r, NULL, why, sizeof(why)), -1);
	CHECK_INT(env->nedits, 1);
	envelope_free(env);
	engine_results_free(&r.results);
	mime_message_free(r.mime);
	free(raw);
}

static char *cl_read_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CL_FILE_MAX) {
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	*len = (size_t)read(fd, buf, (size_t)st.st_size);
	buf[*len] = '\0';
	close(fd);
	return buf;
}

/*
 * The walk and mime_parse agree part by part (uuencoded files aside) on
 * a message mime_parse reads without anomaly; false when it had one.
 */
static bool cl_check_order(const char *path, size_t *checked)
{
	size_t len, k = 0;
	char *raw = cl_read_file(path, &len);
	struct mime_message *m;
	struct clean_walk w;
	bool usable;

	if (raw == NULL)
		return false;
	m = cl_parse(raw, len);
	usable = m->flags == 0 && m->limit_exceeded == 0 && m->nparts > 0;
	if (usable) {
		if (clean_walk_parts((const unsigned char *)raw, len, &w) < 0)
			unit_fail(__FILE__, __LINE__, "%s: the walk gave up", path);
		for (size_t i = 0; i < m->nparts; i++) {
			if (m->parts[i].from_uuencode)
				continue;
			if (k >= w.nparts || strcmp(m->parts[i].type, w.parts[k].type) != 0 ||
			    strcmp(m->parts[i].subtype, w.parts[k].subtype) != 0 ||
			    (m->parts[i].parent < 0) != (w.parts[k].parent < 0)) {
				unit_fail(__FILE__, __LINE__, "%s: part %zu is %s/%s, the walk has %s/%s", path, i,
					  m->parts[i].type, m->parts[i].subtype,
					  k < w.nparts ? w.parts[k].type : "-", k < w.nparts ? w.parts[k].subtype : "-");
				break;
			}
			k++;
		}
		CHECK(k == w.nparts);
		clean_walk_free(&w);
		(*checked)++;
	}
	mime_message_free(m);
	free(raw);
	return usable;
}

static size_t cl_check_tree(const char *dir, size_t *checked)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t seen = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[4096];
		struct stat st;

		if (de->d_name[0] == '.' || strcmp(de->d_name, "README.md") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			seen += cl_check_tree(path, checked);
		} else {
			seen++;
			cl_check_order(path, checked);
		}
	}
	closedir(d);
	return seen;
}

TEST(clean_walk_order_matches_mime_suite)
{
	size_t checked = 0, seen = cl_check_tree(MIME_SUITE, &checked);

	CHECK(seen > 150);
	CHECK(checked > 50);
	printf("mime suite: %zu of %zu messages parsed without flags, walk agrees\n", checked, seen);
}

static int cl_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first `want` files (by name) of dir that mime_parse reads without anomaly. */
static size_t cl_check_corpus_dir(const char *dir, size_t want)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, checked = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cl_name_cmp);
	for (size_t i = 0; i < n && checked < want; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		cl_check_order(path, &checked);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return checked;
}

TEST(clean_walk_order_matches_corpus)
{
	size_t checked = cl_check_corpus_dir(CORPUS "/ham", 100) + cl_check_corpus_dir(CORPUS "/spam", 100);

	CHECK_INT(checked, 200);
}
