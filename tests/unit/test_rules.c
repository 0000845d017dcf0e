#include "unit.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "content/litset.h"
#include "content/mime.h"
#include "content/rules.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define CORPUS "/work/shared/corpus/mail"

static const char msg_plain[] =
	"From: Pill Shop <deals@pills.example>\r\n"
	"To: victim@example.com\r\n"
	"Subject: Cheap   PILLS today\r\n"
	"X-Mailer: BulkMailer 3.0\r\n"
	"X-Note: =?UTF-8?B?Q2Fmw6kgb2ZmZXI=?=\r\n"
	"X-Folded: first part\r\n"
	"  second part\r\n"
	"\r\n"
	"Buy Viagra now at great prices.\r\n"
	"Call 555-1234 for the catalogue.\r\n";

static const char msg_html[] =
	"From: Bank <security@bank.example>\r\n"
	"To: user@example.com\r\n"
	"Subject: Account notice\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<html><body><p>Please <b>verify your account</b> today.</p>\r\n"
	"<script>var hidden = 'lottery winner';</script>\r\n"
	"<a href=\"http://user@Login.Evil.Example:8080/verify?x=1\">Log in</a></body></html>\r\n";

static const char msg_exe[] =
	"From: Accounts <ap@supplier.example>\r\n"
	"To: finance@example.com\r\n"
	"Subject: invoice\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"BB\"\r\n"
	"\r\n"
	"--BB\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"Please find the invoice attached.\r\n"
	"--BB\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"TVqQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAABQRQAATAEBAAAAAAAAAAAAAAAAAOAAAgELAQAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
	"--BB--\r\n";

static struct mime_message *parse_msg(const char *raw, size_t len)
{
	struct mime_magic *mg = mime_magic_open();
	struct mime_limits l;
	struct mime_message *m;

	mime_global_init();
	mime_limits_default(&l);
	m = mime_parse((const unsigned char *)raw, len, &l, mg);
	mime_magic_close(mg);
	return m;
}

static struct rules *parse_rules(const char *text)
{
	char err[512];
	struct rules *r = rules_parse("test.rules", text, strlen(text), err, sizeof(err));

	if (r == NULL)
		unit_fail(__FILE__, __LINE__, "rules did not parse: %s", err);
	return r;
}

/* Comma-joined names of the rules matching `raw` (caller frees). */
static char *matched_in(const struct rules *r, const char *raw)
{
	struct mime_message *m = parse_msg(raw, strlen(raw));
	struct engine_results res = { 0 };
	struct strbuf sb;

	rules_match(r, m, (const unsigned char *)raw, strlen(raw), &res);
	strbuf_init(&sb, 1 << 20);
	strbuf_appends(&sb, "");
	for (size_t i = 0; i < res.count; i++)
		strbuf_appendf(&sb, "%s%s", i ? "," : "", res.items[i].symbol + 5);
	engine_results_free(&res);
	mime_message_free(m);
	return strbuf_detach(&sb, NULL);
}

static char *matched(const char *rules_text, const char *raw)
{
	struct rules *r = parse_rules(rules_text);
	char *names;

	if (r == NULL)
		return xstrdup("(no rules)");
	names = matched_in(r, raw);
	rules_free(r);
	return names;
}

#define CHECK_MATCH(rules_text, raw, expect)              \
	do {                                              \
		char *names_ = matched(rules_text, raw);  \
		CHECK_STR(names_, expect);                \
		free(names_);                             \
	} while (0)

