/*
 * DKIM text parsers: the tag-list syntax shared by signatures and key
 * records (RFC 6376 3.2), the DKIM-Signature value (3.5) and the key
 * record (3.6.1). Pure functions over bounded buffers, kept apart from
 * the crypto so the fuzzer reaches them directly.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "content/dkim.h"
#include "core/base64.h"

#define DKIM_TAGS_MAX 64

static bool dkim_is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool dkim_tag_name_ok(const char *n, size_t len)
{
	if (len == 0 || !isalpha((unsigned char)n[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_')
			return false;
	return true;
}

/* Duplicate tags make the whole list invalid (RFC 6376 3.2). */
int dkim_taglist_parse(const char *s, size_t len, dkim_tag_fn fn, void *arg)
{
	const char *seen[DKIM_TAGS_MAX];
	size_t seenlen[DKIM_TAGS_MAX], nseen = 0, pos = 0;

	while (pos <= len) {
		size_t end = pos, eq, ns, ne, vs, ve;
		int rc;

		while (end < len && s[end] != ';')
			end++;
		ns = pos;
		while (ns < end && dkim_is_fws(s[ns]))
			ns++;
		if (ns == end) {
			/* only an empty last spec (a trailing ';') is allowed */
			if (end >= len)
				return 0;
			return -1;
		}
		for (eq = ns; eq < end && s[eq] != '='; eq++)
			;
		if (eq == end)
			return -1;
		ne = eq;
		while (ne > ns && dkim_is_fws(s[ne - 1]))
			ne--;
		if (!dkim_tag_name_ok(s + ns, ne - ns))
			return -1;
		for (size_t i = 0; i < nseen; i++)
			if (seenlen[i] == ne - ns && memcmp(seen[i], s + ns, ne - ns) == 0)
				return -1;
		if (nseen == DKIM_TAGS_MAX)
			return -1;
		seen[nseen] = s + ns;
		seenlen[nseen++] = ne - ns;
		vs = eq + 1;
		while (vs < end && dkim_is_fws(s[vs]))
			vs++;
		ve = end;
		while (ve > vs && dkim_is_fws(s[ve - 1]))
			ve--;
		rc = fn(arg, s + ns, ne - ns, s + vs, ve - vs, vs);
		if (rc != 0)
			return rc;
		pos = end + 1;
	}
	return 0;
}

static bool dkim_tag_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && memcmp(name, want, nlen) == 0;
}

/* Base64 with folding whitespace inside (RFC 6376 2.4). */
static long dkim_base64_fws(const char *v, size_t vlen, unsigned char *out, size_t outlen)
{
	char tmp[2048];
	size_t n = 0;

	for (size_t i = 0; i < vlen; i++) {
		if (dkim_is_fws(v[i]))
			continue;
		if (n + 1 >= sizeof(tmp))
			return -1;
		tmp[n++] = v[i];
	}
	if (n == 0)
		return 0;
	return base64_decode(tmp, n, out, outlen);
}

static int dkim_copy_token(const char *v, size_t vlen, char *out, size_t outmax)
{
	if (vlen == 0 || vlen > outmax)
		return -1;
	for (size_t i = 0; i < vlen; i++)
		if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f || v[i] == ';')
			return -1;
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return 0;
}

static bool dkim_domain_ok(const char *d)
{
	size_t len = strlen(d);

	if (len == 0 || d[0] == '.' || d[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
		if (c == '.' && d[i + 1] == '.')
			return false;
	}
	return true;
}

static int dkim_parse_digits(const char *v, size_t vlen, size_t maxdigits, uint64_t *out)
{
	uint64_t n = 0;

	if (vlen == 0 || vlen > maxdigits)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (!isdigit((unsigned char)v[i]))
			return -1;
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = n;
	return 0;
}

static int dkim_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return (tolower((unsigned char)c) - 'a') + 10;
}

