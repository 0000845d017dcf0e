#include "unit.h"

#include <stdlib.h>

#include "content/html.h"
#include "content/mime.h"
#include "core/strbuf.h"

static struct mime_message *parse_with(const char *raw, size_t len, const struct mime_limits *limits)
{
	struct mime_magic *mg = mime_magic_open();
	struct mime_message *m;

	mime_global_init();
	m = mime_parse((const unsigned char *)raw, len, limits, mg);
	mime_magic_close(mg);
	return m;
}

static struct mime_message *parse(const char *raw)
{
	struct mime_limits l;

	mime_limits_default(&l);
	return parse_with(raw, strlen(raw), &l);
}

TEST(mime_multipart_with_attachment)
{
	struct mime_message *m = parse(
		"From: Alice <alice@example.org>\r\n"
		"To: bob@example.com\r\n"
		"Subject: report\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
		"\r\n"
		"preamble\r\n"
		"--XX\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n"
		"hello world\r\n"
		"--XX\r\n"
		"Content-Type: application/octet-stream\r\n"
		"Content-Disposition: attachment; filename=\"a.zip\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"UEsDBAoAAAAAAAAAIQAAAAAAAAAAAAAAAAABAAAAYVBLAQIUAAoAAAAAAAAAIQAAAAAAAAAA\r\n"
		"AAAAAAEAAAAAAAAAAAAAAAAAAAAAAGFQSwUGAAAAAAEAAQAvAAAAHwAAAAAA\r\n"
		"--XX--\r\n");

	CHECK_INT(m->nparts, 3);
	CHECK_STR(m->subject, "report");
	CHECK_STR(m->from, "Alice <alice@example.org>");
	CHECK_STR(m->to, "bob@example.com");
	CHECK_STR(m->parts[0].type, "multipart");
	CHECK_STR(m->parts[0].subtype, "mixed");
	CHECK_INT(m->parts[0].parent, -1);
	CHECK_INT(m->parts[1].parent, 0);
	CHECK_INT(m->parts[1].depth, 1);
	CHECK_STR(m->parts[1].text, "hello world");
	CHECK(!m->parts[1].is_attachment);
	CHECK_STR(m->parts[2].filename, "a.zip");
	CHECK_STR(m->parts[2].encoding, "base64");
	CHECK(m->parts[2].is_attachment);
	CHECK_INT(m->parts[2].body_len, 99);
	CHECK(m->parts[2].body[0] == 'P' && m->parts[2].body[1] == 'K');
	CHECK_STR(m->parts[2].magic_type, "application/zip");
	CHECK_INT(m->flags, 0);
	CHECK_INT(m->limit_exceeded, 0);
	mime_message_free(m);
}

TEST(mime_nested_rfc822)
{
	struct mime_message *m = parse(
		"Subject: outer\n"
		"Content-Type: multipart/mixed; boundary=b1\n"
		"\n"
		"--b1\n"
		"Content-Type: text/plain\n"
		"\n"
		"see attached\n"
		"--b1\n"
		"Content-Type: message/rfc822\n"
		"\n"
		"Subject: inner\n"
		"Content-Type: multipart/alternative; boundary=b2\n"
		"\n"
		"--b2\n"
		"Content-Type: text/plain\n"
		"\n"
		"inner text\n"
		"--b2\n"
		"Content-Type: text/html\n"
		"\n"
		"<p>inner <b>html</b></p>\n"
		"--b2--\n"
		"--b1--\n");

	CHECK_INT(m->nparts, 6);
	CHECK_STR(m->parts[2].type, "message");
	CHECK_STR(m->parts[2].subtype, "rfc822");
	CHECK_INT(m->parts[3].parent, 2);
	CHECK_STR(m->parts[3].subtype, "alternative");
	CHECK_INT(m->parts[4].depth, 3);
	CHECK_STR(m->parts[4].text, "inner text");
	CHECK(m->parts[5].html != NULL);
	CHECK_STR(m->parts[5].html->text, "inner html");
	CHECK_INT(m->flags, 0);
	mime_message_free(m);
}

TEST(mime_rfc2047_and_rfc2231_names)
{
	struct mime_message *m = parse(
		"Subject: =?UTF-8?B?w7xiZXIgZGVuIFTDtnBmZXI=?=\n"
		"From: =?ISO-8859-1?Q?J=F6rg?= <j@example.de>\n"
		"Content-Type: multipart/mixed; boundary=b\n"
		"\n"
		"--b\n"
		"Content-Type: application/pdf\n"
		"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rechnung.pdf\n"
		"\n"
		"%PDF-1.4\n"
		"--b\n"
		"Content-Type: application/octet-stream; name=\"=?UTF-8?Q?caf=C3=A9.txt?=\"\n"
		"\n"
		"x\n"
		"--b--\n");

	CHECK_STR(m->subject, "über den Töpfer");
	CHECK_STR(m->from, "Jörg <j@example.de>");
	CHECK_INT(m->nparts, 3);
	CHECK_STR(m->parts[1].filename, "€ rechnung.pdf");
	CHECK_STR(m->parts[1].magic_type, "application/pdf");
	CHECK_STR(m->parts[2].filename, "café.txt");
	mime_message_free(m);
}