TEST(rules_text_fields)
{
	const char *rules =
		"rule SUBJ_PHRASE {\n match subject \"cheap\"\n score 1\n}\n"
		"rule SUBJ_REGEX {\n match subject /cheap\\s+(pills|meds)/i\n score 1\n}\n"
		"rule SUBJ_CASE {\n match subject /cheap\\s+pills/\n score 1\n}\n"
		"rule FROM_DOMAIN {\n match from \"@pills.example\"\n score 1\n}\n"
		"rule TO_MISS {\n match to \"nobody@\"\n score 1\n}\n"
		"rule TO_HIT {\n match to /^victim@/\n score 1\n}\n"
		"rule BODY_PHRASE {\n match body \"viagra\"\n score 1\n}\n"
		"rule BODY_WORD_MISS {\n match body \"viag\"w\n score 1\n}\n"
		"rule BODY_WORD_HIT {\n match body \"great prices\"w\n score 1\n}\n"
		"rule BODY_NOLIT {\n match body /\\d{3}-\\d{4}/\n score 1\n}\n"
		"rule BODY_MISS {\n match body \"lottery\" /casino/i\n score 1\n}\n"
		"rule HDR {\n match header x-mailer /^BulkMailer \\d/\n score 1\n}\n"
		"rule HDR_DECODED {\n match header X-Note \"café offer\"\n score 1\n}\n"
		"rule HDR_FOLDED {\n match header X-Folded \"part  second\"\n score 1\n}\n"
		"rule HDR_MISS {\n match header X-Other \"anything\"\n score 1\n}\n";

	CHECK_MATCH(rules, msg_plain,
		    "SUBJ_PHRASE,SUBJ_REGEX,FROM_DOMAIN,TO_HIT,BODY_PHRASE,BODY_WORD_HIT,BODY_NOLIT,HDR,HDR_DECODED,HDR_FOLDED");
}

TEST(rules_html)
{
	const char *rules =
		"rule VISIBLE {\n match body \"verify your account\"\n score 1\n}\n"
		"rule SCRIPT_HIDDEN {\n match body \"lottery\"\n score 1\n}\n"
		"rule LINK_HOST {\n match html-link /^login\\.evil\\.example$/\n score 1\n}\n"
		"rule LINK_URL {\n match html-link \"/verify?\"\n score 1\n}\n"
		"rule LINK_MISS {\n match html-link \"good.example\"\n score 1\n}\n";

	CHECK_MATCH(rules, msg_html, "VISIBLE,LINK_HOST,LINK_URL");
}

TEST(rules_attachments)
{
	const char *rules =
		"filetype PE {\n magic \"4D 5A\" at 0\n magic \"7F454C46\"\n}\n"
		"filetype ZIP {\n magic \"504B0304\"\n}\n"
		"rule EXE_TYPE {\n match attachment-type application/x-dosexec application/vnd.microsoft.portable-executable\n"
		" action reject \"554 5.7.1 Executable attachments are not accepted\"\n}\n"
		"rule USER_TYPE {\n match attachment-type PE\n score 2\n}\n"
		"rule USER_TYPE_MISS {\n match attachment-type ZIP\n score 2\n}\n"
		"rule TYPE_REGEX {\n match attachment-type /portable-exec/\n score 2\n}\n"
		"rule NAME_GLOB {\n match attachment-name \"*.EXE\"\n score 1\n}\n"
		"rule NAME_DOUBLE {\n match attachment-name /\\.(pdf|doc)\\.(exe|scr)$/i\n score 1\n}\n"
		"rule NAME_MISS {\n match attachment-name *.zip\n score 1\n}\n"
		"rule SIZE_HIT {\n match attachment-size > 400\n score 1\n}\n"
		"rule SIZE_MISS {\n match attachment-size >= 1k\n score 1\n}\n"
		"rule MSG_SMALL {\n match message-size < 10M\n score 1\n}\n"
		"rule MSG_BIG {\n match message-size >5M\n score 1\n}\n";
	struct rules *r = parse_rules(rules);
	struct mime_message *m = parse_msg(msg_exe, strlen(msg_exe));
	struct engine_results res = { 0 };

	CHECK_MATCH(rules, msg_exe, "EXE_TYPE,USER_TYPE,TYPE_REGEX,NAME_GLOB,NAME_DOUBLE,SIZE_HIT,MSG_SMALL");
	CHECK_MATCH(rules, msg_plain, "MSG_SMALL");
	rules_match(r, m, (const unsigned char *)msg_exe, strlen(msg_exe), &res);
	CHECK(res.count >= 1);
	CHECK_STR(res.items[0].symbol, "RULE_EXE_TYPE");
	CHECK_INT(res.items[0].action, CONTENT_REJECT);
	CHECK_INT(res.items[0].category, CATEGORY_RULE);
	CHECK_INT(res.items[0].part_index, 2);
	CHECK_STR(res.items[0].reply, "554 5.7.1 Executable attachments are not accepted");
	CHECK_STR(res.items[0].reason,
		  "rule EXE_TYPE: matched attachment-type application/vnd.microsoft.portable-executable");
	engine_results_free(&res);
	mime_message_free(m);
	rules_free(r);
}