/* dkim-quoted-printable (RFC 6376 2.11): =XX escapes, FWS dropped. */
static int dkim_qp_decode(const char *v, size_t vlen, char *out, size_t outmax)
{
	size_t n = 0;

	for (size_t i = 0; i < vlen; i++) {
		unsigned int byte;
		char c = v[i];

		if (dkim_is_fws(c))
			continue;
		if (c == '=') {
			if (i + 2 >= vlen || !isxdigit((unsigned char)v[i + 1]) ||
			    !isxdigit((unsigned char)v[i + 2]))
				return -1;
			byte = (unsigned)dkim_hexval(v[i + 1]) << 4 | (unsigned)dkim_hexval(v[i + 2]);
			c = (char)byte;
			i += 2;
		} else if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e || c == ';') {
			return -1;
		}
		if (c == '\0' || n + 1 > outmax)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

struct dkim_sig_state {
	struct dkim_sig *sig;
	char *err;
	size_t errlen;
	bool legacy;
	const char *text;
	size_t len;
	unsigned have;             /* bit per required tag */
};

enum {
	HAVE_V = 1, HAVE_A = 2, HAVE_B = 4, HAVE_BH = 8, HAVE_D = 16, HAVE_H = 32, HAVE_S = 64,
	HAVE_I = 128,
};

static int dkim_sig_fail(struct dkim_sig_state *st, const char *what)
{
	snprintf(st->err, st->errlen, "%s", what);
	return -1;
}

static int dkim_parse_canon(const char *v, size_t vlen, struct dkim_sig *sig)
{
	const char *slash = memchr(v, '/', vlen);
	size_t hl = slash ? (size_t)(slash - v) : vlen;
	const char *bv = slash ? slash + 1 : NULL;
	size_t bl = slash ? vlen - hl - 1 : 0;

	if (hl == 7 && strncasecmp(v, "relaxed", 7) == 0)
		sig->hcanon = DKIM_CANON_RELAXED;
	else if (hl == 6 && strncasecmp(v, "simple", 6) == 0)
		sig->hcanon = DKIM_CANON_SIMPLE;
	else
		return -1;
	if (bv == NULL)
		sig->bcanon = DKIM_CANON_SIMPLE;
	else if (bl == 7 && strncasecmp(bv, "relaxed", 7) == 0)
		sig->bcanon = DKIM_CANON_RELAXED;
	else if (bl == 6 && strncasecmp(bv, "simple", 6) == 0)
		sig->bcanon = DKIM_CANON_SIMPLE;
	else
		return -1;
	return 0;
}

/* h=: colon-separated field names with optional FWS around each. */
static int dkim_parse_hlist(const char *v, size_t vlen, struct dkim_sig *sig)
{
	size_t pos = 0;

	sig->nh = 0;
	while (pos <= vlen) {
		size_t end = pos, s, e;

		while (end < vlen && v[end] != ':')
			end++;
		s = pos;
		e = end;
		while (s < e && dkim_is_fws(v[s]))
			s++;
		while (e > s && dkim_is_fws(v[e - 1]))
			e--;
		if (e == s || sig->nh == DKIM_H_MAX || e - s > DKIM_HNAME_MAX)
			return -1;
		for (size_t i = s; i < e; i++)
			if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
				return -1;
		memcpy(sig->h[sig->nh], v + s, e - s);
		sig->h[sig->nh][e - s] = '\0';
		sig->nh++;
		pos = end + 1;
	}
	return 0;
}

/* q=: some method must be dns/txt ("dns" from the pre-RFC drafts is the same look-up). */
static bool dkim_query_ok(const char *v, size_t vlen)
{
	size_t pos = 0;

	while (pos <= vlen) {
		size_t end = pos, s, e;

		while (end < vlen && v[end] != ':')
			end++;
		s = pos;
		e = end;
		while (s < e && dkim_is_fws(v[s]))
			s++;
		while (e > s && dkim_is_fws(v[e - 1]))
			e--;
		if ((e - s == 7 && strncasecmp(v + s, "dns/txt", 7) == 0) ||
		    (e - s == 3 && strncasecmp(v + s, "dns", 3) == 0))
			return true;
		pos = end + 1;
	}
	return false;
}

static int dkim_sig_alg(struct dkim_sig_state *st, const char *v, size_t vlen)
{
	if (vlen == 10 && strncasecmp(v, "rsa-sha256", 10) == 0)
		st->sig->alg = DKIM_ALG_RSA_SHA256;
	else if (vlen == 8 && strncasecmp(v, "rsa-sha1", 8) == 0)
		st->sig->alg = DKIM_ALG_RSA_SHA1;
	else if (vlen == 14 && strncasecmp(v, "ed25519-sha256", 14) == 0)
		st->sig->alg = DKIM_ALG_ED25519_SHA256;
	else
		return dkim_sig_fail(st, "unsupported algorithm (a=)");
	return 0;
}

static int dkim_sig_b(struct dkim_sig_state *st, const char *v, size_t vlen, size_t off)
{
	struct dkim_sig *sig = st->sig;
	long n = dkim_base64_fws(v, vlen, sig->b, sizeof(sig->b));
	size_t k = 0, start = off, end = off + vlen;

	if (n <= 0)
		return dkim_sig_fail(st, "malformed or empty signature (b=)");
	sig->blen = (size_t)n;
	for (size_t i = 0; i < vlen && k + 1 < sizeof(sig->b_text) && k < 8; i++)
		if (!dkim_is_fws(v[i]))
			sig->b_text[k++] = v[i];
	sig->b_text[k] = '\0';
	/* the span removed for the header hash: the value and the whitespace around it (3.5) */
	while (start > 0 && st->text[start - 1] != '=')
		start--;
	while (end < st->len && st->text[end] != ';')
		end++;
	sig->b_start = start;
	sig->b_end = end;
	return 0;
}

static int dkim_sig_tag(void *arg, const char *name, size_t nlen, const char *v, size_t vlen, size_t off)
{
	struct dkim_sig_state *st = arg;
	struct dkim_sig *sig = st->sig;
	uint64_t num;
	long n;

	if (dkim_tag_is(name, nlen, "v")) {
		st->have |= HAVE_V;
		if ((vlen != 1 || v[0] != '1') && !(st->legacy && vlen == 3 && memcmp(v, "0.5", 3) == 0))
			return dkim_sig_fail(st, "unsupported version (v=)");
	} else if (dkim_tag_is(name, nlen, "a")) {
		st->have |= HAVE_A;
		return dkim_sig_alg(st, v, vlen);
	} else if (dkim_tag_is(name, nlen, "b")) {
		st->have |= HAVE_B;
		return dkim_sig_b(st, v, vlen, off);
	} else if (dkim_tag_is(name, nlen, "bh")) {
		st->have |= HAVE_BH;
		n = dkim_base64_fws(v, vlen, sig->bh, sizeof(sig->bh));
		if (n <= 0)
			return dkim_sig_fail(st, "malformed body hash (bh=)");
		sig->bhlen = (size_t)n;
	} else if (dkim_tag_is(name, nlen, "c")) {
		if (dkim_parse_canon(v, vlen, sig) < 0)
			return dkim_sig_fail(st, "unsupported canonicalization (c=)");
	} else if (dkim_tag_is(name, nlen, "d")) {
		st->have |= HAVE_D;
		if (dkim_copy_token(v, vlen, sig->domain, DKIM_DOMAIN_MAX) < 0 ||
		    !dkim_domain_ok(sig->domain))
			return dkim_sig_fail(st, "malformed domain (d=)");
	} else if (dkim_tag_is(name, nlen, "h")) {
		st->have |= HAVE_H;
		if (dkim_parse_hlist(v, vlen, sig) < 0)
			return dkim_sig_fail(st, "malformed header list (h=)");
	} else if (dkim_tag_is(name, nlen, "i")) {
		st->have |= HAVE_I;
		if (dkim_qp_decode(v, vlen, sig->auid, DKIM_AUID_MAX) < 0 ||
		    strchr(sig->auid, '@') == NULL)
			return dkim_sig_fail(st, "malformed identity (i=)");
	} else if (dkim_tag_is(name, nlen, "l")) {
		if (dkim_parse_digits(v, vlen, 76, &num) < 0)
			return dkim_sig_fail(st, "malformed body length (l=)");
		sig->has_l = true;
		sig->l = num;
	} else if (dkim_tag_is(name, nlen, "q")) {
		if (!dkim_query_ok(v, vlen))
			return dkim_sig_fail(st, "unsupported query method (q=)");
	} else if (dkim_tag_is(name, nlen, "s")) {
		st->have |= HAVE_S;
		if (dkim_copy_token(v, vlen, sig->selector, DKIM_SELECTOR_MAX) < 0 ||
		    !dkim_domain_ok(sig->selector))
			return dkim_sig_fail(st, "malformed selector (s=)");
	} else if (dkim_tag_is(name, nlen, "t") || dkim_tag_is(name, nlen, "x")) {
		if (dkim_parse_digits(v, vlen, 12, &num) < 0)
			return dkim_sig_fail(st, name[0] == 't' ? "malformed timestamp (t=)"
							       : "malformed expiry (x=)");
		if (name[0] == 't') {
			sig->has_t = true;
			sig->t = (int64_t)num;
		} else {
			sig->has_x = true;
			sig->x = (int64_t)num;
		}
	}
	/* z= and unknown tags are ignored (RFC 6376 3.2) */
	return 0;
}

static bool dkim_auid_in_domain(const char *auid, const char *domain)
{
	const char *at = strrchr(auid, '@');
	size_t al, dl = strlen(domain);

	if (at == NULL)
		return false;
	at++;
	al = strlen(at);
	if (al == dl)
		return strcasecmp(at, domain) == 0;
	return al > dl && at[al - dl - 1] == '.' && strcasecmp(at + al - dl, domain) == 0;
}

static bool dkim_h_has_from(const struct dkim_sig *sig)
{
	for (size_t i = 0; i < sig->nh; i++)
		if (strcasecmp(sig->h[i], "from") == 0)
			return true;
	return false;
}

/* The checks of RFC 6376 6.1.1 that need no key and no clock. */
static int dkim_sig_check(struct dkim_sig_state *st)
{
	struct dkim_sig *sig = st->sig;
	size_t want = sig->alg == DKIM_ALG_RSA_SHA1 ? 20 : 32;

	if (st->legacy)
		st->have |= HAVE_V;
	if ((st->have & (HAVE_V | HAVE_A | HAVE_B | HAVE_BH | HAVE_D | HAVE_H | HAVE_S)) !=
	    (HAVE_V | HAVE_A | HAVE_B | HAVE_BH | HAVE_D | HAVE_H | HAVE_S))
		return dkim_sig_fail(st, "required tag missing (v, a, b, bh, d, h, s)");
	if (sig->bhlen != want)
		return dkim_sig_fail(st, "body hash length does not match a=");
	if (!dkim_h_has_from(sig))
		return dkim_sig_fail(st, "From field not signed (h=)");
	if (!(st->have & HAVE_I))
		snprintf(sig->auid, sizeof(sig->auid), "@%s", sig->domain);
	else if (!dkim_auid_in_domain(sig->auid, sig->domain))
		return dkim_sig_fail(st, "identity (i=) not in the signing domain (d=)");
	if (sig->has_t && sig->has_x && sig->x < sig->t)
		return dkim_sig_fail(st, "expiry (x=) before timestamp (t=)");
	return 0;
}

int dkim_sig_parse(const char *value, size_t len, bool legacy, struct dkim_sig *sig,
		   char *err, size_t errlen)
{
	struct dkim_sig_state st = { sig, err, errlen, legacy, value, len, 0 };
	int rc;

	memset(sig, 0, sizeof(*sig));
	if (errlen > 0)
		err[0] = '\0';
	rc = dkim_taglist_parse(value, len, dkim_sig_tag, &st);
	if (rc != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "signature tag-list syntax error");
		return -1;
	}
	return dkim_sig_check(&st);
}

