/*
 * The phishing engine (see content/phishing.h): every link of a message
 * is reduced to the host a browser would go to (content/url_host.h), and
 * that host is judged against the link's visible text, the protected
 * brands (content/lookalike.h) and the known shorteners.
 */
#define LOG_MODULE "phishing"
#include "content/phishing.h"

#include <ctype.h>
#include <glib.h>
#include <libpsl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/dmarc.h"
#include "content/engine.h"
#include "content/html.h"
#include "content/lookalike.h"
#include "content/mime.h"
#include "content/url_host.h"
#include "core/alloc.h"
#include "core/log.h"

#define HOST_BUF       (URL_HOST_MAX + 1)
#define TEXT_URL_MAX   2048      /* bytes of a bare text URL looked at; its host comes first */
#define SHOWN_URL_MAX  120       /* bytes of a URL named in a reason */
#define INPUT_TAG_SCAN 512       /* bytes of one <input> tag looked at */

const char *const phishing_default_brands[] = {
	"paypal.com", "apple.com", "icloud.com", "microsoft.com", "office.com", "office365.com",
	"live.com", "outlook.com", "hotmail.com", "google.com", "gmail.com", "youtube.com",
	"amazon.com", "netflix.com", "facebook.com", "instagram.com", "whatsapp.com", "linkedin.com",
	"dropbox.com", "docusign.com", "chase.com", "bankofamerica.com", "wellsfargo.com", "citi.com",
	"americanexpress.com", "capitalone.com", "hsbc.com", "barclays.co.uk", "dhl.com", "fedex.com",
	"ups.com", "usps.com", "royalmail.com", "adobe.com", "ebay.com", "coinbase.com", "binance.com",
	"blockchain.com", "steamcommunity.com", "yahoo.com", "twitter.com", "aol.com", "spotify.com",
	"intuit.com", "irs.gov",
	NULL,
};

const char *const phishing_default_shorteners[] = {
	"bit.ly", "bitly.com", "j.mp", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "v.gd",
	"buff.ly", "rebrand.ly", "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "bl.ink", "t.ly", "s.id",
	"lnkd.in", "tr.im", "cli.gs", "adf.ly", "bc.vc", "shorte.st", "x.co", "su.pr", "po.st", "db.tt",
	"clck.ru", "surl.li", "u.to", "t2m.io", "qr.ae",
	NULL,
};

/*
 * Two-letter country domains that are far more often file extensions in
 * link text ("setup.py", "README.md") than web sites: such text is not
 * taken for a host name unless it has a scheme or "www.".
 */
static const char *const file_suffixes[] = {
	"ac", "am", "cc", "md", "mk", "ml", "mo", "pm", "ps", "py", "rs", "sh", "so", "zip", "mov",
	NULL,
};

/*
 * Click trackers of mailing services and link rewriters of mail security
 * services: honest newsletters show "www.example.com" and link through
 * these, so a link into one of them is no text mismatch. (A phisher using
 * one still meets the other symbols.)
 */
static const char *const redirectors[] = {
	"list-manage.com", "mcsv.net", "mailchimp.com", "sendgrid.net", "mandrillapp.com",
	"hubspotlinks.com", "exacttarget.com", "rs6.net", "createsend.com", "createsend1.com",
	"cmail19.com", "cmail20.com", "sparkpostmail.com", "awstrack.me", "mjt.lu", "klclick.com",
	"mlsend.com", "convertkit-mail.com", "substack.com", "safelinks.protection.outlook.com",
	"urldefense.com", "urldefense.proofpoint.com", "mimecast.com", "cudasvc.com",
	NULL,
};

enum phish_symbol {
	SYM_TEXT_MISMATCH,
	SYM_IP_LINK,
	SYM_LOOKALIKE,
	SYM_SHORTENER,
	SYM_FORM,
	SYM_FORM_SECRETS,
	SYM_USERINFO,
	SYM_COUNT,
};

static const char *const symbol_names[SYM_COUNT] = {
	"PHISH_TEXT_MISMATCH", "PHISH_IP_LINK", "PHISH_LOOKALIKE",
	"PHISH_SHORTENER", "PHISH_FORM", "PHISH_FORM_SECRETS", "PHISH_USERINFO",
};

struct brand {
	char *domain;
	struct lookalike_view view;
};