TEST(rules_combinations)
{
	const char *rules =
		"rule ALL_HIT {\n all {\n  match subject \"cheap\"\n  match body \"viagra\"\n }\n score 1\n}\n"
		"rule ALL_MISS {\n all {\n  match subject \"cheap\"\n  match body \"casino\"\n }\n score 1\n}\n"
		"rule IMPLICIT_ALL {\n match subject \"cheap\"\n match from \"pills\"\n score 1\n}\n"
		"rule ANY_HIT {\n any {\n  match subject \"casino\"\n  match body \"viagra\"\n }\n score 1\n}\n"
		"rule ANY_MISS {\n any { match subject \"casino\"\n match body \"poker\" }\n score 1\n}\n"
		"rule NOT_HIT {\n not match body \"unsubscribe\"\n score 1\n}\n"
		"rule NOT_MISS {\n not match body \"viagra\"\n score 1\n}\n"
		"rule NESTED {\n any {\n  all {\n   match subject \"nope\"\n   match body \"viagra\"\n  }\n"
		"  not any {\n   match body \"casino\"\n   match header X-Mailer \"Outlook\"\n  }\n }\n score 1\n}\n";
	struct rules *r = parse_rules(rules);
	struct mime_message *m = parse_msg(msg_plain, strlen(msg_plain));
	struct engine_results res = { 0 };

	CHECK_MATCH(rules, msg_plain, "ALL_HIT,IMPLICIT_ALL,ANY_HIT,NOT_HIT,NESTED");
	rules_match(r, m, (const unsigned char *)msg_plain, strlen(msg_plain), &res);
	CHECK_STR(res.items[0].reason, "rule ALL_HIT: matched subject cheap");
	CHECK_STR(res.items[2].reason, "rule ANY_HIT: matched body viagra");
	CHECK_STR(res.items[3].reason, "rule NOT_HIT: matched (negated condition)");
	engine_results_free(&res);
	mime_message_free(m);
	rules_free(r);
}

TEST(rules_regex_excerpt_and_score)
{
	struct rules *r = parse_rules("rule CHEAP_MEDS {\n category spam\n any {\n"
				      "  match subject /cheap\\s+(pills|meds)/i\n  match body \"viagra\"\n }\n score 4.5\n}\n");
	struct mime_message *m = parse_msg(msg_plain, strlen(msg_plain));
	struct engine_results res = { 0 };

	rules_match(r, m, (const unsigned char *)msg_plain, strlen(msg_plain), &res);
	CHECK_INT(res.count, 1);
	CHECK_STR(res.items[0].engine, "rules");
	CHECK_STR(res.items[0].reason, "rule CHEAP_MEDS: matched subject Cheap   PILLS");
	CHECK(res.items[0].score == 4.5);
	CHECK_INT(res.items[0].category, CATEGORY_SPAM);
	CHECK_INT(res.items[0].action, CONTENT_NONE);
	engine_results_free(&res);
	mime_message_free(m);
	rules_free(r);
}

static void check_error(const char *text, const char *expect)
{
	char err[512] = "";
	struct rules *r = rules_parse("t.rules", text, strlen(text), err, sizeof(err));

	CHECK(r == NULL);
	rules_free(r);
	if (strncmp(err, expect, strlen(expect)) != 0)
		unit_fail(__FILE__, __LINE__, "error \"%s\", expected it to start with \"%s\"", err, expect);
}

