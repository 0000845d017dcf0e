/*
 * The phishing engine (see content/phishing.h): every link of a message
 * is reduced to the host a browser would go to, and that host is judged
 * against the link's visible text, the protected brands and the known
 * shorteners. Brand lookalikes are found on "skeletons": host labels with
 * punycode decoded and confusable characters folded to the ASCII letter
 * they imitate, so "xn--pypal-4ve" (Cyrillic a), "paypa1" and "paypal"
 * all read "paypal".
 */
#define LOG_MODULE "phishing"
#include "content/phishing.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/dmarc.h"
#include "content/engine.h"
#include "content/html.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/log.h"

#define HOST_BUF      (PHISHING_HOST_MAX + 1)
#define TEXT_URL_MAX  2048       /* bytes of a bare text URL looked at; its host comes first */
#define SHOWN_URL_MAX 120        /* bytes of a URL named in a reason */
#define SHORT_BRAND   7          /* brand labels shorter than this are often one edit from a word */
#define MIN_EDIT_BRAND 5         /* brand labels shorter than this get no one-edit matching */
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
 * Words that phishing hosts put next to a brand's name ("paypal-login",
 * "secure-apple-id") and that honest hosts carrying a common brand word
 * ("apple-pie-recipes") rarely have. Matched anywhere in the host.
 */