struct phishing {
	struct brand *brands;
	size_t nbrands;
	char **shorteners;
	size_t nshorteners;
	double score[SYM_COUNT];
};

static bool in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* One message's scan: the first reason found for each symbol. */
struct phish_scan {
	const struct phishing *ph;
	size_t nlinks;
	bool found[SYM_COUNT];
	char reason[SYM_COUNT][ENGINE_REASON_MAX];
	char last_host[HOST_BUF];    /* consecutive links to one host are judged once */
};

/*
 * Reasons end up in headers and logs: control characters become '?', and
 * a UTF-8 sequence cut by truncation is dropped.
 */
static void reason_clean(char *s)
{
	size_t len = strlen(s), start = len;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
	while (start > 0 && len - start < 4 && ((unsigned char)s[start - 1] & 0xC0) == 0x80)
		start--;
	if (start > 0 && (unsigned char)s[start - 1] >= 0xC0) {
		unsigned char lead = (unsigned char)s[start - 1];
		size_t need = (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;

		if (len - (start - 1) < need)
			s[start - 1] = '\0';
	}
}

static void scan_found(struct phish_scan *sc, enum phish_symbol sym, const char *url, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Record sym's first reason: what was seen, then the URL cut to SHOWN_URL_MAX. */
static void scan_found(struct phish_scan *sc, enum phish_symbol sym, const char *url, const char *fmt, ...)
{
	char *r = sc->reason[sym];
	size_t used, shown;
	va_list ap;

	if (sc->found[sym])
		return;
	sc->found[sym] = true;
	va_start(ap, fmt);
	vsnprintf(r, ENGINE_REASON_MAX, fmt, ap);
	va_end(ap);
	used = strlen(r);
	if (url != NULL && used + 3 < ENGINE_REASON_MAX) {
		shown = strnlen(url, SHOWN_URL_MAX + 1);
		if (shown > SHOWN_URL_MAX) {
			shown = SHOWN_URL_MAX;
			while (shown > 0 && ((unsigned char)url[shown] & 0xC0) == 0x80)
				shown--;
		}
		snprintf(r + used, ENGINE_REASON_MAX - used, ": %.*s%s", (int)shown, url,
			 url[shown] != '\0' ? "..." : "");
	}
	reason_clean(r);
}

static bool tld_is_known(const char *host)
{
	const char *dot = strrchr(host, '.');
	const char *tld = dot != NULL ? dot + 1 : host;

	if (in_list(file_suffixes, tld))
		return false;
	if (!g_ascii_isalpha(*tld) && (unsigned char)*tld < 0x80)
		return false;
	return psl_is_public_suffix2(psl_builtin(), tld, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}

/* Bare "paypal.com" or "bank.example.co.uk/login" as link text: labels of letters, digits and '-'. */
static bool bare_host_text(const char *text, char *host, size_t hostlen)
{
	size_t len = strcspn(text, "/?#:"), dots = 0;

	if (len == 0 || len >= hostlen)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = g_ascii_tolower(text[i]);

		if (c == '.') {
			if (i == 0 || text[i - 1] == '.' || i + 1 == len)
				return false;
			dots++;
		} else if (!g_ascii_isalnum(c) && c != '-') {
			return false;
		}
		host[i] = c;
	}
	host[len] = '\0';
	return dots > 0 && tld_is_known(host);
}

/*
 * The host a link's visible text shows, when that text is itself a URL
 * or a host name; ordinary text ("click here", "Read more") shows none.
 */
static bool text_shown_host(const char *text, char *host, size_t hostlen)
{
	char buf[HTML_LINK_TEXT_MAX + 1];
	size_t len;
	const char *s = text;

	while (*s == '<' || *s == '(' || *s == '[')
		s++;
	len = strlen(s);
	if (len == 0 || len >= sizeof(buf) || strpbrk(s, " \t\r\n") != NULL)
		return false;
	memcpy(buf, s, len + 1);
	while (len > 0 && strchr(">)].,;:!?", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	if (url_host(buf, host, hostlen, NULL))
		return true;
	if (strchr(buf, '@') != NULL)
		return false;
	return bare_host_text(buf, host, hostlen);
}

static bool is_shortener(const struct phishing *ph, const char *host)
{
	for (size_t i = 0; i < ph->nshorteners; i++)
		if (url_host_within(host, ph->shorteners[i]))
			return true;
	return false;
}

/* The first brand host imitates; NULL for none, or when host belongs to a brand. */
static const struct brand *imitated_brand(const struct phishing *ph, const char *host)
{
	struct lookalike_view h;

	for (size_t i = 0; i < ph->nbrands; i++)
		if (url_host_within(host, ph->brands[i].domain) || url_host_within(host, ph->brands[i].view.rd))
			return NULL;
	lookalike_view_init(&h, host);
	for (size_t i = 0; i < ph->nbrands; i++)
		if (lookalike_view_imitates(&h, &ph->brands[i].view))
			return &ph->brands[i];
	return NULL;
}

/*
 * Userinfo that deceives: a domain-like name before '@'
 * ("paypal.com@evil.example") or a bare brand-looking word. "user:password@"
 * credentials of technical mail are not counted.
 */
static bool userinfo_deceives(const struct url_parts *p)
{
	if (!p->web || p->user == NULL || p->user_len == 0)
		return false;
	if (memchr(p->user, '.', p->user_len) != NULL)
		return true;
	return memchr(p->user, ':', p->user_len) == NULL;
}

static bool is_redirector(const char *host)
{
	for (size_t i = 0; redirectors[i] != NULL; i++)
		if (url_host_within(host, redirectors[i]))
			return true;
	return false;
}

static void check_mismatch(struct phish_scan *sc, const char *url, const char *text, const char *host)
{
	char shown[HOST_BUF], shown_rd[HOST_BUF], href_rd[HOST_BUF];

	if (sc->found[SYM_TEXT_MISMATCH] || text == NULL || !text_shown_host(text, shown, sizeof(shown)))
		return;
	if (is_redirector(host))
		return;
	dmarc_org_domain(shown, shown_rd, sizeof(shown_rd));
	dmarc_org_domain(host, href_rd, sizeof(href_rd));
	if (strcmp(shown_rd, href_rd) != 0)
		scan_found(sc, SYM_TEXT_MISMATCH, url, "text shows %s, link goes to %s", shown, host);
}

/* Judge one link; text is NULL for links without visible text of their own. */
static void scan_link(struct phish_scan *sc, enum html_link_kind kind, const char *url, const char *text)
{
	const struct phishing *ph = sc->ph;
	char host[HOST_BUF];
	struct url_parts p;
	const struct brand *b;

	if (kind == HTML_LINK_FORM)
		scan_found(sc, SYM_FORM, url, "form posting to");
	if (!url_host(url, host, sizeof(host), NULL))
		return;
	if (kind == HTML_LINK_ANCHOR || kind == HTML_LINK_AREA)
		check_mismatch(sc, url, text, host);
	if (!sc->found[SYM_USERINFO] && url_split(url, &p) && userinfo_deceives(&p))
		scan_found(sc, SYM_USERINFO, url, "userinfo before host %s", host);
	if (strcmp(host, sc->last_host) == 0)
		return;
	memcpy(sc->last_host, host, strlen(host) + 1);
	if (!sc->found[SYM_IP_LINK] && url_host_is_ip(host) && !url_host_is_plain_local(host))
		scan_found(sc, SYM_IP_LINK, url, "link to an IP address");
	if (!sc->found[SYM_SHORTENER] && is_shortener(ph, host))
		scan_found(sc, SYM_SHORTENER, url, "link through shortener %s", host);
	if (!sc->found[SYM_LOOKALIKE] && !url_host_is_ip(host) && (b = imitated_brand(ph, host)) != NULL)
		scan_found(sc, SYM_LOOKALIKE, url, "%s imitates %s", host, b->domain);
}

static bool starts_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && strncasecmp(s, prefix, n) == 0;
}

static bool url_start_ok(const char *text, size_t i)
{
	char prev;

	if (i == 0)
		return true;
	prev = text[i - 1];
	return !g_ascii_isalnum(prev) && prev != '\0' && strchr("./@-_", prev) == NULL;
}

/* http://, https:// and www. addresses written in plain text, each judged as a link. */
static void scan_text_urls(struct phish_scan *sc, const char *text, size_t len)
{
	char url[TEXT_URL_MAX + 1];

	for (size_t i = 0; i < len && sc->nlinks < PHISHING_MAX_LINKS; i++) {
		size_t end = i, n;
		char c = text[i];

		if (c != 'h' && c != 'H' && c != 'w' && c != 'W')
			continue;
		if (!url_start_ok(text, i))
			continue;
		if (!starts_ci(text + i, len - i, "http://") && !starts_ci(text + i, len - i, "https://") &&
		    !starts_ci(text + i, len - i, "www."))
			continue;
		while (end < len && (unsigned char)text[end] > ' ' && strchr("<>\"'", text[end]) == NULL)
			end++;
		while (end > i && strchr(".,;:!?)]}*", text[end - 1]) != NULL)
			end--;
		n = end - i < TEXT_URL_MAX ? end - i : TEXT_URL_MAX;
		memcpy(url, text + i, n);
		url[n] = '\0';
		sc->nlinks++;
		scan_link(sc, HTML_LINK_ANCHOR, url, NULL);
		i = end;
	}
}

/* A <form> the HTML walk could not name (no action, or past the link limit). */
static bool html_has_form(const char *html, size_t len)
{
	for (size_t i = 0; i + 6 <= len; i++)
		if (html[i] == '<' && strncasecmp(html + i + 1, "form", 4) == 0 &&
		    html[i + 5] != '\0' && strchr(" \t\r\n>/", html[i + 5]) != NULL)
			return true;
	return false;
}

/* Whether an attribute value of one tag (bounded by its '>') names a secret a form should never ask by mail. */
static bool input_asks_secret(const char *tag, size_t len)
{
	static const char *const secrets[] = { "password", "passwd", "pwd", "pin", "ssn", "cvv", "cvc",
					       "cardnumber", "card_number", "ccnum", "expiry", "expiration", "exp_date" };
	char lower[INPUT_TAG_SCAN + 1];

	for (size_t i = 0; i < len; i++)
		lower[i] = (char)tolower((unsigned char)tag[i]);
	lower[len] = '\0';
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		const char *hit = strstr(lower, secrets[i]);

		/* Whole values only: "pin" in "spinner" or "shipping" is not a PIN. */
		while (hit != NULL) {
			char before = hit > lower ? hit[-1] : ' ', after = hit[strlen(secrets[i])];

			if (!isalnum((unsigned char)before) && !isalnum((unsigned char)after))
				return true;
			hit = strstr(hit + 1, secrets[i]);
		}
	}
	return false;
}

/*
 * An <input> asking for a password, a PIN or card data: what a form in
 * mail is for when it phishes. A subscribe or search form asks none.
 */
static bool html_form_asks_secrets(const char *html, size_t len)
{
	for (size_t i = 0; i + 6 <= len; i++) {
		size_t end;

		if (html[i] != '<' || strncasecmp(html + i + 1, "input", 5) != 0)
			continue;
		for (end = i + 6; end < len && end - i < INPUT_TAG_SCAN && html[end] != '>'; end++)
			;
		if (input_asks_secret(html + i + 6, end - i - 6))
			return true;
		i = end;
	}
	return false;
}

static void scan_part(struct phish_scan *sc, const struct mime_part *part, size_t index)
{
	if (part->html != NULL) {
		for (size_t i = 0; i < part->html->nlinks && sc->nlinks < PHISHING_MAX_LINKS; i++) {
			const struct html_link *l = &part->html->links[i];

			sc->nlinks++;
			scan_link(sc, l->kind, l->url, l->kind == HTML_LINK_IMAGE ? NULL : l->text);
		}
		if (!sc->found[SYM_FORM] && part->text != NULL && html_has_form(part->text, part->text_len))
			scan_found(sc, SYM_FORM, NULL, "form without action in part %zu", index);
		if (!sc->found[SYM_FORM_SECRETS] && part->text != NULL &&
		    html_form_asks_secrets(part->text, part->text_len))
			scan_found(sc, SYM_FORM_SECRETS, NULL, "a form field for a password, PIN or card in part %zu",
				   index);
	} else {
		scan_text_urls(sc, part->text, part->text_len);
	}
}

static void phishing_check(void *state, const struct content_message *msg, struct engine_results *out)
{
	struct phish_scan *sc;

	if (msg->mime == NULL)
		return;
	sc = xcalloc(1, sizeof(*sc));
	sc->ph = state;
	for (size_t i = 0; i < msg->mime->nparts && sc->nlinks < PHISHING_MAX_LINKS; i++) {
		const struct mime_part *part = &msg->mime->parts[i];

		if (part->text != NULL && !part->is_attachment)
			scan_part(sc, part, i);
	}
	for (int s = 0; s < SYM_COUNT; s++) {
		struct engine_result *r;

		if (!sc->found[s])
			continue;
		r = engine_results_add(out, "phishing", symbol_names[s]);
		r->category = CATEGORY_SPAM;
		r->score = sc->ph->score[s];
		memcpy(r->reason, sc->reason[s], sizeof(r->reason));
	}
	free(sc);
}

static void phishing_free(void *state)
{
	struct phishing *ph = state;

	for (size_t i = 0; i < ph->nbrands; i++)
		free(ph->brands[i].domain);
	free(ph->brands);
	for (size_t i = 0; i < ph->nshorteners; i++)
		free(ph->shorteners[i]);
	free(ph->shorteners);
	free(ph);
}

/* A configured domain lower-cased, without a trailing dot; NULL when unusable. */
static char *domain_copy(const char *d)
{
	size_t len = strlen(d);
	char *s;

	if (len > 0 && d[len - 1] == '.')
		len--;
	if (len == 0 || len > URL_HOST_MAX)
		return NULL;
	s = xstrndup(d, len);
	for (char *c = s; *c != '\0'; c++)
		*c = g_ascii_tolower(*c);
	return s;
}

static size_t list_length(const char *const *list)
{
	size_t n = 0;

	while (list[n] != NULL)
		n++;
	return n;
}

static void load_brands(struct phishing *ph, const char *const *list, size_t n)
{
	ph->brands = xcalloc(n > 0 ? n : 1, sizeof(*ph->brands));
	for (size_t i = 0; i < n; i++) {
		struct brand *b = &ph->brands[ph->nbrands];

		if ((b->domain = domain_copy(list[i])) == NULL) {
			log_warn("brand \"%s\" is not a usable domain, ignored", list[i]);
			continue;
		}
		lookalike_view_init(&b->view, b->domain);
		ph->nbrands++;
	}
}

static void load_shorteners(struct phishing *ph, const char *const *list, size_t n)
{
	ph->shorteners = xcalloc(n > 0 ? n : 1, sizeof(*ph->shorteners));
	for (size_t i = 0; i < n; i++) {
		char *d = domain_copy(list[i]);

		if (d == NULL) {
			log_warn("shortener \"%s\" is not a usable domain, ignored", list[i]);
			continue;
		}
		ph->shorteners[ph->nshorteners++] = d;
	}
}

static double score_or(double v, double def)
{
	return v != 0 ? v : def;
}

struct content_engine *phishing_engine_create(const struct phishing_options *o)
{
	static const struct phishing_options none;
	struct content_engine *e = xcalloc(1, sizeof(*e));
	struct phishing *ph = xcalloc(1, sizeof(*ph));

	if (o == NULL)
		o = &none;
	if (o->brands != NULL)
		load_brands(ph, o->brands, o->nbrands);
	else
		load_brands(ph, phishing_default_brands, list_length(phishing_default_brands));
	if (o->shorteners != NULL)
		load_shorteners(ph, o->shorteners, o->nshorteners);
	else
		load_shorteners(ph, phishing_default_shorteners, list_length(phishing_default_shorteners));
	ph->score[SYM_TEXT_MISMATCH] = score_or(o->mismatch_score, PHISHING_MISMATCH_SCORE);
	ph->score[SYM_IP_LINK] = score_or(o->ip_link_score, PHISHING_IP_LINK_SCORE);
	ph->score[SYM_LOOKALIKE] = score_or(o->lookalike_score, PHISHING_LOOKALIKE_SCORE);
	ph->score[SYM_SHORTENER] = score_or(o->shortener_score, PHISHING_SHORTENER_SCORE);
	ph->score[SYM_FORM] = score_or(o->form_score, PHISHING_FORM_SCORE);
	ph->score[SYM_FORM_SECRETS] = score_or(o->form_secrets_score, PHISHING_FORM_SECRETS_SCORE);
	ph->score[SYM_USERINFO] = score_or(o->userinfo_score, PHISHING_USERINFO_SCORE);
	log_debug("%zu brands, %zu shorteners", ph->nbrands, ph->nshorteners);
	e->name = "phishing";
	e->state = ph;
	e->check = phishing_check;
	e->free = phishing_free;
	return e;
}
