#include "unit.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "content/mime.h"
#include "content/phishing.h"

static struct mime_message *parse(const char *raw)
{
	struct mime_limits l;

	mime_global_init();
	mime_limits_default(&l);
	return mime_parse((const unsigned char *)raw, strlen(raw), &l, NULL);
}

/* Run an engine made from o (NULL: defaults) on raw; results into out (free with engine_results_free). */
static void run_with(const struct phishing_options *o, const char *raw, struct engine_results *out)
{
	struct content_engine *e = phishing_engine_create(o);
	struct content_message msg = { 0 };

	memset(out, 0, sizeof(*out));
	msg.raw = (const unsigned char *)raw;
	msg.raw_len = strlen(raw);
	msg.mime = parse(raw);
	e->check(e->state, &msg, out);
	mime_message_free(msg.mime);
	e->free(e->state);
	free(e);
}

static const struct engine_result *find(const struct engine_results *r, const char *symbol)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->items[i].symbol, symbol) == 0)
			return &r->items[i];
	return NULL;
}

/* A one-part HTML message around body. */
static char *html_mail(const char *body)
{
	char *raw;

	if (asprintf(&raw, "From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		     "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>%s</body></html>\r\n", body) < 0)
		abort();
	return raw;
}

static char *text_mail(const char *body)
{
	char *raw;

	if (asprintf(&raw, "From: a@example.org\r\nSubject: x\r\n\r\n%s\r\n", body) < 0)
		abort();
	return raw;
}

/* The symbols an HTML (html true) or text body raises, as "A B C" in engine order. */
static void symbols_of(bool html, const char *body, char *buf, size_t len)
{
	char *raw = html ? html_mail(body) : text_mail(body);
	struct engine_results r;
	size_t used = 0;

	run_with(NULL, raw, &r);
	buf[0] = '\0';
	for (size_t i = 0; i < r.count && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", r.items[i].symbol);
	engine_results_free(&r);
	free(raw);
}

#define CHECK_HTML(body, want)                                   \
	do {                                                     \
		char got_[512];                                  \
		symbols_of(true, (body), got_, sizeof(got_));    \
		CHECK_STR(got_, (want));                         \
	} while (0)

#define CHECK_TEXT(body, want)                                   \
	do {                                                     \
		char got_[512];                                  \
		symbols_of(false, (body), got_, sizeof(got_));   \
		CHECK_STR(got_, (want));                         \
	} while (0)

TEST(phishing_text_mismatch)
{
	CHECK_HTML("<a href=\"http://paypal.com.evil.example/\">www.paypal.com</a>",
		   "PHISH_TEXT_MISMATCH PHISH_LOOKALIKE");
	CHECK_HTML("<a href=\"http://evil.example/login\">https://bank.example.co.uk/login</a>", "PHISH_TEXT_MISMATCH");
	CHECK_HTML("<a href=\"http://evil.example/\">chase.com</a>", "PHISH_TEXT_MISMATCH");
	/* Same registrable domain, other scheme or subdomain: honest. */
	CHECK_HTML("<a href=\"https://www.paypal.com/us/signin\">paypal.com</a>", "");
	CHECK_HTML("<a href=\"http://news.example.org/a?utm=1\">www.example.org</a>", "");
	/* Text that is no URL never counts. */
	CHECK_HTML("<a href=\"http://click.tracker.example/r?id=1\">Read more</a>"
		   "<a href=\"http://click.tracker.example/r?id=2\">click here</a>"
		   "<a href=\"http://click.tracker.example/r?id=3\">Download setup.py</a>"
		   "<a href=\"http://click.tracker.example/r?id=4\">setup.py</a>"
		   "<a href=\"http://click.tracker.example/r?id=5\">v1.2.3</a>", "");
	/* A URL as text with a mailto: href: skipped. */
	CHECK_HTML("<a href=\"mailto:help@example.org\">https://www.example.com/</a>", "");
	CHECK_HTML("<a href=\"mailto:help@example.org\">help@example.org</a>", "");
}

TEST(phishing_honest_newsletter_clean)
{
	CHECK_HTML("<p>Our weekly news</p>"
		   "<a href=\"https://click.mailer.example.net/ls/click?upn=abc123\">Read more</a>"
		   "<a href=\"https://click.mailer.example.net/ls/click?upn=def456\">Unsubscribe</a>"
		   "<img src=\"https://open.mailer.example.net/o.gif\" alt=\"\">"
		   "<a href=\"https://www.example.com/\"><img src=\"https://cdn.example.com/logo.png\" alt=\"Example\"></a>"
		   "<a href=\"https://www.paypal.com/donate\">Donate with PayPal</a>"
		   "<a href=\"https://www.amazon.de/dp/123\">amazon.de</a>", "");
	/* Mailing-service click trackers and security link rewriters show the real site as text. */
	CHECK_HTML("<a href=\"https://example.us1.list-manage.com/track/click?u=1\">www.example.com</a>"
		   "<a href=\"https://nam02.safelinks.protection.outlook.com/?url=x\">https://example.org/</a>", "");
	CHECK_TEXT("See http://www.example.org/news and https://docs.example.com/a/b.html, or\n"
		   "visit www.paypal.com/donate. Local test: http://127.0.0.1:8080/ and http://192.168.1.1/.", "");
}

TEST(phishing_ip_links)
{
	CHECK_HTML("<a href=\"http://3232235777/\">Log in</a>", "PHISH_IP_LINK");
	CHECK_HTML("<a href=\"http://0x7f.1/\">Log in</a>", "PHISH_IP_LINK");
	CHECK_HTML("<a href=\"http://203.0.113.7/paypal/\">Log in</a>", "PHISH_IP_LINK");
	CHECK_TEXT("Go to http://198.51.100.23/verify now", "PHISH_IP_LINK");
	CHECK_TEXT("Go to http://[2001:db8::7]/verify now", "PHISH_IP_LINK");
	/* A plainly written local address is a reader's own network. */
	CHECK_TEXT("the server at http://10.0.0.5:8080/ and http://[::1]/ works", "");
}

TEST(phishing_lookalike_links)
{
	CHECK_HTML("<a href=\"http://xn--pypal-4ve.com/signin\">Sign in</a>", "PHISH_LOOKALIKE");
	CHECK_TEXT("Verify at https://paypal-secure-login.example/ today", "PHISH_LOOKALIKE");
	CHECK_HTML("<a href=\"https://www.paypal.com/\">PayPal</a><a href=\"https://apple.com\">Apple</a>", "");
}

TEST(phishing_shortener_form_userinfo)
{
	CHECK_TEXT("see https://bit.ly/3xYz", "PHISH_SHORTENER");
	CHECK_HTML("<a href=\"https://tinyurl.com/abc\">link</a>", "PHISH_SHORTENER");
	CHECK_TEXT("see https://orbit.lyrics.example/ and https://notbit.ly/", "");
	CHECK_HTML("<form action=\"http://collect.example/post.php\" method=\"post\">"
		   "<input name=\"pw\" type=\"password\"></form>", "PHISH_FORM PHISH_FORM_SECRETS");
	CHECK_HTML("<form method=\"post\"><input name=\"pw\"></form>", "PHISH_FORM");
	/* A subscribe form asks no secret; a card form does, whatever its field is called. */
	CHECK_HTML("<form action=\"https://news.example.org/subscribe\"><input type=\"text\" name=\"email\">"
		   "<input type=\"submit\" value=\"Subscribe\"></form>", "PHISH_FORM");
	CHECK_HTML("<form action=\"https://pay.example.net/\"><INPUT NAME=\"CVV\" SIZE=3>"
		   "<input name=\"shipping\"></form>", "PHISH_FORM PHISH_FORM_SECRETS");
	CHECK_HTML("<form><input name=\"spinner\"><input name=\"pin_code\"></form>",
		   "PHISH_FORM PHISH_FORM_SECRETS");
	CHECK_HTML("<p>Formidable <b>format</b></p>", "");
	CHECK_HTML("<a href=\"http://paypal.com@evil.example/\">Log in</a>", "PHISH_USERINFO");
	CHECK_HTML("<a href=\"http://evil.example/\">a</a><a href=\"http://paypal.com@evil.example/\">b</a>",
		   "PHISH_USERINFO");
	CHECK_TEXT("open http://www.paypal.com%2ecom@198.51.100.4/", "PHISH_IP_LINK PHISH_USERINFO");
	/* Credentials in technical mail are not deception. */
	CHECK_TEXT("svn co http://anon:anon@svn.example.org/repo", "");
}

TEST(phishing_scores_reasons_options)
{
	const char *brands[] = { "Example-Bank.COM." };
	const char *shorteners[] = { "sho.rt" };
	struct phishing_options o = {
		.brands = brands, .nbrands = 1, .shorteners = shorteners, .nshorteners = 1,
		.lookalike_score = 9.5,
	};
	char *raw = html_mail("<a href=\"http://example-bank-login.example/&#9;x\">www.example-bank.com</a>"
			      "<a href=\"https://bit.ly/x\">a</a><a href=\"https://sho.rt/x\">b</a>"
			      "<a href=\"http://paypa1.com/\">c</a>");
	struct engine_results r;
	const struct engine_result *x;

	run_with(&o, raw, &r);
	CHECK_INT(r.count, 3);
	x = find(&r, "PHISH_LOOKALIKE");
	CHECK(x != NULL);
	if (x != NULL) {
		CHECK(fabs(x->score - 9.5) < 1e-9);
		CHECK_STR(x->engine, "phishing");
		CHECK_INT(x->category, CATEGORY_SPAM);
		CHECK_INT(x->action, CONTENT_NONE);
		CHECK_STR(x->reason, "example-bank-login.example imitates example-bank.com: "
			  "http://example-bank-login.example/?x");
	}
	x = find(&r, "PHISH_TEXT_MISMATCH");
	CHECK(x != NULL);
	if (x != NULL) {
		CHECK(fabs(x->score - PHISHING_MISMATCH_SCORE) < 1e-9);
		CHECK_STR(x->reason, "text shows www.example-bank.com, link goes to example-bank-login.example: "
			  "http://example-bank-login.example/?x");
	}
	x = find(&r, "PHISH_SHORTENER");
	CHECK(x != NULL);
	if (x != NULL)
		CHECK_STR(x->reason, "link through shortener sho.rt: https://sho.rt/x");
	engine_results_free(&r);
	free(raw);
}

/* Whole UTF-8 sequences only. */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t need = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : 3;

		p++;
		for (size_t k = 0; k < need; k++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

TEST(phishing_reason_cut)
{
	char body[1200];
	struct engine_results r;
	char *raw;

	snprintf(body, sizeof(body), "<a href=\"https://bit.ly/%0900d\">x</a>", 7);
	raw = html_mail(body);
	run_with(NULL, raw, &r);
	CHECK_INT(r.count, 1);
	if (r.count == 1) {
		CHECK(strlen(r.items[0].reason) < ENGINE_REASON_MAX);
		CHECK(strstr(r.items[0].reason, "...") != NULL);
	}
	engine_results_free(&r);
	free(raw);
	/* A URL cut inside multi-byte characters keeps whole characters. */
	for (int shift = 0; shift < 3; shift++) {
		size_t n = (size_t)snprintf(body, sizeof(body), "<a href=\"https://bit.ly/%.*s", shift, "xxx");

		for (int i = 0; i < 80; i++)
			n += (size_t)snprintf(body + n, sizeof(body) - n, "\xe2\x82\xac");
		snprintf(body + n, sizeof(body) - n, "\">x</a>");
		raw = html_mail(body);
		run_with(NULL, raw, &r);
		CHECK_INT(r.count, 1);
		if (r.count == 1) {
			CHECK(utf8_valid(r.items[0].reason));
			CHECK(strstr(r.items[0].reason, "...") != NULL);
		}
		engine_results_free(&r);
		free(raw);
	}
}

TEST(phishing_link_cap)
{
	struct strbody {
		char *s;
		size_t len;
	} b = { NULL, 0 };
	struct engine_results r;
	char *raw;
	FILE *f = open_memstream(&b.s, &b.len);

	CHECK(f != NULL);
	for (int i = 0; i < PHISHING_MAX_LINKS + 10; i++)
		fprintf(f, "http://site%d.example/ ", i);
	fputs("http://198.51.100.9/", f);
	fclose(f);
	raw = text_mail(b.s);
	run_with(NULL, raw, &r);
	CHECK_INT(r.count, 0);           /* the IP link is past the cap */
	engine_results_free(&r);
	free(raw);
	free(b.s);
}