static const char *const phishing_words[] = {
	"login", "logon", "signin", "sign-in", "secure", "account", "verif", "update", "support",
	"billing", "wallet", "confirm", "password", "recover", "unlock", "webscr", "customer",
	"security", "suspend", "validat",
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

/* A host name as lookalikes are judged: its registrable domain and their skeletons. */
struct name_view {
	const char *host;
	char rd[HOST_BUF];           /* registrable domain; the host itself when it has none */
	size_t label_len;            /* bytes of rd's first label, the name a brand is known by */
	char label_skel[HOST_BUF];
	char rd_skel[HOST_BUF];
};

struct brand {
	char *domain;
	struct name_view view;
};

struct phishing {
	struct brand *brands;
	size_t nbrands;
	char **shorteners;
	size_t nshorteners;
	double score[SYM_COUNT];
};

/* The parts of a URL's authority, pointing into the URL. */
struct url_parts {
	const char *host;
	size_t host_len;
	const char *user;            /* userinfo before '@', NULL if none */
	size_t user_len;
	bool web;                    /* http(s) or a scheme-less web address */
};

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_scheme_char(int c)
{
	return is_alpha(c) || is_digit(c) || c == '+' || c == '.' || c == '-';
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* host is domain or one of its subdomains. */
static bool host_within(const char *host, const char *domain)
{
	size_t hl = strlen(host), dl = strlen(domain);

	if (hl == dl)
		return strcmp(host, domain) == 0;
	return hl > dl && host[hl - dl - 1] == '.' && strcmp(host + hl - dl, domain) == 0;
}

/*
 * Scheme and authority the way a browser reads them: the special schemes
 * take any run of '/' and '\' after the colon ("http:\\evil.example"),
 * "//host" and "www.host" need no scheme, and the last '@' ends userinfo.
 */
static bool url_split(const char *url, struct url_parts *p)
{
	const char *s = url, *auth, *end, *at = NULL;
	size_t n;

	memset(p, 0, sizeof(*p));
	while (*s != '\0' && (unsigned char)*s <= ' ')
		s++;
	if (prefix_ci(s, "www.")) {
		auth = s;
		p->web = true;
	} else if ((s[0] == '/' || s[0] == '\\') && (s[1] == '/' || s[1] == '\\')) {
		auth = s + 2;
		p->web = true;
	} else {
		for (n = 0; is_alpha(s[n]) || (n > 0 && is_scheme_char(s[n])); n++)
			;
		if (n == 0 || s[n] != ':')
			return false;
		if ((n == 4 && strncasecmp(s, "http", 4) == 0) || (n == 5 && strncasecmp(s, "https", 5) == 0))
			p->web = true;
		else if (!((n == 3 && strncasecmp(s, "ftp", 3) == 0) || (n == 2 && strncasecmp(s, "ws", 2) == 0) ||
			   (n == 3 && strncasecmp(s, "wss", 3) == 0)))
			return false;
		auth = s + n + 1;
		while (*auth == '/' || *auth == '\\')
			auth++;
	}
	end = auth + strcspn(auth, "/\\?#");
	for (const char *c = auth; c < end; c++)
		if (*c == '@')
			at = c;
	if (at != NULL) {
		p->user = auth;
		p->user_len = (size_t)(at - auth);
		auth = at + 1;
	}
	if (*auth == '[') {
		const char *close = memchr(auth, ']', (size_t)(end - auth));

		if (close == NULL)
			return false;
		p->host_len = (size_t)(close - auth) + 1;
	} else {
		const char *colon = memchr(auth, ':', (size_t)(end - auth));

		p->host_len = (size_t)((colon != NULL ? colon : end) - auth);
	}
	p->host = auth;
	return p->host_len > 0;
}

static int hex_value(int c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The ideographic and fullwidth full stops browsers take for '.': their UTF-8 length at s, or 0. */
static size_t dot_lookalike(const unsigned char *s, size_t left)
{
	if (left >= 3 && ((s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x82) ||
			  (s[0] == 0xEF && s[1] == 0xBC && s[2] == 0x8E) ||
			  (s[0] == 0xEF && s[1] == 0xBD && s[2] == 0xA1)))
		return 3;
	return 0;
}

static bool host_char_ok(unsigned char c, bool bracketed)
{
	if (bracketed)
		return is_digit(c) || (c >= 'a' && c <= 'f') || c == ':' || c == '.' || c == '[' || c == ']';
	return c > ' ' && c != 0x7f && strchr("#%/:<>?@[\\]^|\"'", c) == NULL;
}

/* Percent-decode and lower-case a raw host into out; false when invalid or too long. */
static bool host_normalize(const char *raw, size_t len, char *out, size_t outlen)
{
	unsigned char buf[HOST_BUF * 3];
	size_t n = 0, o = 0;
	bool bracketed = len > 0 && raw[0] == '[';

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (n == sizeof(buf))
			return false;
		if (raw[i] == '%' && i + 2 < len && (hi = hex_value(raw[i + 1])) >= 0 &&
		    (lo = hex_value(raw[i + 2])) >= 0) {
			buf[n++] = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else {
			buf[n++] = (unsigned char)lower(raw[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t dl = dot_lookalike(buf + i, n - i);
		unsigned char c = dl > 0 ? '.' : (unsigned char)lower(buf[i]);

		if (dl > 0)
			i += dl - 1;
		if (!host_char_ok(c, bracketed))
			return false;
		if (o + 1 >= outlen || o == PHISHING_HOST_MAX)
			return false;
		out[o++] = (char)c;
	}
	if (o > 0 && out[o - 1] == '.')
		o--;
	out[o] = '\0';
	return o > 0;
}

bool phishing_url_host(const char *url, char *out, size_t outlen, bool *has_userinfo)
{
	struct url_parts p;

	if (has_userinfo != NULL)
		*has_userinfo = false;
	if (outlen == 0)
		return false;
	out[0] = '\0';
	if (!url_split(url, &p))
		return false;
	if (has_userinfo != NULL)
		*has_userinfo = p.user != NULL;
	if (!host_normalize(p.host, p.host_len, out, outlen)) {
		out[0] = '\0';
		return false;
	}
	return true;
}

/*
 * One part of a WHATWG IPv4 host: decimal, 0x hex or leading-0 octal.
 * Values past 2^32 are refused rather than wrapped.
 */
static bool ipv4_part(const char *s, size_t len, uint64_t *value, bool *plain)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		len -= 2;
	} else if (len >= 2 && s[0] == '0') {
		base = 8;
		s++;
		len--;
	}
	if (len == 0 && base == 10)
		return false;
	*plain = base == 10;
	for (size_t i = 0; i < len; i++) {
		int d = hex_value(s[i]);

		if (d < 0 || (unsigned)d >= base)
			return false;
		v = v * base + (unsigned)d;
		if (v > 0xFFFFFFFFu)
			return false;
	}
	*value = v;
	return true;
}

/* An IPv4 host in any form browsers accept; *plain when written as four decimal numbers. */
static bool ipv4_parse(const char *host, uint32_t *addr, bool *plain)
{
	uint64_t parts[4];
	size_t n = 0, len = strlen(host);
	const char *s = host;
	bool all_plain = true;
	uint64_t v;

	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0)
		return false;
	while (s <= host + len) {
		const char *dot = memchr(s, '.', (size_t)(host + len - s));
		size_t plen = (size_t)((dot != NULL ? dot : host + len) - s);
		bool p;

		if (n == 4 || !ipv4_part(s, plen, &parts[n], &p))
			return false;
		all_plain = all_plain && p;
		n++;
		if (dot == NULL)
			break;
		s = dot + 1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		if (parts[i] > 255)
			return false;
	if (parts[n - 1] >= (uint64_t)1 << (8 * (5 - n)))
		return false;
	v = parts[n - 1];
	for (size_t i = 0; i + 1 < n; i++)
		v += parts[i] << (8 * (3 - i));
	*addr = (uint32_t)v;
	*plain = all_plain && n == 4;
	return true;
}

static bool ipv6_parse(const char *host, struct in6_addr *a)
{
	char buf[64];
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	if (strcspn(host, "%") < len)
		len = strcspn(host, "%");           /* a zone id: "fe80::1%eth0" */
	if (len == 0 || len >= sizeof(buf) || memchr(host, ':', len) == NULL)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, a) == 1;
}

bool phishing_host_is_ip(const char *host)
{
	uint32_t v4;
	struct in6_addr v6;
	bool plain;

	return ipv4_parse(host, &v4, &plain) || ipv6_parse(host, &v6);
}

/*
 * A private, loopback or link-local address written plainly: a reader's
 * own machine or network ("http://192.168.1.1/", "http://[::1]:8080/"),
 * common in technical mail and useless to a phisher. Encoded forms
 * (decimal, hex, octal) are hiding something and never count as local.
 */
static bool host_is_plain_local(const char *host)
{
	uint32_t a;
	struct in6_addr v6;
	bool plain;

	if (ipv4_parse(host, &a, &plain))
		return plain && ((a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 ||
				 (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 || (a >> 16) == 0xA9FE);
	if (ipv6_parse(host, &v6))
		return IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_LINKLOCAL(&v6) || (v6.s6_addr[0] & 0xFE) == 0xFC;
	return false;
}

/* RFC 3492 bias adaptation. */
static uint32_t puny_adapt(uint32_t delta, uint32_t numpoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / 700 : delta / 2;
	delta += delta / numpoints;
	while (delta > ((36 - 1) * 26) / 2) {
		delta /= 36 - 1;
		k += 36;
	}
	return k + (36 * delta) / (delta + 38);
}

static int puny_digit(int c)
{
	c = lower(c);
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (is_digit(c))
		return c - '0' + 26;
	return -1;
}

/*
 * RFC 3492 section 6.2 decoding of one label without its "xn--", into at
 * most max code points; -1 on bad input or overflow, never out of bounds.
 */
static long punycode_decode(const char *in, size_t len, uint32_t *out, size_t max)
{
	uint32_t n = 128, i = 0, bias = 72;
	size_t outlen = 0, b = 0, pos;

	for (size_t j = 0; j < len; j++)
		if (in[j] == '-')
			b = j;
	for (size_t j = 0; j < b; j++) {
		if ((unsigned char)in[j] >= 0x80 || outlen == max)
			return -1;
		out[outlen++] = (unsigned char)lower(in[j]);
	}
	for (pos = b > 0 ? b + 1 : 0; pos < len;) {
		uint32_t oldi = i, w = 1;

		for (uint32_t k = 36;; k += 36) {
			int digit;
			uint32_t t;

			if (pos >= len || (digit = puny_digit(in[pos++])) < 0)
				return -1;
			if ((uint32_t)digit > (UINT32_MAX - i) / w)
				return -1;
			i += (uint32_t)digit * w;
			t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
			if ((uint32_t)digit < t)
				break;
			if (w > UINT32_MAX / (36 - t))
				return -1;
			w *= 36 - t;
		}
		bias = puny_adapt(i - oldi, (uint32_t)outlen + 1, oldi == 0);
		if (i / ((uint32_t)outlen + 1) > UINT32_MAX - n)
			return -1;
		n += i / ((uint32_t)outlen + 1);
		i %= (uint32_t)outlen + 1;
		if (outlen == max || n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF))
			return -1;
		memmove(out + i + 1, out + i, (outlen - i) * sizeof(*out));
		out[i++] = n;
		outlen++;
	}
	return (long)outlen;
}

/* UTF-8 to code points; a bad sequence is one U+FFFD. */
static size_t utf8_decode(const char *in, size_t len, uint32_t *out, size_t max)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, n = 0;

	while (i < len && n < max) {
		unsigned char c = s[i];
		size_t need = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 4;
		uint32_t cp = need == 1 ? c & 0x1F : need == 2 ? c & 0x0F : c & 0x07;
		size_t k;

		if (need == 0) {
			out[n++] = c;
			i++;
			continue;
		}
		for (k = 1; need < 4 && k <= need && i + k < len && (s[i + k] & 0xC0) == 0x80; k++)
			cp = cp << 6 | (s[i + k] & 0x3F);
		if (need == 4 || k <= need) {
			out[n++] = 0xFFFD;
			i++;
			continue;
		}
		out[n++] = cp;
		i += need + 1;
	}
	return n;
}

/* One host label as code points: punycode decoded for "xn--" labels. */
static size_t label_decode(const char *label, size_t len, uint32_t *out, size_t max)
{
	if (len > 4 && strncasecmp(label, "xn--", 4) == 0) {
		long n = punycode_decode(label + 4, len - 4, out, max);

		if (n >= 0)
			return (size_t)n;
	}
	return utf8_decode(label, len, out, max);
}

/* Non-ASCII letters that render like an ASCII one in a host name. */
static const struct {
	uint32_t cp;
	char ascii;
} confusables[] = {
	{ 0x0430, 'a' }, { 0x0435, 'e' }, { 0x043E, 'o' }, { 0x0440, 'p' }, { 0x0441, 'c' },
	{ 0x0443, 'y' }, { 0x0445, 'x' }, { 0x0456, 'i' }, { 0x0458, 'j' }, { 0x0455, 's' },
	{ 0x0501, 'd' }, { 0x04CF, 'l' }, { 0x04BB, 'h' }, { 0x051B, 'q' }, { 0x051D, 'w' },
	{ 0x043A, 'k' },                                                 /* Cyrillic */
	{ 0x03BF, 'o' }, { 0x03B1, 'a' }, { 0x03BD, 'v' }, { 0x03B9, 'i' }, { 0x03BA, 'k' },
	{ 0x03C1, 'p' }, { 0x03C5, 'u' },                                /* Greek */
	{ 0x0131, 'i' }, { 0x0142, 'l' }, { 0x0261, 'g' }, { 0x0251, 'a' }, { 0x0269, 'i' },
	{ 0x00E0, 'a' }, { 0x00E1, 'a' }, { 0x00E2, 'a' }, { 0x00E3, 'a' }, { 0x00E4, 'a' },
	{ 0x00E5, 'a' }, { 0x00E7, 'c' }, { 0x00E8, 'e' }, { 0x00E9, 'e' }, { 0x00EA, 'e' },
	{ 0x00EB, 'e' }, { 0x00EC, 'i' }, { 0x00ED, 'i' }, { 0x00EE, 'i' }, { 0x00EF, 'i' },
	{ 0x00F1, 'n' }, { 0x00F2, 'o' }, { 0x00F3, 'o' }, { 0x00F4, 'o' }, { 0x00F5, 'o' },
	{ 0x00F6, 'o' }, { 0x00F8, 'o' }, { 0x00F9, 'u' }, { 0x00FA, 'u' }, { 0x00FB, 'u' },
	{ 0x00FC, 'u' }, { 0x00FD, 'y' }, { 0x00FF, 'y' },               /* Latin with marks */
};

/* The ASCII character a code point passes for; '*' for one that imitates none. */
static char fold_cp(uint32_t cp)
{
	if (cp >= 0xFF01 && cp <= 0xFF5E)
		cp -= 0xFEE0;                    /* fullwidth forms */
	if (cp < 0x80) {
		switch (cp) {
		case '0': return 'o';
		case '1': return 'l';
		case '3': return 'e';
		case '5': return 's';
		default: return (char)lower((int)cp);
		}
	}
	for (size_t i = 0; i < sizeof(confusables) / sizeof(confusables[0]); i++)
		if (confusables[i].cp == cp)
			return confusables[i].ascii;
	return '*';
}

/* "rn" reads as "m" and "vv" as "w": collapsed in place. */
static void collapse_pairs(char *s)
{
	size_t o = 0;

	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] == 'r' && s[i + 1] == 'n') {
			s[o++] = 'm';
			i++;
		} else if (s[i] == 'v' && s[i + 1] == 'v') {
			s[o++] = 'w';
			i++;
		} else {
			s[o++] = s[i];
		}
	}
	s[o] = '\0';
}

