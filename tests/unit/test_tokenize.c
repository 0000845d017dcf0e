/*
 * The Bayesian tokeniser: words, OSB pairs, numbers, limits, HTML text
 * and links, URLs in plain text, the headers it reads and the ones it
 * must never read.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "content/mime.h"
#include "content/tokenize.h"
#include "core/strbuf.h"
#include "unit.h"

struct tokens {
	struct strbuf sb;     /* "\n"-separated, with a leading and trailing "\n" */
	size_t count;
};

static void collect(void *arg, const char *token, size_t len)
{
	struct tokens *t = arg;

	strbuf_append(&t->sb, token, len);
	strbuf_append(&t->sb, "\n", 1);
	t->count++;
}

static void tokenize_text(const char *raw, size_t max, struct tokens *t)
{
	struct mime_limits limits;
	struct mime_message *m;

	mime_global_init();
	mime_limits_default(&limits);
	strbuf_init(&t->sb, 16 * 1024 * 1024);
	strbuf_append(&t->sb, "\n", 1);
	t->count = 0;
	m = mime_parse((const unsigned char *)raw, strlen(raw), &limits, NULL);
	CHECK_INT(tokenize_message_each(m, (const unsigned char *)raw, strlen(raw), max, collect, t), t->count);
	mime_message_free(m);
}

static bool has(const struct tokens *t, const char *token)
{
	char needle[256];

	snprintf(needle, sizeof(needle), "\n%s\n", token);
	return strstr(t->sb.data, needle) != NULL;
}

TEST(tokenize_words_and_osb_pairs)
{
	struct tokens t;

	tokenize_text("From: a@example.org\r\nSubject: Cheap pills\r\n\r\nBuy CHEAP Viagra now, today!\r\n", 0, &t);
	CHECK(has(&t, "buy"));
	CHECK(has(&t, "cheap"));
	CHECK(has(&t, "viagra"));
	CHECK(has(&t, "buy~cheap"));
	CHECK(has(&t, "buy~~viagra"));
	CHECK(!has(&t, "buy~~~now"));                     /* beyond the window of 3 */
	CHECK(has(&t, "viagra~~today"));
	CHECK(has(&t, "now~today"));
	/* The capital word and the exclamation mark's shape have tokens of their own. */
	CHECK(has(&t, "C:CHEAP"));
	CHECK(!has(&t, "C:Buy"));
	CHECK(has(&t, "s:cheap"));
	CHECK(has(&t, "s:pills"));
	CHECK(has(&t, "s:cheap~pills"));
	CHECK(!has(&t, "Buy"));
	CHECK(!has(&t, "p:!!"));
	/* OSB pairs never cross from the subject into the body. */
	CHECK(!has(&t, "pills~buy"));
	CHECK(!has(&t, "s:pills~buy"));
	strbuf_free(&t.sb);
}

TEST(tokenize_numbers_lengths_and_case)
{
	struct tokens t;
	char raw[512];
	const char *w40 = "abcdefghijabcdefghijabcdefghijabcdefghij";

	snprintf(raw, sizeof(raw),
		 "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
		 "12345 $100 ab abc --dash-- %s %sk Straße ÉCOLE 42\r\n", w40, w40);
	tokenize_text(raw, 0, &t);
	CHECK(has(&t, "n#5"));
	CHECK(has(&t, "$n#3"));
	CHECK(!has(&t, "12345"));
	CHECK(!has(&t, "ab"));
	CHECK(!has(&t, "n#2"));        /* "42": shorter than 3 bytes */
	CHECK(has(&t, "abc"));
	CHECK(has(&t, "dash"));
	CHECK(has(&t, w40));           /* 40 bytes: kept */
	CHECK(strstr(t.sb.data, "abcdefghijk") == NULL);   /* 41 bytes: skipped */
	CHECK(has(&t, "straße"));
	CHECK(has(&t, "école"));
	CHECK(has(&t, "h:cs:utf-8"));
	CHECK(has(&t, "h:ct:text/plain"));
	strbuf_free(&t.sb);
}