TEST(mime_charsets_to_utf8)
{
	struct mime_message *m = parse(
		"Content-Type: multipart/mixed; boundary=b\n"
		"\n"
		"--b\n"
		"Content-Type: text/plain; charset=iso-8859-1\n"
		"Content-Transfer-Encoding: quoted-printable\n"
		"\n"
		"gr=FC=DFe\n"
		"--b\n"
		"Content-Type: text/plain; charset=utf-8\n"
		"\n"
		"bad \xff\xfe bytes\n"
		"--b\n"
		"Content-Type: text/plain; charset=x-no-such-charset\n"
		"\n"
		"plain\n"
		"--b\n"
		"Content-Type: text/plain; charset=shift_jis\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"k/qWe4zq\n"
		"--b--\n");

	CHECK_INT(m->nparts, 5);
	CHECK_STR(m->parts[1].text, "grüße");
	CHECK_STR(m->parts[2].text, "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
	CHECK_STR(m->parts[3].text, "plain");
	CHECK_STR(m->parts[4].text, "日本語");
	CHECK_STR(m->parts[4].charset, "shift_jis");
	mime_message_free(m);
}

TEST(mime_uuencode_in_text)
{
	struct mime_message *m = parse(
		"Subject: uu\n"
		"\n"
		"Here is the file:\n"
		"\n"
		"begin 644 hello.txt\n"
		"-2&5L;&\\L('=O<FQD(0``\n"
		"`\n"
		"end\n"
		"bye\n");

	CHECK_INT(m->nparts, 2);
	CHECK_STR(m->parts[0].type, "text");
	CHECK_INT(m->parts[1].parent, 0);
	CHECK(m->parts[1].from_uuencode);
	CHECK(m->parts[1].is_attachment);
	CHECK_STR(m->parts[1].filename, "hello.txt");
	CHECK_INT(m->parts[1].body_len, 13);
	CHECK(memcmp(m->parts[1].body, "Hello, world!", 13) == 0);
	mime_message_free(m);
}

TEST(mime_html_text_and_links)
{
	struct mime_message *m = parse(
		"Content-Type: text/html; charset=utf-8\n"
		"\n"
		"<html><head><title>t</title><style>p{}</style></head><body>"
		"<script>var x = 1;</script>"
		"<p>Dear &amp; valued   customer</p>"
		"<div>Click <a href=\" http://evil.example/login \">your <b>bank</b></a></div>"
		"<img src=\"http://img.example/p.gif\" alt=\"logo\">"
		"<form action=\"http://form.example/post\"><input name=a></form>"
		"<map><area href=\"http://area.example/\" alt=\"zone\"></map>"
		"</body></html>\n");
	struct html_doc *h;

	CHECK_INT(m->nparts, 1);
	h = m->parts[0].html;
	CHECK(h != NULL);
	CHECK_STR(h->text, "Dear & valued customer\nClick your bank");
	CHECK_INT(h->nlinks, 4);
	CHECK_INT(h->links[0].kind, HTML_LINK_ANCHOR);
	CHECK_STR(h->links[0].url, "http://evil.example/login");
	CHECK_STR(h->links[0].text, "your bank");
	CHECK_INT(h->links[1].kind, HTML_LINK_IMAGE);
	CHECK_STR(h->links[1].text, "logo");
	CHECK_INT(h->links[2].kind, HTML_LINK_FORM);
	CHECK_STR(h->links[2].url, "http://form.example/post");
	CHECK_INT(h->links[3].kind, HTML_LINK_AREA);
	CHECK_STR(h->links[3].text, "zone");
	mime_message_free(m);
}

TEST(html_limits_and_deep_nesting)
{
	struct html_limits l;
	struct html_doc d;
	struct strbuf sb;

	html_limits_default(&l);
	l.max_links = 2;
	l.max_text = 10;
	html_extract("<a href=a>one two three four</a><a href=b>x</a><a href=c>y</a>", 61, &l, &d);
	CHECK_INT(d.nlinks, 2);
	CHECK(d.links_truncated);
	CHECK(d.text_truncated);
	CHECK(d.text_len <= 10);
	html_doc_free(&d);

	html_limits_default(&l);
	strbuf_init(&sb, 1 << 20);
	for (int i = 0; i < 50000; i++)
		strbuf_appends(&sb, "<i>");
	strbuf_appends(&sb, "deep text");
	html_extract(sb.data, sb.len, &l, &d);
	CHECK(d.too_deep);
	CHECK_STR(d.text, "deep text");
	html_doc_free(&d);
	strbuf_free(&sb);
}

static char *build_many_parts(size_t n)
{
	struct strbuf sb;

	strbuf_init(&sb, 64u << 20);
	strbuf_appends(&sb, "Content-Type: multipart/mixed; boundary=b\n\n");
	for (size_t i = 0; i < n; i++)
		strbuf_appends(&sb, "--b\nContent-Type: text/plain\n\nx\n");
	strbuf_appends(&sb, "--b--\n");
	return strbuf_detach(&sb, NULL);
}

TEST(mime_limit_parts)
{
	char *raw = build_many_parts(50);
	struct mime_limits l;
	struct mime_message *m;

	mime_limits_default(&l);
	l.max_parts = 10;
	m = parse_with(raw, strlen(raw), &l);
	CHECK_INT(m->nparts, 10);
	CHECK_INT(m->limit_exceeded, MIME_LIMIT_PARTS);
	CHECK_STR(mime_limit_name(MIME_LIMIT_PARTS), "parts");
	mime_message_free(m);
	free(raw);
}

TEST(mime_limit_depth)
{
	struct strbuf sb;
	struct mime_limits l;
	struct mime_message *m;

	strbuf_init(&sb, 1 << 20);
	for (int i = 0; i < 30; i++)
		strbuf_appendf(&sb, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
	strbuf_appends(&sb, "Content-Type: text/plain\n\ndeep\n");
	mime_limits_default(&l);
	m = parse_with(sb.data, sb.len, &l);
	CHECK(m->limit_exceeded & MIME_LIMIT_DEPTH);
	CHECK_INT(m->nparts, 21);
	CHECK_INT(m->parts[20].depth, 20);
	mime_message_free(m);
	strbuf_free(&sb);
}

TEST(mime_limit_decoded)
{
	struct strbuf sb;
	struct mime_limits l;
	struct mime_message *m;

	strbuf_init(&sb, 1 << 20);
	strbuf_appends(&sb, "Content-Type: multipart/mixed; boundary=b\n\n");
	for (int i = 0; i < 4; i++) {
		strbuf_appends(&sb, "--b\nContent-Type: application/octet-stream\n\n");
		for (int j = 0; j < 100; j++)
			strbuf_appends(&sb, "0123456789012345678901234567890123456789\n");
	}
	strbuf_appends(&sb, "--b--\n");
	mime_limits_default(&l);
	l.max_decoded = 6000;
	m = parse_with(sb.data, sb.len, &l);
	CHECK_INT(m->limit_exceeded, MIME_LIMIT_DECODED);
	CHECK_INT(m->decoded_total, 6000);
	CHECK_INT(m->nparts, 3);
	CHECK_INT(m->parts[1].body_len, 4099); /* the last newline belongs to the boundary */
	CHECK_INT(m->parts[2].body_len, 1901);
	mime_message_free(m);
	strbuf_free(&sb);
}

TEST(mime_limit_header)
{
	struct strbuf sb;
	struct mime_limits l;
	struct mime_message *m;

	strbuf_init(&sb, 4 << 20);
	strbuf_appends(&sb, "Subject: big\n");
	for (int i = 0; i < 2000; i++)
		strbuf_appends(&sb, "X-Filler: 0123456789012345678901234567890123456789\n");
	strbuf_appends(&sb, "\nbody\n");
	mime_limits_default(&l);
	l.max_header = 64 * 1024;
	m = parse_with(sb.data, sb.len, &l);
	CHECK_INT(m->limit_exceeded, MIME_LIMIT_HEADER);
	CHECK_INT(m->nparts, 0);
	mime_message_free(m);
	strbuf_free(&sb);
}

TEST(mime_broken_base64_and_missing_boundary)
{
	struct mime_message *m = parse(
		"Content-Type: multipart/mixed; boundary=b\n"
		"\n"
		"--b\n"
		"Content-Type: application/octet-stream\n"
		"Content-Transfer-Encoding: base64\n"
		"\n"
		"SGVsbG8h!!!*\n"
		"--b--\n");

	CHECK(m->flags & MIME_FLAG_BROKEN_BASE64);
	CHECK(m->parts[1].broken_base64);
	mime_message_free(m);

	m = parse("Content-Type: multipart/mixed\n\nno boundary at all\n");
	CHECK(m->flags & MIME_FLAG_MISSING_BOUNDARY);
	mime_message_free(m);

	m = parse("Content-Type: multipart/mixed; boundary=zz\n\n--yy\n\ntext\n");
	CHECK(m->flags & MIME_FLAG_MISSING_BOUNDARY);
	mime_message_free(m);

	m = parse("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nSGVsbG8h\n");
	CHECK_INT(m->flags, 0);
	CHECK_INT(m->parts[0].body_len, 6);
	mime_message_free(m);
}

TEST(mime_garbage_gives_a_result)
{
	static const char *inputs[] = { "", "\n", "x", ":\n\n", "\r\n\r\n\r\n", "From nobody\n" };

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		struct mime_message *m = parse(inputs[i]);

		CHECK(m != NULL);
		mime_message_free(m);
	}
}