/* The skeleton of code points cps into out (outlen > n). */
static void skeleton_cps(const uint32_t *cps, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = fold_cp(cps[i]);
	out[n] = '\0';
	collapse_pairs(out);
}

/* The skeleton of a dotted name, label by label, into out[HOST_BUF]. */
static void skeleton_name(const char *name, size_t len, char *out)
{
	uint32_t cps[HOST_BUF];
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < len && o < HOST_BUF - 1;) {
		size_t l = 0, n;

		while (i + l < len && name[i + l] != '.')
			l++;
		n = label_decode(name + i, l, cps, HOST_BUF - 1 - o);
		skeleton_cps(cps, n, out + o);
		o += strlen(out + o);
		i += l;
		if (i < len && o < HOST_BUF - 1) {
			out[o++] = '.';
			out[o] = '\0';
			i++;
		}
	}
}

static void name_view_init(struct name_view *v, const char *host)
{
	v->host = host;
	dmarc_org_domain(host, v->rd, sizeof(v->rd));
	v->label_len = strcspn(v->rd, ".");
	skeleton_name(v->rd, v->label_len, v->label_skel);
	skeleton_name(v->rd, strlen(v->rd), v->rd_skel);
}

static bool has_phishing_word(const char *host)
{
	for (size_t i = 0; phishing_words[i] != NULL; i++)
		if (strstr(host, phishing_words[i]) != NULL)
			return true;
	return false;
}