TEST(tokenize_html_text_and_links)
{
	struct tokens t;

	tokenize_text("From: Shop <deals@shop.example.net>\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
		      "--b\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"
		      "<html><head><style>.hidden{color:red}</style><script>evilscript()</script></head>"
		      "<body><p>Limited&nbsp;offer</p><a href=\"http://user@click.tracker.co.uk:8080/x?y\">Click here</a>"
		      "<img src=\"https://203.0.113.9/pixel.gif\"></body></html>\r\n"
		      "--b--\r\n", 0, &t);
	CHECK(has(&t, "limited"));
	CHECK(has(&t, "offer"));
	CHECK(has(&t, "click"));
	CHECK(has(&t, "here"));
	CHECK(has(&t, "click~here"));
	CHECK(!has(&t, "evilscript"));
	CHECK(!has(&t, "hidden"));
	CHECK(has(&t, "u:click.tracker.co.uk"));
	CHECK(has(&t, "u:d:tracker.co.uk"));
	CHECK(has(&t, "u:ip"));
	CHECK(has(&t, "h:ct:multipart/alternative"));
	CHECK(has(&t, "h:cs:iso-8859-1"));
	CHECK(has(&t, "h:fn:shop"));
	CHECK(has(&t, "h:fd:shop.example.net"));
	CHECK(has(&t, "h:fr:example.net"));
	strbuf_free(&t.sb);
}

TEST(tokenize_plain_text_urls)
{
	struct tokens t;

	tokenize_text("Subject: see\r\n\r\nGo to https://www.Foo.com/path?q=1 or www.bar.org.\r\n"
		      "Not a url: xwww.baz.com, mailto:me@qux.com, http://localhost/\r\n", 0, &t);
	CHECK(has(&t, "u:www.foo.com"));
	CHECK(has(&t, "u:d:foo.com"));
	CHECK(has(&t, "u:www.bar.org"));
	CHECK(has(&t, "u:d:bar.org"));
	CHECK(!has(&t, "u:www.baz.com"));
	CHECK(!has(&t, "u:qux.com"));
	CHECK(!has(&t, "u:localhost"));
	strbuf_free(&t.sb);
}

TEST(tokenize_reads_no_collection_artefacts)
{
	struct tokens t;

	tokenize_text("Return-Path: <bounce@returnpathhost.example>\r\n"
		      "Delivered-To: zzzz@deliveredhost.example\r\n"
		      "Received: from relayhostname.example (relayhostname.example [192.0.2.1])\r\n"
		      "\tby fetchmailhost.example with SMTP id abcdefg\r\n"
		      "X-Spam-Status: No, hits=-5 spamstatusword\r\n"
		      "Message-ID: <messageidword@example.org>\r\n"
		      "List-Id: <listidword.example.org>\r\n"
		      "Date: Mon, 2 Sep 2002 10:00:00 +0100\r\n"
		      "From: \"Alice Smith\" <alice@mail.example.com>\r\n"
		      "To: a@x.example, b@x.example, c@x.example\r\n"
		      "X-Mailer: Microsoft Outlook Express 6.00.2600\r\n"
		      "Subject: hello\r\n\r\nbody text here\r\n", 0, &t);
	CHECK(strstr(t.sb.data, "returnpathhost") == NULL);
	CHECK(strstr(t.sb.data, "deliveredhost") == NULL);
	CHECK(strstr(t.sb.data, "relayhostname") == NULL);
	CHECK(strstr(t.sb.data, "fetchmailhost") == NULL);
	CHECK(strstr(t.sb.data, "spamstatusword") == NULL);
	CHECK(strstr(t.sb.data, "messageidword") == NULL);
	CHECK(strstr(t.sb.data, "listidword") == NULL);
	CHECK(strstr(t.sb.data, "sep") == NULL);
	CHECK(has(&t, "h:fn:alice"));
	CHECK(has(&t, "h:fn:smith"));
	CHECK(has(&t, "h:fd:mail.example.com"));
	CHECK(has(&t, "h:fr:example.com"));
	CHECK(has(&t, "h:to:few"));
	CHECK(has(&t, "h:xm:microsoft"));
	CHECK(has(&t, "h:xm:outlook"));
	CHECK(has(&t, "s:hello"));
	CHECK(has(&t, "body~text~~here") == false);
	CHECK(has(&t, "body~~here"));
	strbuf_free(&t.sb);
}