struct dkim_key_state {
	struct dkim_key *key;
	char *err;
	size_t errlen;
	bool first;
	bool have_p;
};

static int dkim_key_fail(struct dkim_key_state *st, const char *what)
{
	snprintf(st->err, st->errlen, "%s", what);
	return -1;
}

/* Calls fn on each colon-separated, trimmed item; true if any returned true. */
static bool dkim_list_any(const char *v, size_t vlen, bool (*fn)(const char *, size_t, void *), void *arg)
{
	size_t pos = 0;
	bool any = false;

	while (pos <= vlen) {
		size_t end = pos, s, e;

		while (end < vlen && v[end] != ':')
			end++;
		s = pos;
		e = end;
		while (s < e && dkim_is_fws(v[s]))
			s++;
		while (e > s && dkim_is_fws(v[e - 1]))
			e--;
		if (fn(v + s, e - s, arg))
			any = true;
		pos = end + 1;
	}
	return any;
}

static bool dkim_item_hash(const char *s, size_t n, void *arg)
{
	struct dkim_key *key = arg;

	if (n == 4 && strncasecmp(s, "sha1", 4) == 0)
		key->sha1_ok = true;
	else if (n == 6 && strncasecmp(s, "sha256", 6) == 0)
		key->sha256_ok = true;
	return false;
}

