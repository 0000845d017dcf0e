/*
 * The Bayesian filter's tokeniser (see tokenize.h for what it produces).
 * Every loop is bounded by the input's length and stops early once the
 * message has produced max_tokens tokens; no token text is ever longer
 * than TOKENIZE_TOKEN_MAX bytes.
 */
#include "content/tokenize.h"

#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/html.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/hash.h"

#define OSB_HISTORY (TOKENIZE_OSB_WINDOW - 1)
#define WORD_BUF (TOKENIZE_WORD_MAX + 8)     /* a word plus one UTF-8 sequence of slack */
#define HOST_MAX 100                         /* longer host names become one "u:longhost" */
#define RAW_HEADER_SCAN_MAX (256 * 1024)     /* bytes of the header block looked at */
#define HEADER_VALUE_MAX 512
#define URL_PATH_WORDS 12                    /* path and query words of one URL */
#define URL_WORD_MAX 20
#define MARKUP_TAGS_MAX 4000                 /* HTML tags of one part looked at */
#define MARKUP_TAG_SCAN 512                  /* bytes of one tag looked at for attributes */

struct tok_ctx {
	size_t max;
	size_t count;
	tokenize_emit_fn emit;
	void *arg;
	/* OSB history of the current text: the last words, newest at hist[(head + OSB_HISTORY - 1) % ...] */
	char hist[OSB_HISTORY][WORD_BUF];
	size_t hist_len[OSB_HISTORY];
	size_t nhist;
	size_t head;
};

static bool tok_full(const struct tok_ctx *c)
{
	return c->count >= c->max;
}

static void tok_emit(struct tok_ctx *c, const char *prefix, const char *text, size_t len)
{
	char buf[TOKENIZE_TOKEN_MAX];
	size_t plen = strlen(prefix);

	if (tok_full(c) || plen + len >= sizeof(buf))
		return;
	memcpy(buf, prefix, plen);
	memcpy(buf + plen, text, len);
	c->emit(c->arg, buf, plen + len);
	c->count++;
}

static void tok_emit_str(struct tok_ctx *c, const char *prefix, const char *text)
{
	tok_emit(c, prefix, text, strlen(text));
}

/* "a~b" for neighbours, one more '~' for each word skipped between them. */
static void tok_emit_pair(struct tok_ctx *c, const char *prefix, const char *a, size_t alen,
			  size_t distance, const char *b, size_t blen)
{
	char buf[TOKENIZE_TOKEN_MAX];
	size_t n = 0;

	if (alen + distance + blen >= sizeof(buf))
		return;
	memcpy(buf, a, alen);
	n = alen;
	memset(buf + n, '~', distance);
	n += distance;
	memcpy(buf + n, b, blen);
	n += blen;
	tok_emit(c, prefix, buf, n);
}

static void osb_reset(struct tok_ctx *c)
{
	c->nhist = 0;
	c->head = 0;
}

/* One word of a text: the word itself, then (osb) its pairs with the words before it. */
static void word_out(struct tok_ctx *c, const char *prefix, const char *w, size_t len, bool osb)
{
	size_t slot;

	tok_emit(c, prefix, w, len);
	if (!osb)
		return;
	for (size_t d = 1; d <= c->nhist; d++) {
		slot = (c->head + OSB_HISTORY - d) % OSB_HISTORY;
		tok_emit_pair(c, prefix, c->hist[slot], c->hist_len[slot], d, w, len);
	}
	memcpy(c->hist[c->head], w, len);
	c->hist_len[c->head] = len;
	c->head = (c->head + 1) % OSB_HISTORY;
	if (c->nhist < OSB_HISTORY)
		c->nhist++;
}

static bool trim_char(char ch)
{
	return ch == '\'' || ch == '-' || ch == '_';
}