static bool letters_close(char a, char b)
{
	static const char *const pairs[] = { "il", "mn", "uv", "vw", "gq", NULL };

	for (size_t i = 0; pairs[i] != NULL; i++)
		if ((a == pairs[i][0] && b == pairs[i][1]) || (a == pairs[i][1] && b == pairs[i][0]))
			return true;
	return false;
}

enum edit_kind {
	EDIT_NONE,                   /* not exactly one edit apart */
	EDIT_FIRST,                  /* the one edit is on the first character */
	EDIT_CLOSE,                  /* a look-alike letter swapped, or a letter doubled or undoubled */
	EDIT_PLAIN,                  /* any other single edit */
};

/* One Damerau-Levenshtein edit between a and b, and how visible it is. */
static enum edit_kind one_edit(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), p = 0;

	if (la < lb) {
		const char *t = a;

		a = b;
		b = t;
		la = strlen(a);
		lb = strlen(b);
	}
	while (p < lb && a[p] == b[p])
		p++;
	if (la == lb) {
		if (p == la)
			return EDIT_NONE;
		if (strcmp(a + p + 1, b + p + 1) == 0)
			return p == 0 ? EDIT_FIRST : letters_close(a[p], b[p]) ? EDIT_CLOSE : EDIT_PLAIN;
		if (p + 1 < la && a[p] == b[p + 1] && a[p + 1] == b[p] && strcmp(a + p + 2, b + p + 2) == 0)
			return p == 0 ? EDIT_FIRST : EDIT_PLAIN;
		return EDIT_NONE;
	}
	if (la != lb + 1 || strcmp(a + p + 1, b + p) != 0)
		return EDIT_NONE;
	if (p == 0)
		return EDIT_FIRST;
	return (p > 0 && a[p - 1] == a[p]) || a[p + 1] == a[p] ? EDIT_CLOSE : EDIT_PLAIN;
}