static bool dkim_item_service(const char *s, size_t n, void *arg)
{
	return (n == 1 && s[0] == '*') || (n == 5 && strncasecmp(s, "email", 5) == 0);
}

static bool dkim_item_flag(const char *s, size_t n, void *arg)
{
	struct dkim_key *key = arg;

	if (n == 1 && (s[0] == 'y' || s[0] == 'Y'))
		key->testing = true;
	else if (n == 1 && (s[0] == 's' || s[0] == 'S'))
		key->strict_i = true;
	return false;
}

static int dkim_key_tag(void *arg, const char *name, size_t nlen, const char *v, size_t vlen, size_t off)
{
	struct dkim_key_state *st = arg;
	struct dkim_key *key = st->key;
	bool first = st->first;
	long n;

	st->first = false;
	if (dkim_tag_is(name, nlen, "v")) {
		if (!first || vlen != 5 || memcmp(v, "DKIM1", 5) != 0)
			return dkim_key_fail(st, "key record: unsupported version (v=)");
	} else if (dkim_tag_is(name, nlen, "h")) {
		key->sha1_ok = key->sha256_ok = false;
		dkim_list_any(v, vlen, dkim_item_hash, key);
	} else if (dkim_tag_is(name, nlen, "k")) {
		if (vlen == 3 && strncasecmp(v, "rsa", 3) == 0)
			key->type = DKIM_ALG_RSA_SHA256;
		else if (vlen == 7 && strncasecmp(v, "ed25519", 7) == 0)
			key->type = DKIM_ALG_ED25519_SHA256;
		else
			return dkim_key_fail(st, "key record: unsupported key type (k=)");
	} else if (dkim_tag_is(name, nlen, "p")) {
		st->have_p = true;
		n = dkim_base64_fws(v, vlen, key->p, sizeof(key->p));
		if (n < 0)
			return dkim_key_fail(st, "key record: malformed public key (p=)");
		key->plen = (size_t)n;
	} else if (dkim_tag_is(name, nlen, "s")) {
		if (!dkim_list_any(v, vlen, dkim_item_service, NULL))
			return dkim_key_fail(st, "key record: not for email (s=)");
	} else if (dkim_tag_is(name, nlen, "t")) {
		dkim_list_any(v, vlen, dkim_item_flag, key);
	}
	return 0;
}

int dkim_key_parse(const char *txt, size_t len, struct dkim_key *key, char *err, size_t errlen)
{
	struct dkim_key_state st = { key, err, errlen, true, false };

	memset(key, 0, sizeof(*key));
	key->sha1_ok = key->sha256_ok = true;
	if (errlen > 0)
		err[0] = '\0';
	if (dkim_taglist_parse(txt, len, dkim_key_tag, &st) != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "key record syntax error");
		return -1;
	}
	if (!st.have_p) {
		snprintf(err, errlen, "key record has no public key (p=)");
		return -1;
	}
	return 0;
}
