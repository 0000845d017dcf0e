/*
 * Brand lookalikes (see content/lookalike.h): punycode decoding, folding
 * of confusable characters to skeletons, one-edit matching and the
 * brand-name-as-a-word rule.
 */
#include "content/lookalike.h"

#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "content/dmarc.h"

#define HOST_BUF       (URL_HOST_MAX + 1)
#define SHORT_BRAND    7         /* brand labels shorter than this are often one edit from a word */
#define MIN_EDIT_BRAND 5         /* brand labels shorter than this get no one-edit matching */

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
	c = g_ascii_tolower((char)c);
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (g_ascii_isdigit(c))
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
		out[outlen++] = (unsigned char)g_ascii_tolower(in[j]);
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
		default: return g_ascii_tolower((char)cp);
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

void lookalike_view_init(struct lookalike_view *v, const char *host)
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
static bool one_edit_lookalike(const struct lookalike_view *h, const struct lookalike_view *b)
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
static bool brand_token(const struct lookalike_view *h, const struct lookalike_view *b)
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
			raw[k] = cps[k] < 0x80 ? g_ascii_tolower((char)cps[k]) : '*';
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
bool lookalike_view_imitates(const struct lookalike_view *h, const struct lookalike_view *b)
{
	if (url_host_within(h->host, b->host) || strcmp(h->rd, b->rd) == 0)
		return false;
	if (h->label_len == b->label_len && memcmp(h->rd, b->rd, b->label_len) == 0)
		return strcmp(h->rd_skel, b->rd_skel) == 0;
	if (strcmp(h->label_skel, b->label_skel) == 0)
		return true;
	return one_edit_lookalike(h, b) || brand_token(h, b);
}

bool lookalike_of(const char *host, const char *brand)
{
	struct lookalike_view h, b;

	if (strlen(host) > URL_HOST_MAX || strlen(brand) > URL_HOST_MAX || *host == '\0' || *brand == '\0')
		return false;
	lookalike_view_init(&h, host);
	lookalike_view_init(&b, brand);
	return lookalike_view_imitates(&h, &b);
}