/*
 * One edit away from the brand's label. An edit on the first letter is
 * not counted (the eye anchors there, and "gmail"/"email",
 * "binance"/"finance" are honest). A short brand name is often one edit
 * from an English word ("apple"/"apply", "chase"/"chose", "adobe"/"abode"),
 * so for those only a look-alike edit (paypai, amazom, paypall) counts, or
 * any edit on a host that also carries a phishing word.
 */
static bool one_edit_lookalike(const struct name_view *h, const struct name_view *b)
{
	size_t blen = strlen(b->label_skel);
	enum edit_kind e;

	if (blen < MIN_EDIT_BRAND)
		return false;
	e = one_edit(h->label_skel, b->label_skel);
	if (e == EDIT_NONE || e == EDIT_FIRST)
		return false;
	return blen >= SHORT_BRAND || e == EDIT_CLOSE || has_phishing_word(h->host);
}

/* The brand's whole domain inside host, followed by more name ("paypal.com.evil.ru", "paypal.com-x.net"). */
static bool brand_domain_embedded(const char *host, const char *brand)
{
	size_t bl = strlen(brand);

	for (const char *s = strstr(host, brand); s != NULL; s = strstr(s + 1, brand)) {
		bool starts = s == host || s[-1] == '.' || s[-1] == '-';

		if (starts && (s[bl] == '.' || s[bl] == '-'))
			return true;
	}
	return false;
}