/* A finished word: trimmed, length-checked, numbers bucketed. */
static void word_finish(struct tok_ctx *c, const char *prefix, char *w, size_t len, bool too_long, bool osb)
{
	size_t start = 0, digits = 0;
	bool dollar;
	char bucket[16];
	int n;

	if (too_long)
		return;
	while (start < len && trim_char(w[start]))
		start++;
	while (len > start && trim_char(w[len - 1]))
		len--;
	w += start;
	len -= start;
	if (len < TOKENIZE_WORD_MIN)
		return;
	dollar = w[0] == '$';
	for (size_t i = dollar ? 1 : 0; i < len && w[i] >= '0' && w[i] <= '9'; i++)
		digits++;
	if (digits > 0 && digits + (dollar ? 1 : 0) == len) {
		n = snprintf(bucket, sizeof(bucket), "%sn#%zu", dollar ? "$" : "", digits);
		word_out(c, prefix, bucket, (size_t)n, osb);
		return;
	}
	word_out(c, prefix, w, len, osb);
}

/* One code point of UTF-8 at s (n > 0 bytes left); malformed input is U+FFFD, 1 byte. */
static size_t utf8_decode(const unsigned char *s, size_t n, gunichar *cp)
{
	unsigned char b = s[0];
	size_t need;
	gunichar v;

	*cp = 0xFFFD;
	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	if (b >= 0xc2 && b <= 0xdf) {
		need = 1;
		v = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		need = 2;
		v = b & 0x0f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		need = 3;
		v = b & 0x07;
	} else {
		return 1;
	}
	if (n <= need)
		return 1;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 1;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if ((need == 2 && v < 0x800) || (need == 3 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 1;
	*cp = v;
	return need + 1;
}

static bool word_char(gunichar cp)
{
	if (cp < 0x80)
		return g_ascii_isalnum((char)cp) || cp == '$' || cp == '\'' || cp == '-' || cp == '_';
	return g_unichar_isalnum(cp);
}

/* Scripts written without spaces between words: Han, kana, Hangul. */
static bool cjk_char(gunichar cp)
{
	return (cp >= 0x3040 && cp <= 0x30ff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
	       (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0xac00 && cp <= 0xd7af) ||
	       (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x20000 && cp <= 0x2ffff);
}

/*
 * A run of CJK text has no spaces to split at (as one "word" it would be
 * too long and lost): each pair of neighbouring characters is a token,
 * the usual stand-in for word segmentation in statistical filters.
 */
static void cjk_pair(struct tok_ctx *c, const char *prefix, gunichar prev, gunichar cp)
{
	char pair[16];
	int n = g_unichar_to_utf8(prev, pair);

	n += g_unichar_to_utf8(cp, pair + n);
	tok_emit(c, prefix, pair, (size_t)n);
}

/* The words of UTF-8 text, each case-folded; OSB pairs within this text only. */
static void text_words(struct tok_ctx *c, const char *prefix, const char *text, size_t len, bool osb)
{
	const unsigned char *s = (const unsigned char *)text;
	char w[WORD_BUF];
	size_t wlen = 0, i = 0, k;
	bool too_long = false;
	gunichar cp, prev_cjk = 0;

	osb_reset(c);
	while (i < len && !tok_full(c)) {
		i += utf8_decode(s + i, len - i, &cp);
		if (cjk_char(cp)) {
			if (wlen > 0 || too_long)
				word_finish(c, prefix, w, wlen, too_long, osb);
			wlen = 0;
			too_long = false;
			if (prev_cjk != 0)
				cjk_pair(c, prefix, prev_cjk, cp);
			prev_cjk = cp;
			continue;
		}
		prev_cjk = 0;
		if (!word_char(cp)) {
			if (wlen > 0 || too_long)
				word_finish(c, prefix, w, wlen, too_long, osb);
			wlen = 0;
			too_long = false;
			continue;
		}
		if (too_long)
			continue;
		cp = cp < 0x80 ? (gunichar)g_ascii_tolower((char)cp) : g_unichar_tolower(cp);
		if (wlen + (size_t)g_unichar_to_utf8(cp, NULL) > TOKENIZE_WORD_MAX) {
			too_long = true;
			continue;
		}
		k = (size_t)g_unichar_to_utf8(cp, w + wlen);
		wlen += k;
	}
	if ((wlen > 0 || too_long) && !tok_full(c))
		word_finish(c, prefix, w, wlen, too_long, osb);
}

static bool prefix_ci(const char *s, size_t len, const char *p)
{
	size_t n = strlen(p);

	return len >= n && strncasecmp(s, p, n) == 0;
}

static bool ipv4_literal(const char *host)
{
	for (const char *p = host; *p; p++)
		if (!(*p == '.' || (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

/*
 * Words of a URL's path and query ("remove", "cgi-bin", "unsubscribe"):
 * what a link does says as much as where it goes. At most
 * URL_PATH_WORDS per URL.
 */
static void url_path_tokens(struct tok_ctx *c, const char *path, size_t len)
{
	char w[URL_WORD_MAX + 1];
	size_t wlen = 0, words = 0;

	for (size_t i = 0; i <= len && words < URL_PATH_WORDS; i++) {
		char ch = i < len ? g_ascii_tolower(path[i]) : '/';

		if (i < len && (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'))
			break;
		if (g_ascii_isalpha(ch) && wlen < URL_WORD_MAX) {
			w[wlen++] = ch;
			continue;
		}
		if (g_ascii_isalpha(ch))
			continue;
		if (wlen >= TOKENIZE_WORD_MIN) {
			tok_emit(c, "u:p:", w, wlen);
			words++;
		}
		wlen = 0;
	}
}

/* The host of an absolute URL (or "www." address) as u: tokens, then its path words; anything else is ignored. */
static void url_tokens(struct tok_ctx *c, const char *url, size_t len)
{
	static const char *const schemes[] = { "http://", "https://", "ftp://", "//" };
	char host[HOST_MAX + 1];
	size_t i = 0, end, at, hlen = 0;
	bool absolute = false;

	while (i < len && (url[i] == ' ' || url[i] == '\t'))
		i++;
	for (size_t s = 0; s < sizeof(schemes) / sizeof(schemes[0]) && !absolute; s++) {
		if (prefix_ci(url + i, len - i, schemes[s])) {
			i += strlen(schemes[s]);
			absolute = true;
		}
	}
	if (!absolute && !prefix_ci(url + i, len - i, "www."))
		return;
	end = i;
	while (end < len && url[end] != '/' && url[end] != '?' && url[end] != '#' && url[end] != '\\' &&
	       url[end] != ' ' && url[end] != '\t' && url[end] != '\r' && url[end] != '\n')
		end++;
	at = i;
	for (size_t j = i; j < end; j++)
		if (url[j] == '@')
			at = j + 1;
	for (size_t j = at; j < end && url[j] != ':'; j++) {
		char ch = g_ascii_tolower(url[j]);

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
			break;
		if (hlen == HOST_MAX) {
			tok_emit_str(c, "u:", "longhost");
			return;
		}
		host[hlen++] = ch;
	}
	while (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	host[hlen] = '\0';
	if (hlen == 0 || strchr(host, '.') == NULL || host[0] == '.')
		return;
	if (ipv4_literal(host)) {
		tok_emit_str(c, "u:", "ip");
	} else {
		tok_emit(c, "u:", host, hlen);
		tok_emit_str(c, "u:d:", tokenize_registrable_domain(host));
	}
	url_path_tokens(c, url + end, len - end);
}

/* http://, https:// and www. addresses written in plain text. */
static void text_urls(struct tok_ctx *c, const char *text, size_t len)
{
	for (size_t i = 0; i < len && !tok_full(c); i++) {
		char ch = text[i];
		size_t end;

		if (ch != 'h' && ch != 'H' && ch != 'w' && ch != 'W')
			continue;
		if (i > 0 && (g_ascii_isalnum(text[i - 1]) || text[i - 1] == '.' || text[i - 1] == '/'))
			continue;
		if (!prefix_ci(text + i, len - i, "http://") && !prefix_ci(text + i, len - i, "https://") &&
		    !prefix_ci(text + i, len - i, "www."))
			continue;
		end = i;
		while (end < len && !g_ascii_isspace(text[end]) && text[end] != '<' && text[end] != '>' &&
		       text[end] != '"' && text[end] != '\'')
			end++;
		url_tokens(c, text + i, end - i);
		i = end;
	}
}

const char *tokenize_registrable_domain(const char *host)
{
	static const char *const second_levels[] = {
		"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "mil", "ltd", "plc", "sch", "nom",
	};
	const char *dots[3] = { NULL, NULL, NULL };   /* the last three dots, last first */
	size_t n = 0, len = strlen(host);
	const char *sld;
	size_t sld_len;

	for (size_t i = len; i > 0 && n < 3; i--)
		if (host[i - 1] == '.')
			dots[n++] = host + i - 1;
	if (n < 2)
		return host;
	/* dots[0] precedes the TLD, dots[1] the second-level label. */
	sld = dots[1] + 1;
	sld_len = (size_t)(dots[0] - sld);
	if (strlen(dots[0] + 1) == 2) {
		for (size_t i = 0; i < sizeof(second_levels) / sizeof(second_levels[0]); i++) {
			if (strlen(second_levels[i]) == sld_len && memcmp(sld, second_levels[i], sld_len) == 0)
				return n == 3 ? dots[2] + 1 : host;
		}
	}
	return dots[1] + 1;
}

long tokenize_raw_header(const unsigned char *raw, size_t raw_len, const char *name, char *buf, size_t size)
{
	const char *s = (const char *)raw;
	size_t len = raw_len < RAW_HEADER_SCAN_MAX ? raw_len : RAW_HEADER_SCAN_MAX;
	size_t nlen = strlen(name), i = 0, out = 0;
	bool found = false;

	if (size == 0)
		return -1;
	buf[0] = '\0';
	while (i < len) {
		size_t eol = i;

		while (eol < len && s[eol] != '\n')
			eol++;
		if (eol == i || (eol == i + 1 && s[i] == '\r'))
			break;      /* the blank line ending the header block */
		if (found) {
			if (s[i] != ' ' && s[i] != '\t')
				break;
			if (out + 1 < size)
				buf[out++] = ' ';
		}
		if (!found && eol - i > nlen && strncasecmp(s + i, name, nlen) == 0) {
			size_t j = i + nlen;

			while (j < eol && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j < eol && s[j] == ':') {
				found = true;
				i = j + 1;
			}
		}
		if (found) {
			size_t j = i;

			while (j < eol && (s[j] == ' ' || s[j] == '\t'))
				j++;
			for (; j < eol && s[j] != '\r'; j++)
				if (out + 1 < size)
					buf[out++] = s[j];
		}
		i = eol + 1;
	}
	buf[out] = '\0';
	return found ? (long)out : -1;
}

/* From: display name words, the address's domain and its registrable domain. */
static void from_tokens(struct tok_ctx *c, const char *from)
{
	const char *lt, *at, *dom;
	char domain[HOST_MAX + 1];
	size_t n = 0;

	if (from == NULL || *from == '\0') {
		tok_emit_str(c, "h:", "from:none");
		return;
	}
	lt = strchr(from, '<');
	if (lt != NULL)
		text_words(c, "h:fn:", from, (size_t)(lt - from), false);
	at = strchr(lt != NULL ? lt : from, '@');
	if (at == NULL) {
		tok_emit_str(c, "h:", "from:noaddr");
		return;
	}
	for (dom = at + 1; *dom && *dom != '>' && *dom != ',' && *dom != ' ' && *dom != '"' && n < HOST_MAX; dom++)
		domain[n++] = g_ascii_tolower(*dom);
	while (n > 0 && domain[n - 1] == '.')
		n--;
	domain[n] = '\0';
	if (n == 0)
		return;
	tok_emit(c, "h:fd:", domain, n);
	tok_emit_str(c, "h:fr:", tokenize_registrable_domain(domain));
}

static void to_tokens(struct tok_ctx *c, const char *to)
{
	size_t n = 0;

	for (const char *p = to; p != NULL && *p; p++)
		if (*p == '@')
			n++;
	tok_emit_str(c, "h:", n == 0 ? "to:0" : n == 1 ? "to:1" : n == 2 ? "to:2" : n <= 5 ? "to:few" : "to:many");
}

static void lower_token(struct tok_ctx *c, const char *prefix, const char *value)
{
	char buf[TOKENIZE_WORD_MAX + 1];
	size_t n = 0;

	for (; value[n] && n < TOKENIZE_WORD_MAX; n++)
		buf[n] = g_ascii_tolower(value[n]);
	tok_emit(c, prefix, buf, n);
}

/* Root type, charsets, attachment types and extensions. */
static void structure_tokens(struct tok_ctx *c, const struct mime_message *m)
{
	char type[TOKENIZE_WORD_MAX * 2 + 2];

	if (m->nparts == 0) {
		tok_emit_str(c, "h:", "ct:none");
		return;
	}
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		snprintf(type, sizeof(type), "%.40s/%.40s", p->type ? p->type : "", p->subtype ? p->subtype : "");
		if (i == 0)
			lower_token(c, "h:ct:", type);
		if (p->charset != NULL)
			lower_token(c, "h:cs:", p->charset);
		if (p->is_attachment) {
			const char *dot = p->filename != NULL ? strrchr(p->filename, '.') : NULL;

			lower_token(c, "h:at:", type);
			if (dot != NULL && strlen(dot + 1) <= 10)
				lower_token(c, "h:ax:", dot + 1);
		}
	}
}

static void header_tokens(struct tok_ctx *c, const struct mime_message *m, const unsigned char *raw, size_t raw_len)
{
	char value[HEADER_VALUE_MAX];
	long n;

	from_tokens(c, m->from);
	to_tokens(c, m->to);
	structure_tokens(c, m);
	if ((n = tokenize_raw_header(raw, raw_len, "X-Mailer", value, sizeof(value))) >= 0)
		text_words(c, "h:xm:", value, (size_t)n, false);
	if ((n = tokenize_raw_header(raw, raw_len, "User-Agent", value, sizeof(value))) >= 0)
		text_words(c, "h:ua:", value, (size_t)n, false);
}

/* Attributes whose presence on a tag is worth a token: how HTML mail is dressed up. */
static bool markup_attr_kept(const char *name, size_t len)
{
	static const char *const kept[] = { "color", "bgcolor", "size", "face", "src", "href", "style",
					    "width", "height", "align", "border", "background", "class" };

	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		if (strlen(kept[i]) == len && strncasecmp(name, kept[i], len) == 0)
			return true;
	return false;
}

/* One tag's attribute names from s (just past the tag name) to '>', bounded. */
static void markup_attrs(struct tok_ctx *c, const char *tag, size_t tlen, const char *s, size_t len)
{
	char buf[64];
	size_t i = 0, limit = len < MARKUP_TAG_SCAN ? len : MARKUP_TAG_SCAN;

	while (i < limit && s[i] != '>') {
		size_t start;

		if (!g_ascii_isalpha(s[i])) {
			/* Skip quoted values whole: their text is not an attribute name. */
			if (s[i] == '"' || s[i] == '\'') {
				char q = s[i++];

				while (i < limit && s[i] != q)
					i++;
			}
			i++;
			continue;
		}
		start = i;
		while (i < limit && (g_ascii_isalnum(s[i]) || s[i] == '-'))
			i++;
		if (markup_attr_kept(s + start, i - start)) {
			int n = snprintf(buf, sizeof(buf), "%.*s.%.*s", (int)tlen, tag, (int)(i - start), s + start);

			if (n > 0 && (size_t)n < sizeof(buf)) {
				for (int k = 0; k < n; k++)
					buf[k] = g_ascii_tolower(buf[k]);
				tok_emit(c, "t:", buf, (size_t)n);
			}
		}
	}
}

/*
 * The markup of an HTML part as tokens: "t:font", "t:font.color",
 * "t:comment". Spam dresses its text (fonts, colours, tables, images,
 * comments that break words); most ham is plain or simply formatted.
 */
static void markup_tokens(struct tok_ctx *c, const char *html, size_t len)
{
	size_t tags = 0;

	for (size_t i = 0; i + 1 < len && tags < MARKUP_TAGS_MAX && !tok_full(c); i++) {
		size_t start, tlen;
		char tag[16];

		if (html[i] != '<')
			continue;
		if (len - i >= 4 && memcmp(html + i, "<!--", 4) == 0) {
			tok_emit_str(c, "t:", "comment");
			tags++;
			continue;
		}
		start = i + 1 + (html[i + 1] == '/');
		tlen = 0;
		while (start + tlen < len && g_ascii_isalnum(html[start + tlen]) && tlen < sizeof(tag) - 1) {
			tag[tlen] = g_ascii_tolower(html[start + tlen]);
			tlen++;
		}
		if (tlen == 0 || html[start] == '/' || start != i + 1)
			continue;
		tags++;
		tok_emit(c, "t:", tag, tlen);
		markup_attrs(c, tag, tlen, html + start + tlen, len - start - tlen);
	}
}

/*
 * How the text is written, beside what it says: words in capitals
 * ("C:FREE") and runs of exclamation marks.
 */
static void shape_tokens(struct tok_ctx *c, const char *prefix, const char *text, size_t len)
{
	char tok[TOKENIZE_WORD_MAX + 4];
	size_t i = 0;

	while (i < len && !tok_full(c)) {
		size_t start = i, upper = 0;

		if (text[i] == '!') {
			while (i < len && text[i] == '!')
				i++;
			if (i - start >= 2)
				tok_emit_str(c, prefix, i - start >= 3 ? "p:!!!" : "p:!!");
			continue;
		}
		if (!g_ascii_isalpha(text[i])) {
			i++;
			continue;
		}
		while (i < len && g_ascii_isalpha(text[i])) {
			upper += g_ascii_isupper(text[i]) ? 1 : 0;
			i++;
		}
		if (upper == i - start && upper >= TOKENIZE_WORD_MIN && upper <= TOKENIZE_WORD_MAX) {
			int n = snprintf(tok, sizeof(tok), "C:%.*s", (int)upper, text + start);

			tok_emit(c, prefix, tok, (size_t)n);
		}
	}
}

/* The readable text parts: URLs first (links, then addresses in the text), then words. */
static void body_tokens(struct tok_ctx *c, const struct mime_message *m)
{
	for (size_t i = 0; i < m->nparts && !tok_full(c); i++) {
		const struct mime_part *p = &m->parts[i];
		const char *text;
		size_t len;

		if (p->is_attachment || p->type == NULL || strcmp(p->type, "text") != 0 || p->text == NULL)
			continue;
		if (p->html != NULL) {
			for (size_t l = 0; l < p->html->nlinks; l++)
				url_tokens(c, p->html->links[l].url, strlen(p->html->links[l].url));
			markup_tokens(c, p->text, p->text_len);
			text = p->html->text;
			len = p->html->text_len;
		} else {
			text = p->text;
			len = p->text_len;
		}
		text_urls(c, text, len);
		shape_tokens(c, "", text, len);
		text_words(c, "", text, len, true);
	}
}

size_t tokenize_message_each(const struct mime_message *m, const unsigned char *raw, size_t raw_len,
			     size_t max_tokens, tokenize_emit_fn emit, void *arg)
{
	struct tok_ctx *c = xcalloc(1, sizeof(*c));
	size_t count;

	c->max = max_tokens > 0 ? max_tokens : TOKENIZE_MAX_TOKENS_DEFAULT;
	c->emit = emit;
	c->arg = arg;
	header_tokens(c, m, raw, raw_len);
	if (m->subject != NULL) {
		shape_tokens(c, "s:", m->subject, strlen(m->subject));
		text_words(c, "s:", m->subject, strlen(m->subject), true);
	}
	body_tokens(c, m);
	count = c->count;
	free(c);
	return count;
}

uint64_t token_hash(const char *token, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)token[i];
		h *= 0x100000001b3ULL;
	}
	/* FNV's low bits alone are weak for an open-addressed table. */
	h = hash_mix64(h);
	return h != 0 ? h : 1;
}

struct hash_collect {
	uint64_t *hashes;
	size_t count;
	size_t cap;
};

static void collect_hash(void *arg, const char *token, size_t len)
{
	struct hash_collect *hc = arg;

	if (hc->count < hc->cap)
		hc->hashes[hc->count++] = token_hash(token, len);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void tokenize_message(const struct mime_message *m, const unsigned char *raw, size_t raw_len,
		      size_t max_tokens, struct token_set *out)
{
	struct hash_collect hc;
	size_t n = 0;

	hc.cap = max_tokens > 0 ? max_tokens : TOKENIZE_MAX_TOKENS_DEFAULT;
	hc.hashes = xcalloc(hc.cap, sizeof(uint64_t));
	hc.count = 0;
	tokenize_message_each(m, raw, raw_len, hc.cap, collect_hash, &hc);
	qsort(hc.hashes, hc.count, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < hc.count; i++)
		if (n == 0 || hc.hashes[i] != hc.hashes[n - 1])
			hc.hashes[n++] = hc.hashes[i];
	out->hashes = hc.hashes;
	out->count = n;
}

void token_set_free(struct token_set *s)
{
	free(s->hashes);
	s->hashes = NULL;
	s->count = 0;
}