TEST(rules_parse_errors)
{
	check_error("rule A {\n match subjekt \"x\"\n score 1\n}\n", "t.rules:2:8: unknown field 'subjekt'");
	check_error("rule A {\n match subject /a(b/\n score 1\n}\n", "t.rules:2:20: bad regex: missing closing parenthesis");
	check_error("rule A {\n match subject \"x\n}\n", "t.rules:2:16: unterminated string");
	check_error("rule A {\n match subject \"x\"\n}\n", "t.rules:3:1: rule A has neither an action nor a score");
	check_error("rule A {\n score 1\n}\n", "t.rules:3:1: rule A has no condition");
	check_error("rule A {\n match body \"x\"\n score 1\n score 2\n}\n", "t.rules:4:2: rule A: second 'score'");
	check_error("rule A {\n match body \"x\"\n action bounce\n}\n", "t.rules:3:9: unknown action 'bounce'");
	check_error("rule A {\n match body \"x\"\n action reject \"451 later\"\n}\n", "t.rules:3:16: bad reply text");
	check_error("rule A {\n match body \"x\"\n score 1\n}\nrule A {\n match body \"y\"\n score 1\n}\n",
		    "t.rules:5:6: second rule named A");
	check_error("rule A {\n match attachment-size = 5M\n score 1\n}\n", "t.rules:2:24: expected < <= > or >=");
	check_error("rule A {\n match attachment-size > 5X\n score 1\n}\n", "t.rules:2:26: bad size '5X'");
	check_error("rule A {\n match body /x/q\n score 1\n}\n", "t.rules:2:16: regex flag 'q' unknown");
	check_error("filetype F {\n magic \"4G\"\n}\n", "t.rules:2:8: bad magic");
	check_error("rule A {\n any {\n }\n score 1\n}\n", "t.rules:2:2: empty any block");
	check_error("bogus\n", "t.rules:1:1: expected 'rule' or 'filetype'");
	check_error("rule A {\n category ham\n}\n", "t.rules:2:11: unknown category 'ham'");
	check_error("rule A {\n match attachment-name \"*.exe\"w\n score 1\n}\n", "t.rules:2:24: the w flag");
}

TEST(rules_limits)
{
	struct strbuf sb;
	char err[512];
	struct rules *r;

	strbuf_init(&sb, RULES_MAX_FILE);
	strbuf_appends(&sb, "rule DEEP {\n");
	for (int i = 0; i < RULES_MAX_DEPTH + 1; i++)
		strbuf_appends(&sb, "not ");
	strbuf_appends(&sb, "match body \"x\"\n score 1\n}\n");
	r = rules_parse("t", sb.data, sb.len, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "nested deeper than") != NULL);
	strbuf_reset(&sb);
	strbuf_appends(&sb, "rule LONG {\n match body /");
	for (int i = 0; i < RULES_MAX_REGEX + 1; i++)
		strbuf_appends(&sb, "a");
	strbuf_appends(&sb, "/\n score 1\n}\n");
	r = rules_parse("t", sb.data, sb.len, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "regex longer than") != NULL);
	strbuf_reset(&sb);
	for (int i = 0; i < RULES_MAX_RULES + 1; i++)
		strbuf_appendf(&sb, "rule R%d {\nmatch body \"x\"\nscore 1\n}\n", i);
	r = rules_parse("t", sb.data, sb.len, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "more than 10000 rules") != NULL);
	strbuf_free(&sb);
	r = rules_parse("t", "x", RULES_MAX_FILE + 1, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "larger than") != NULL);
}

static char *export_of(const struct rules *r)
{
	struct strbuf sb;

	strbuf_init(&sb, 1 << 24);
	CHECK(rules_export(r, &sb) == 0);
	return strbuf_detach(&sb, NULL);
}

static char *overview_of(const struct rules *r)
{
	struct strbuf sb;

	strbuf_init(&sb, 1 << 24);
	CHECK(rules_overview(r, &sb) == 0);
	return strbuf_detach(&sb, NULL);
}