/* tok (len bytes) in s as whole '-' separated words ("paypal" in "secure-paypal-id"). */
static bool has_words(const char *s, const char *tok, size_t len)
{
	for (const char *p = strstr(s, tok); p != NULL && len > 0; p = strstr(p + 1, tok))
		if ((p == s || p[-1] == '-') && (p[len] == '\0' || p[len] == '-'))
			return true;
	return false;
}

/*
 * The brand's name as whole '-' separated words of a host label
 * ("paypal-login.com", "secure.paypal.com.evil.ru"). A common word as
 * brand name ("apple-pie-recipes.example") makes the literal name weak
 * evidence, so it counts only next to a phishing word or with the brand's
 * whole domain embedded; a name that merely looks like the brand's
 * ("paypa1-online.net", a homograph) counts by itself.
 */
static bool brand_token(const struct name_view *h, const struct name_view *b)
{
	uint32_t cps[HOST_BUF];
	char skel[HOST_BUF], raw[HOST_BUF], name[HOST_BUF];
	const char *host = h->host;
	bool weak = false;

	memcpy(name, b->rd, b->label_len);
	name[b->label_len] = '\0';
	for (size_t i = 0, len = strlen(host); i < len;) {
		size_t l = strcspn(host + i, "."), n = label_decode(host + i, l, cps, HOST_BUF - 1);

		for (size_t k = 0; k < n; k++)
			raw[k] = cps[k] < 0x80 ? (char)lower((int)cps[k]) : '*';
		raw[n] = '\0';
		skeleton_cps(cps, n, skel);
		if (has_words(skel, b->label_skel, strlen(b->label_skel))) {
			if (!has_words(raw, name, b->label_len))
				return true;
			weak = true;
		}
		i += l + 1;
	}
	return weak && (has_phishing_word(host) || brand_domain_embedded(host, b->host));
}