TEST(tokenize_limits_tokens)
{
	struct strbuf raw;
	struct tokens t;
	struct token_set set;
	struct mime_limits limits;
	struct mime_message *m;

	strbuf_init(&raw, 4 * 1024 * 1024);
	strbuf_appends(&raw, "From: a@example.org\r\nSubject: long one\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		strbuf_appendf(&raw, "word%d ", i);
	tokenize_text(raw.data, 500, &t);
	CHECK_INT(t.count, 500);
	CHECK(has(&t, "h:fd:example.org"));     /* headers come first */
	strbuf_free(&t.sb);

	mime_limits_default(&limits);
	m = mime_parse((const unsigned char *)raw.data, raw.len, &limits, NULL);
	tokenize_message(m, (const unsigned char *)raw.data, raw.len, 0, &set);
	CHECK(set.count <= TOKENIZE_MAX_TOKENS_DEFAULT);
	CHECK(set.count > TOKENIZE_MAX_TOKENS_DEFAULT / 2);
	for (size_t i = 1; i < set.count; i++)
		CHECK(set.hashes[i - 1] < set.hashes[i]);
	token_set_free(&set);
	mime_message_free(m);
	strbuf_free(&raw);
}

TEST(tokenize_registrable_domains)
{
	CHECK_STR(tokenize_registrable_domain("www.example.com"), "example.com");
	CHECK_STR(tokenize_registrable_domain("example.com"), "example.com");
	CHECK_STR(tokenize_registrable_domain("com"), "com");
	CHECK_STR(tokenize_registrable_domain("a.b.example.co.uk"), "example.co.uk");
	CHECK_STR(tokenize_registrable_domain("co.uk"), "co.uk");
	CHECK_STR(tokenize_registrable_domain("shop.com.au"), "shop.com.au");
	CHECK_STR(tokenize_registrable_domain("x.shop.de"), "shop.de");
}

TEST(tokenize_raw_headers_unfolded)
{
	const char *raw = "Subject: a\r\nX-Mailer: Foo\r\n Bar\r\n\tBaz\r\nUser-Agent:Mutt\r\n\r\nX-Mailer: body\r\n";
	char buf[64];

	CHECK_INT(tokenize_raw_header((const unsigned char *)raw, strlen(raw), "x-mailer", buf, sizeof(buf)), 11);
	CHECK_STR(buf, "Foo Bar Baz");
	CHECK_INT(tokenize_raw_header((const unsigned char *)raw, strlen(raw), "User-Agent", buf, sizeof(buf)), 4);
	CHECK_STR(buf, "Mutt");
	CHECK_INT(tokenize_raw_header((const unsigned char *)raw, strlen(raw), "X-Other", buf, sizeof(buf)), -1);
	CHECK_INT(tokenize_raw_header((const unsigned char *)raw, strlen(raw), "X-Mailer", buf, 4), 3);
	CHECK_STR(buf, "Foo");
	CHECK(token_hash("abc", 3) == token_hash("abc", 3));
	CHECK(token_hash("abc", 3) != token_hash("abd", 3));
	CHECK(token_hash("", 0) != 0);
}

TEST(tokenize_markup_url_paths_and_shapes)
{
	struct tokens t;

	tokenize_text("From: a@example.org\r\nSubject: ACT NOW!!!\r\nContent-Type: text/html\r\n\r\n"
		      "<html><body><font color=\"red\" size=+2>FREE offer</font><!-- x -->"
		      "<a href=\"http://offers.example.net/remove.cgi?list=weekly\">Click!!</a></body></html>\r\n",
		      0, &t);
	CHECK(has(&t, "t:font"));
	CHECK(has(&t, "t:font.color"));
	CHECK(has(&t, "t:font.size"));
	CHECK(has(&t, "t:comment"));
	CHECK(has(&t, "t:a.href"));
	CHECK(!has(&t, "t:red"));                          /* a quoted value is not an attribute */
	CHECK(has(&t, "u:offers.example.net"));
	CHECK(has(&t, "u:p:remove"));
	CHECK(has(&t, "u:p:cgi"));
	CHECK(has(&t, "u:p:weekly"));
	CHECK(has(&t, "C:FREE"));
	CHECK(has(&t, "s:C:ACT"));
	CHECK(has(&t, "s:C:NOW"));
	CHECK(has(&t, "s:p:!!!"));
	CHECK(has(&t, "p:!!"));
	strbuf_free(&t.sb);
}

TEST(tokenize_cjk_text_as_character_pairs)
{
	struct tokens t;

	/* "免費電話" has no spaces: pairs of neighbouring characters stand in for words. */
	tokenize_text("From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
		      "\xe5\x85\x8d\xe8\xb2\xbb\xe9\x9b\xbb\xe8\xa9\xb1 call now\r\n", 0, &t);
	CHECK(has(&t, "\xe5\x85\x8d\xe8\xb2\xbb"));
	CHECK(has(&t, "\xe8\xb2\xbb\xe9\x9b\xbb"));
	CHECK(has(&t, "\xe9\x9b\xbb\xe8\xa9\xb1"));
	CHECK(!has(&t, "\xe5\x85\x8d\xe8\xb2\xbb\xe9\x9b\xbb\xe8\xa9\xb1"));
	CHECK(has(&t, "call~now"));
	strbuf_free(&t.sb);
}