TEST(rules_export_round_trip)
{
	const char *text =
		"# a comment\n"
		"filetype PE { \n magic \"4d5a\" at 0\n magic \"7F 45 4C 46\" at 2k\n}\n"
		"rule EXE_ATTACHMENT {\n category rule\n description \"Executable \\\"attachment\\\"\"\n"
		" match attachment-type application/x-dosexec PE \\\n   \"application/vnd.microsoft.portable-executable\"\n"
		" action reject \"554 5.7.1 Executable attachments are not accepted\"\n}\n"
		"rule CHEAP_MEDS {\n category spam\n any {\n  match subject /cheap\\s+(pills|meds)\\//ix\n"
		"  match body \"viagra\"w \"back\\\\slash\"\n  not all { match header X-Spam \"yes\"\n"
		" match message-size < 1048576 }\n }\n score 0.1\n}\n"
		"rule BIG { match attachment-size >= 3G\n action quarantine\n score -2.25 }\n";
	struct rules *r = parse_rules(text), *again;
	char *e1, *e2, *o1, *o2, err[512];

	CHECK(r != NULL);
	if (r == NULL)
		return;
	e1 = export_of(r);
	again = rules_parse("export", e1, strlen(e1), err, sizeof(err));
	if (again == NULL)
		unit_fail(__FILE__, __LINE__, "export does not parse: %s\n%s", err, e1);
	CHECK(again != NULL);
	if (again != NULL) {
		e2 = export_of(again);
		o1 = overview_of(r);
		o2 = overview_of(again);
		CHECK_STR(e2, e1);
		CHECK_STR(o2, o1);
		CHECK(strstr(o1, "EXE_ATTACHMENT") != NULL && strstr(o1, "reject") != NULL);
		CHECK(strstr(o1, "score 0.1") != NULL);
		CHECK(strstr(e1, "\tscore 0.1\n") != NULL);
		CHECK(strstr(e1, "match attachment-size >= 3G\n") != NULL);
		CHECK(strstr(e1, "magic \"7F454C46\" at 2048\n") != NULL);
		CHECK(strstr(e1, "match body \"viagra\"w \"back\\\\slash\"\n") != NULL);
		CHECK(strstr(e1, "\tnot all {\n") != NULL);
		free(e2);
		free(o1);
		free(o2);
		rules_free(again);
	}
	free(e1);
	rules_free(r);
}

/* ---- 1,000 generated rules against the mail corpus, checked naively ---- */