/*
 * The lookalike decision on prepared views. The brand's own name under
 * another public suffix ("amazon.de", "paypal.co.uk") is usually the brand
 * itself abroad and counts only when that suffix is itself a lookalike
 * ("paypal.c0m").
 */
static bool view_imitates(const struct name_view *h, const struct name_view *b)
{
	if (host_within(h->host, b->host) || strcmp(h->rd, b->rd) == 0)
		return false;
	if (h->label_len == b->label_len && memcmp(h->rd, b->rd, b->label_len) == 0)
		return strcmp(h->rd_skel, b->rd_skel) == 0;
	if (strcmp(h->label_skel, b->label_skel) == 0)
		return true;
	return one_edit_lookalike(h, b) || brand_token(h, b);
}

bool phishing_lookalike(const char *host, const char *brand)
{
	struct name_view h, b;

	if (strlen(host) > PHISHING_HOST_MAX || strlen(brand) > PHISHING_HOST_MAX || *host == '\0' || *brand == '\0')
		return false;
	name_view_init(&h, host);
	name_view_init(&b, brand);
	return view_imitates(&h, &b);
}

/* ---- the engine ---- */

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
	if (!is_alpha(*tld) && (unsigned char)*tld < 0x80)
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
		char c = (char)lower(text[i]);

		if (c == '.') {
			if (i == 0 || text[i - 1] == '.' || i + 1 == len)
				return false;
			dots++;
		} else if (!is_alpha(c) && !is_digit(c) && c != '-') {
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
	if (phishing_url_host(buf, host, hostlen, NULL))
		return true;
	if (strchr(buf, '@') != NULL)
		return false;
	return bare_host_text(buf, host, hostlen);
}

static bool is_shortener(const struct phishing *ph, const char *host)
{
	for (size_t i = 0; i < ph->nshorteners; i++)
		if (host_within(host, ph->shorteners[i]))
			return true;
	return false;
}

/* The first brand host imitates; NULL for none, or when host belongs to a brand. */
static const struct brand *imitated_brand(const struct phishing *ph, const char *host)
{
	struct name_view h;

	for (size_t i = 0; i < ph->nbrands; i++)
		if (host_within(host, ph->brands[i].domain) || host_within(host, ph->brands[i].view.rd))
			return NULL;
	name_view_init(&h, host);
	for (size_t i = 0; i < ph->nbrands; i++)
		if (view_imitates(&h, &ph->brands[i].view))
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
		if (host_within(host, redirectors[i]))
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
	if (!phishing_url_host(url, host, sizeof(host), NULL))
		return;
	if (kind == HTML_LINK_ANCHOR || kind == HTML_LINK_AREA)
		check_mismatch(sc, url, text, host);
	if (!sc->found[SYM_USERINFO] && url_split(url, &p) && userinfo_deceives(&p))
		scan_found(sc, SYM_USERINFO, url, "userinfo before host %s", host);
	if (strcmp(host, sc->last_host) == 0)
		return;
	memcpy(sc->last_host, host, strlen(host) + 1);
	if (!sc->found[SYM_IP_LINK] && phishing_host_is_ip(host) && !host_is_plain_local(host))
		scan_found(sc, SYM_IP_LINK, url, "link to an IP address");
	if (!sc->found[SYM_SHORTENER] && is_shortener(ph, host))
		scan_found(sc, SYM_SHORTENER, url, "link through shortener %s", host);
	if (!sc->found[SYM_LOOKALIKE] && !phishing_host_is_ip(host) && (b = imitated_brand(ph, host)) != NULL)
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
	return !is_alpha(prev) && !is_digit(prev) && prev != '\0' && strchr("./@-_", prev) == NULL;
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
	if (len == 0 || len > PHISHING_HOST_MAX)
		return NULL;
	s = xstrndup(d, len);
	for (char *c = s; *c != '\0'; c++)
		*c = (char)lower(*c);
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
		name_view_init(&b->view, b->domain);
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