static const char *const words[] = {
	"free", "money", "click", "offer", "unsubscribe", "viagra", "meeting", "linux", "please",
	"http", "the", "account", "credit", "price", "order", "email", "list", "software", "mortgage",
	"rate", "winner", "business", "remove", "report", "python", "update", "security", "weight",
	"million", "investment", "dollars", "save", "guarantee", "newsletter", "thanks", "problem",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

struct gen_rule {
	int field;               /* 0 subject, 1 from, 2 body */
	bool regex;
	bool word;
	char value[64];
	pcre2_code *re;
};

static void gen_rules(struct gen_rule *g, size_t n, struct strbuf *sb)
{
	static const char *const fields[] = { "subject", "from", "body" };
	unsigned seed = 12345;

	for (size_t i = 0; i < n; i++) {
		const char *w1, *w2;
		int kind;

		seed = seed * 1103515245 + 12345;
		w1 = words[(seed >> 8) % NWORDS];
		w2 = words[(seed >> 16) % NWORDS];
		kind = (int)((seed >> 24) % 6);
		g[i].field = (int)((seed >> 4) % 3);
		g[i].regex = kind >= 3;
		g[i].word = kind == 1;
		if (kind == 0 || kind == 1)
			snprintf(g[i].value, sizeof(g[i].value), "%s", w1);
		else if (kind == 2)
			snprintf(g[i].value, sizeof(g[i].value), "%s %s", w1, w2);
		else if (kind == 3)
			snprintf(g[i].value, sizeof(g[i].value), "%s\\W+%s", w1, w2);
		else if (kind == 4)
			snprintf(g[i].value, sizeof(g[i].value), "\\b%s(ing|s|ed)?\\b", w1);
		else
			snprintf(g[i].value, sizeof(g[i].value), "(%s|%s)\\s*\\d", w1, w2);
		if (g[i].regex) {
			int code;
			PCRE2_SIZE off;

			g[i].re = pcre2_compile((PCRE2_SPTR)g[i].value, PCRE2_ZERO_TERMINATED,
						PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_CASELESS, &code, &off, NULL);
			strbuf_appendf(sb, "rule G%zu {\n match %s /%s/i\n score 1\n}\n", i, fields[g[i].field], g[i].value);
		} else {
			strbuf_appendf(sb, "rule G%zu {\n match %s \"%s\"%s\n score 1\n}\n", i, fields[g[i].field], g[i].value,
				       g[i].word ? "w" : "");
		}
	}
}

static bool naive_word_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool naive_phrase(const char *s, size_t len, const char *phrase, bool word)
{
	size_t pl = strlen(phrase);

	for (size_t i = 0; i + pl <= len; i++) {
		if (strncasecmp(s + i, phrase, pl) != 0)
			continue;
		if (!word || ((i == 0 || !naive_word_char((unsigned char)s[i - 1])) &&
			      (i + pl == len || !naive_word_char((unsigned char)s[i + pl]))))
			return true;
	}
	return false;
}

static bool naive_value(const struct gen_rule *g, const char *s, size_t len, pcre2_match_data *md)
{
	if (s == NULL)
		return false;
	if (g->regex)
		return pcre2_match(g->re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
	return naive_phrase(s, len, g->value, g->word);
}

static bool naive_match(const struct gen_rule *g, const struct mime_message *m, pcre2_match_data *md)
{
	if (g->field == 0)
		return naive_value(g, m->subject, m->subject ? strlen(m->subject) : 0, md);
	if (g->field == 1)
		return naive_value(g, m->from, m->from ? strlen(m->from) : 0, md);
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		if (p->text == NULL || p->is_attachment)
			continue;
		if (p->html != NULL ? naive_value(g, p->html->text, p->html->text_len, md)
				    : naive_value(g, p->text, p->text_len, md))
			return true;
	}
	return false;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct strbuf sb;
	char buf[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	strbuf_init(&sb, 16 << 20);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_append(&sb, buf, n);
	fclose(f);
	return strbuf_detach(&sb, len);
}

static size_t check_corpus_dir(const struct rules *r, struct gen_rule *g, size_t ng, const char *dir, size_t every)
{
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t checked = 0, k = 0, hits = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[4096], *raw;
		size_t len;
		struct mime_message *m;
		struct engine_results res = { 0 };
		unsigned char *got;

		if (de->d_name[0] == '.' || k++ % every != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((raw = read_file(path, &len)) == NULL)
			continue;
		m = parse_msg(raw, len);
		rules_match(r, m, (const unsigned char *)raw, len, &res);
		got = xcalloc(ng, 1);
		for (size_t i = 0; i < res.count; i++)
			got[strtoul(res.items[i].symbol + 6, NULL, 10)] = 1;
		for (size_t i = 0; i < ng; i++) {
			bool want = naive_match(&g[i], m, md);

			hits += want;
			if (want != (got[i] != 0))
				unit_fail(__FILE__, __LINE__, "%s: rule G%zu (%s) engine %d naive %d", path, i, g[i].value,
					  got[i], want);
		}
		free(got);
		engine_results_free(&res);
		mime_message_free(m);
		free(raw);
		checked++;
	}
	closedir(d);
	pcre2_match_data_free(md);
	CHECK(hits > 0);
	return checked;
}

TEST(rules_thousand_against_naive)
{
	struct gen_rule *g = xcalloc(1000, sizeof(*g));
	struct strbuf sb;
	struct rules *r;
	size_t checked;

	strbuf_init(&sb, RULES_MAX_FILE);
	gen_rules(g, 1000, &sb);
	r = parse_rules(sb.data);
	CHECK(r != NULL);
	if (r != NULL) {
		CHECK_INT(rules_count(r), 1000);
		checked = check_corpus_dir(r, g, 1000, CORPUS "/ham", 50) + check_corpus_dir(r, g, 1000, CORPUS "/spam", 10);
		CHECK(checked >= 50);
		rules_free(r);
	}
	for (size_t i = 0; i < 1000; i++)
		pcre2_code_free(g[i].re);
	free(g);
	strbuf_free(&sb);
}

static void collect_hit(void *arg, unsigned id, size_t end)
{
	strbuf_appendf(arg, "%u@%zu ", id, end);
}

TEST(rules_litset)
{
	struct litset *ls = litset_new();
	struct strbuf sb;

	litset_add(ls, "he", 2, 0);
	litset_add(ls, "She", 3, 1);
	litset_add(ls, "his", 3, 2);
	litset_add(ls, "hers", 4, 3);
	litset_compile(ls);
	strbuf_init(&sb, 4096);
	litset_scan(ls, "uSHErs", 6, collect_hit, &sb);
	CHECK_STR(sb.data, "1@4 0@4 3@6 ");
	strbuf_free(&sb);
	litset_free(ls);
}
