/*
 * DKIM verification and signing (RFC 6376, RFC 8463, RFC 8301) on
 * OpenSSL 3 EVP. The message is split into header fields and body once;
 * each signature then gets its own canonical body hash (with its l=) and
 * header hash. Buffers are bounded by the message size and DKIM_CANON_MAX.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/dkim.h"
#include "core/alloc.h"
#include "core/base64.h"
#include "core/strbuf.h"

#define DKIM_HEADERS_MAX 2000
#define DKIM_CANON_MAX (4u << 20)   /* canonical header data, per signature */
#define DKIM_FOLD 76

#define DKIM_DEFAULT_HEADERS "from:sender:reply-to:subject:date:message-id:to:cc:mime-version:" \
	"content-type:content-transfer-encoding:content-id:content-description:in-reply-to:" \
	"references:list-id:list-help:list-unsubscribe:list-subscribe:list-post:list-owner:" \
	"list-archive"
#define DKIM_DEFAULT_OVERSIGN "from:subject"

struct dkim_field {
	const char *text;          /* name, colon, value, CRLF */
	size_t len;
	size_t namelen;            /* name without trailing whitespace */
	size_t valoff;             /* just past the colon */
};

struct dkim_msg {
	unsigned char *copy;       /* CRLF-normalised copy, or NULL */
	const char *data;
	size_t len;
	struct dkim_field *fields;
	size_t nfields;
	const char *body;
	size_t bodylen;
};

const char *dkim_result_str(enum dkim_result r)
{
	switch (r) {
	case DKIM_NONE: return "none";
	case DKIM_PASS: return "pass";
	case DKIM_FAIL: return "fail";
	case DKIM_NEUTRAL: return "neutral";
	case DKIM_TEMPERROR: return "temperror";
	case DKIM_PERMERROR: return "permerror";
	}
	return "permerror";
}

const char *dkim_alg_str(enum dkim_alg a)
{
	switch (a) {
	case DKIM_ALG_RSA_SHA256: return "rsa-sha256";
	case DKIM_ALG_RSA_SHA1: return "rsa-sha1";
	case DKIM_ALG_ED25519_SHA256: return "ed25519-sha256";
	}
	return "";
}

/* Messages read from files often have bare LF lines; DKIM is defined on CRLF. */
static void dkim_msg_normalise(struct dkim_msg *m, const unsigned char *msg, size_t len)
{
	size_t bare = 0, n = 0;

	for (size_t i = 0; i < len; i++)
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			bare++;
	if (bare == 0) {
		m->data = (const char *)msg;
		m->len = len;
		return;
	}
	m->copy = xmalloc(len + bare + 1);
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			m->copy[n++] = '\r';
		m->copy[n++] = msg[i];
	}
	m->data = (const char *)m->copy;
	m->len = n;
}

static size_t dkim_line_end(const char *d, size_t len, size_t pos)
{
	const char *nl = memchr(d + pos, '\n', len - pos);

	return nl ? (size_t)(nl - d) + 1 : len;
}

/* Split into fields; a line without a colon ends the header section too. */
static int dkim_msg_split(struct dkim_msg *m)
{
	size_t pos = 0, cap = 0;

	while (pos < m->len) {
		size_t end = dkim_line_end(m->data, m->len, pos);
		const char *line = m->data + pos;
		struct dkim_field *f;
		const char *colon;

		if (line[0] == '\r' && end - pos <= 2) {
			pos = end;
			break;
		}
		if ((line[0] == ' ' || line[0] == '\t') && m->nfields > 0) {
			m->fields[m->nfields - 1].len = end - (size_t)(m->fields[m->nfields - 1].text - m->data);
			pos = end;
			continue;
		}
		colon = memchr(line, ':', end - pos);
		if (colon == NULL)
			break;
		if (m->nfields == DKIM_HEADERS_MAX)
			return -1;
		if (m->nfields == cap) {
			cap = cap ? cap * 2 : 32;
			m->fields = xreallocarray(m->fields, cap, sizeof(*m->fields));
		}
		f = &m->fields[m->nfields++];
		f->text = line;
		f->len = end - pos;
		f->valoff = (size_t)(colon - line) + 1;
		f->namelen = (size_t)(colon - line);
		while (f->namelen > 0 && (line[f->namelen - 1] == ' ' || line[f->namelen - 1] == '\t'))
			f->namelen--;
		pos = end;
	}
	m->body = m->data + pos;
	m->bodylen = m->len - pos;
	return 0;
}

static void dkim_msg_free(struct dkim_msg *m)
{
	free(m->fields);
	free(m->copy);
	memset(m, 0, sizeof(*m));
}

static int dkim_msg_open(struct dkim_msg *m, const unsigned char *msg, size_t len)
{
	memset(m, 0, sizeof(*m));
	dkim_msg_normalise(m, msg, len);
	if (dkim_msg_split(m) < 0) {
		dkim_msg_free(m);
		return -1;
	}
	return 0;
}

static bool dkim_field_is(const struct dkim_field *f, const char *name)
{
	return strlen(name) == f->namelen && strncasecmp(f->text, name, f->namelen) == 0;
}

/* Body canonicalisation feeds the hash through a small buffer; l= caps what is hashed. */
struct dkim_body {
	EVP_MD_CTX *ctx;
	uint64_t limit;
	uint64_t hashed, total;
	unsigned char buf[4096];
	size_t n;
};

static void dkim_body_flush(struct dkim_body *b)
{
	if (b->n > 0)
		EVP_DigestUpdate(b->ctx, b->buf, b->n);
	b->n = 0;
}

static void dkim_body_put(struct dkim_body *b, const char *s, size_t len)
{
	b->total += len;
	for (size_t i = 0; i < len && b->hashed < b->limit; i++) {
		if (b->n == sizeof(b->buf))
			dkim_body_flush(b);
		b->buf[b->n++] = (unsigned char)s[i];
		b->hashed++;
	}
}

static bool dkim_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 6376 3.4.3/3.4.4: trailing empty lines vanish; relaxed also squeezes whitespace. */
static void dkim_body_canon(struct dkim_body *b, const char *body, size_t len, enum dkim_canon c)
{
	size_t pos = 0, empty = 0;

	while (pos < len) {
		size_t end = dkim_line_end(body, len, pos), stop = end;
		bool started = false, space = false;

		if (stop > pos && body[stop - 1] == '\n')
			stop--;
		if (stop > pos && body[stop - 1] == '\r')
			stop--;
		for (size_t i = pos; i < stop; i++) {
			char ch = body[i];

			if (c == DKIM_CANON_RELAXED && dkim_wsp(ch)) {
				space = true;
				continue;
			}
			if (!started) {
				for (; empty > 0; empty--)
					dkim_body_put(b, "\r\n", 2);
				started = true;
			}
			if (space && c == DKIM_CANON_RELAXED)
				dkim_body_put(b, " ", 1);
			space = false;
			dkim_body_put(b, &ch, 1);
		}
		if (started)
			dkim_body_put(b, "\r\n", 2);
		else
			empty++;
		pos = end;
	}
	if (b->total == 0 && c == DKIM_CANON_SIMPLE)
		dkim_body_put(b, "\r\n", 2);
	dkim_body_flush(b);
}

static const EVP_MD *dkim_md(enum dkim_alg a)
{
	return a == DKIM_ALG_RSA_SHA1 ? EVP_sha1() : EVP_sha256();
}

/* Returns the hash length, or 0 when the hash could not be computed. */
static size_t dkim_body_hash(const struct dkim_msg *m, enum dkim_alg alg, enum dkim_canon c,
			     bool has_l, uint64_t l, unsigned char *out, uint64_t *total, uint64_t *hashed)
{
	struct dkim_body *b = xcalloc(1, sizeof(*b));
	unsigned int outlen = 0;

	b->ctx = EVP_MD_CTX_new();
	b->limit = has_l ? l : UINT64_MAX;
	if (b->ctx == NULL || EVP_DigestInit_ex(b->ctx, dkim_md(alg), NULL) != 1) {
		EVP_MD_CTX_free(b->ctx);
		free(b);
		return 0;
	}
	dkim_body_canon(b, m->body, m->bodylen, c);
	if (EVP_DigestFinal_ex(b->ctx, out, &outlen) != 1)
		outlen = 0;
	*total = b->total;
	*hashed = b->hashed;
	EVP_MD_CTX_free(b->ctx);
	free(b);
	return outlen;
}

/* One field, canonicalised, appended with its CRLF. */
static int dkim_header_canon(struct strbuf *sb, const char *f, size_t len, size_t valoff, enum dkim_canon c)
{
	size_t nameend = valoff - 1, i;
	bool space = false, any = false;

	if (c == DKIM_CANON_SIMPLE)
		return strbuf_append(sb, f, len);
	while (nameend > 0 && dkim_wsp(f[nameend - 1]))
		nameend--;
	for (i = 0; i < nameend; i++) {
		char ch = (char)tolower((unsigned char)f[i]);

		if (strbuf_append(sb, &ch, 1) < 0)
			return -1;
	}
	if (strbuf_append(sb, ":", 1) < 0)
		return -1;
	for (i = valoff; i < len; i++) {
		char ch = f[i];

		if (ch == '\r' || ch == '\n')
			continue;
		if (dkim_wsp(ch)) {
			space = true;
			continue;
		}
		if (space && any && strbuf_append(sb, " ", 1) < 0)
			return -1;
		space = false;
		any = true;
		if (strbuf_append(sb, &ch, 1) < 0)
			return -1;
	}
	return strbuf_append(sb, "\r\n", 2);
}

/*
 * The header hash input (RFC 6376 3.7): the h= fields picked bottom-up,
 * each instance once, then the signature field with b= emptied and no CRLF.
 */
static int dkim_header_data(const struct dkim_msg *m, const char hl[][DKIM_HNAME_MAX + 1], size_t nh,
			    enum dkim_canon c, const char *sigf, size_t siglen, size_t sigvaloff,
			    struct strbuf *sb)
{
	bool *used = xcalloc(m->nfields + 1, sizeof(*used));
	int rc = 0;

	for (size_t i = 0; i < nh && rc == 0; i++) {
		for (size_t k = m->nfields; k > 0; k--) {
			const struct dkim_field *f = &m->fields[k - 1];

			if (used[k - 1] || !dkim_field_is(f, hl[i]))
				continue;
			used[k - 1] = true;
			rc = dkim_header_canon(sb, f->text, f->len, f->valoff, c);
			break;
		}
	}
	free(used);
	if (rc < 0 || dkim_header_canon(sb, sigf, siglen, sigvaloff, c) < 0)
		return -1;
	while (sb->len > 0 && (sb->data[sb->len - 1] == '\n' || sb->data[sb->len - 1] == '\r'))
		sb->data[--sb->len] = '\0';
	return 0;
}

static void dkim_fail(struct dkim_verdict *v, enum dkim_result r, const char *fmt, const char *arg)
{
	v->result = r;
	snprintf(v->reason, sizeof(v->reason), fmt, arg);
}

static EVP_PKEY *dkim_public_key(const struct dkim_key *key, struct dkim_verdict *v)
{
	const unsigned char *p = key->p;
	EVP_PKEY *pk;
	int bits;

	if (key->type == DKIM_ALG_ED25519_SHA256) {
		if (key->plen != 32) {
			dkim_fail(v, DKIM_PERMERROR, "%s", "ed25519 key is not 32 bytes");
			return NULL;
		}
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->p, 32);
		if (pk == NULL)
			dkim_fail(v, DKIM_PERMERROR, "%s", "unusable ed25519 key");
		return pk;
	}
	pk = d2i_PUBKEY(NULL, &p, (long)key->plen);
	if (pk == NULL) {
		p = key->p;
		pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)key->plen);
	}
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pk);
		dkim_fail(v, DKIM_PERMERROR, "%s", "unusable RSA key (p=)");
		return NULL;
	}
	bits = EVP_PKEY_get_bits(pk);
	if (bits < 512 || bits > 8192) {
		EVP_PKEY_free(pk);
		dkim_fail(v, DKIM_PERMERROR, "%s", "RSA key size outside 512..8192 bits");
		return NULL;
	}
	if (bits < 1024)
		v->weak = true;
	return pk;
}

static bool dkim_crypto_verify(EVP_PKEY *pk, enum dkim_alg alg, const struct dkim_sig *sig,
			       const char *data, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[32];
	bool ok = false;

	if (ctx == NULL)
		return false;
	if (alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data */
		if (EVP_Digest(data, len, digest, NULL, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1)
			ok = EVP_DigestVerify(ctx, sig->b, sig->blen, digest, sizeof(digest)) == 1;
	} else if (EVP_DigestVerifyInit(ctx, NULL, dkim_md(alg), NULL, pk) == 1) {
		ok = EVP_DigestVerify(ctx, sig->b, sig->blen, (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* The first TXT record that parses as a key, else the reason none did. */
static int dkim_fetch_key(const struct dkim_verify_opts *o, const struct dkim_sig *sig,
			  struct dkim_key *key, struct dkim_verdict *v)
{
	struct dkim_txt *txt = xcalloc(1, sizeof(*txt));
	char name[DKIM_DOMAIN_MAX + DKIM_SELECTOR_MAX + 16], err[128] = "";
	int rc = -1;

	if (snprintf(name, sizeof(name), "%s._domainkey.%s", sig->selector, sig->domain) > 253) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "key name too long");
		free(txt);
		return -1;
	}
	o->lookup(o->lookup_arg, name, txt);
	if (txt->status == DNS_TEMPFAIL || txt->status == DNS_MALFORMED) {
		dkim_fail(v, DKIM_TEMPERROR, "key look-up failed: %s",
			  txt->error[0] ? txt->error : dns_status_str(txt->status));
	} else if (txt->status != DNS_OK || txt->n == 0) {
		dkim_fail(v, DKIM_PERMERROR, "no key record at %s", name);
	} else {
		for (size_t i = 0; i < txt->n && rc < 0; i++)
			if (dkim_key_parse(txt->rec[i], strlen(txt->rec[i]), key, err, sizeof(err)) == 0)
				rc = 0;
		if (rc < 0)
			dkim_fail(v, DKIM_PERMERROR, "%s", err);
	}
	free(txt);
	return rc;
}

/* RFC 6376 6.1.2: the key must suit the signature. */
static int dkim_key_suits(const struct dkim_key *key, const struct dkim_sig *sig, struct dkim_verdict *v)
{
	const char *at;

	if (key->plen == 0) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "key revoked (empty p=)");
		return -1;
	}
	if ((key->type == DKIM_ALG_ED25519_SHA256) != (sig->alg == DKIM_ALG_ED25519_SHA256)) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "key type (k=) does not match a=");
		return -1;
	}
	if (sig->alg == DKIM_ALG_RSA_SHA1 ? !key->sha1_ok : !key->sha256_ok) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "hash algorithm not allowed by the key (h=)");
		return -1;
	}
	at = strrchr(sig->auid, '@');
	if (key->strict_i && (at == NULL || strcasecmp(at + 1, sig->domain) != 0)) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "key requires i= domain equal to d= (t=s)");
		return -1;
	}
	v->testing = key->testing;
	return 0;
}

static void dkim_verdict_init(struct dkim_verdict *v, const struct dkim_sig *sig)
{
	memset(v, 0, sizeof(*v));
	v->alg = "";
	snprintf(v->domain, sizeof(v->domain), "%s", sig->domain);
	snprintf(v->selector, sizeof(v->selector), "%s", sig->selector);
	snprintf(v->auid, sizeof(v->auid), "%s", sig->auid);
	snprintf(v->b_text, sizeof(v->b_text), "%s", sig->b_text);
}

/* Body hash, then the header signature: RFC 6376 6.1.3. */
static void dkim_check_hashes(const struct dkim_msg *m, const struct dkim_field *f,
			      const struct dkim_sig *sig, EVP_PKEY *pk, struct dkim_verdict *v)
{
	unsigned char bh[EVP_MAX_MD_SIZE];
	size_t bhlen;
	struct strbuf sb;
	char *sigcopy;
	size_t vo = f->valoff, cut;

	bhlen = dkim_body_hash(m, sig->alg, sig->bcanon, sig->has_l, sig->l, bh,
			       &v->body_len, &v->signed_body);
	if (bhlen == 0) {
		dkim_fail(v, DKIM_TEMPERROR, "%s", "body hash could not be computed");
		return;
	}
	if (sig->has_l && sig->l > v->body_len) {
		dkim_fail(v, DKIM_FAIL, "%s", "l= is longer than the body");
		return;
	}
	if (bhlen != sig->bhlen || memcmp(bh, sig->bh, bhlen) != 0) {
		dkim_fail(v, DKIM_FAIL, "%s", "body hash mismatch (body changed)");
		return;
	}
	cut = sig->b_end - sig->b_start;
	sigcopy = xmalloc(f->len);
	memcpy(sigcopy, f->text, vo + sig->b_start);
	memcpy(sigcopy + vo + sig->b_start, f->text + vo + sig->b_end, f->len - vo - sig->b_end);
	strbuf_init(&sb, DKIM_CANON_MAX);
	if (dkim_header_data(m, sig->h, sig->nh, sig->hcanon,
			     sigcopy, f->len - cut, vo, &sb) < 0) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "signed header data too large");
	} else if (!dkim_crypto_verify(pk, sig->alg, sig, sb.data ? sb.data : "", sb.len)) {
		dkim_fail(v, DKIM_FAIL, "%s", "signature does not verify (headers changed)");
	} else {
		v->result = DKIM_PASS;
		v->partial_body = sig->has_l && v->signed_body < v->body_len;
		if (v->partial_body)
			snprintf(v->reason, sizeof(v->reason),
				 "l= signs %llu of %llu body bytes: unsigned content follows",
				 (unsigned long long)v->signed_body, (unsigned long long)v->body_len);
		else if (v->weak)
			snprintf(v->reason, sizeof(v->reason), "weak: %s",
				 sig->alg == DKIM_ALG_RSA_SHA1 ? "rsa-sha1" : "RSA key under 1024 bits");
		else if (v->testing)
			snprintf(v->reason, sizeof(v->reason), "key in testing mode (t=y)");
	}
	strbuf_free(&sb);
	free(sigcopy);
}

static void dkim_verify_one(const struct dkim_msg *m, const struct dkim_field *f,
			    const struct dkim_verify_opts *o, time_t now, struct dkim_verdict *v)
{
	struct dkim_sig *sig = xcalloc(1, sizeof(*sig));
	struct dkim_key *key = xcalloc(1, sizeof(*key));
	char err[DKIM_REASON_MAX];
	EVP_PKEY *pk = NULL;

	if (dkim_sig_parse(f->text + f->valoff, f->len - f->valoff, o->legacy_drafts, sig, err, sizeof(err)) < 0) {
		dkim_verdict_init(v, sig);
		dkim_fail(v, DKIM_PERMERROR, "%s", err);
		goto out;
	}
	dkim_verdict_init(v, sig);
	v->alg = dkim_alg_str(sig->alg);
	v->weak = sig->alg == DKIM_ALG_RSA_SHA1;
	if (sig->has_x && (int64_t)now > sig->x) {
		dkim_fail(v, DKIM_PERMERROR, "%s", "signature expired (x=)");
		goto out;
	}
	if (dkim_fetch_key(o, sig, key, v) < 0 || dkim_key_suits(key, sig, v) < 0)
		goto out;
	pk = dkim_public_key(key, v);
	if (pk == NULL)
		goto out;
	dkim_check_hashes(m, f, sig, pk, v);
out:
	EVP_PKEY_free(pk);
	free(key);
	free(sig);
}

size_t dkim_verify(const unsigned char *msg, size_t len, const struct dkim_verify_opts *o,
		   struct dkim_verdict *out, size_t outmax)
{
	size_t max = o->max_sigs ? o->max_sigs : DKIM_VERIFY_MAX, n = 0;
	time_t now = o->now ? o->now : time(NULL);
	struct dkim_msg m;

	if (max > outmax)
		max = outmax;
	if (dkim_msg_open(&m, msg, len) < 0)
		return 0;
	for (size_t i = 0; i < m.nfields && n < max; i++)
		if (dkim_field_is(&m.fields[i], "DKIM-Signature"))
			dkim_verify_one(&m, &m.fields[i], o, now, &out[n++]);
	dkim_msg_free(&m);
	return n;
}

bool dkim_verdict_trusted(const struct dkim_verdict *v)
{
	return v->result == DKIM_PASS && !v->weak && !v->testing && !v->partial_body;
}

/* The h= value for signing: present instances, plus one more of each over-signed name. */
static int dkim_sign_hlist(const struct dkim_msg *m, const char *headers, const char *oversign,
			   char hl[][DKIM_HNAME_MAX + 1], size_t *nh)
{
	char *list = xstrdup(headers), *save = NULL;
	bool from = false;

	*nh = 0;
	for (char *name = strtok_r(list, ": \t", &save); name != NULL; name = strtok_r(NULL, ": \t", &save)) {
		size_t count = 0, extra = 0;
		char *ov = xstrdup(oversign), *s2 = NULL;

		for (size_t i = 0; i < m->nfields; i++)
			if (dkim_field_is(&m->fields[i], name))
				count++;
		for (char *o = strtok_r(ov, ": \t", &s2); o != NULL; o = strtok_r(NULL, ": \t", &s2))
			if (strcasecmp(o, name) == 0)
				extra = 1;
		free(ov);
		if (strcasecmp(name, "from") == 0 && count > 0)
			from = true;
		for (size_t k = 0; k < count + extra; k++) {
			if (*nh == DKIM_H_MAX || strlen(name) > DKIM_HNAME_MAX) {
				free(list);
				return -1;
			}
			snprintf(hl[(*nh)++], DKIM_HNAME_MAX + 1, "%s", name);
		}
	}
	free(list);
	return from ? 0 : -2;
}

/* Append text, starting a continuation line first when the line would grow too long. */
static void dkim_fold_append(struct strbuf *sb, size_t *col, const char *text)
{
	size_t len = strlen(text);

	if (*col + len + 1 > DKIM_FOLD && *col > 1) {
		strbuf_append(sb, "\r\n\t", 3);
		*col = 1;
	} else if (*col > 0) {
		strbuf_append(sb, " ", 1);
		(*col)++;
	}
	strbuf_append(sb, text, len);
	*col += len;
}

static int dkim_sign_bytes(EVP_PKEY *key, const char *data, size_t len, unsigned char *sig, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[32];
	int ok = 0;

	if (ctx == NULL)
		return -1;
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		ok = EVP_Digest(data, len, digest, NULL, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestSign(ctx, sig, siglen, digest, sizeof(digest)) == 1;
	} else {
		ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		     EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* The field text up to and including "b=", folded, without the signature. */
static void dkim_sign_field(struct strbuf *f, const struct dkim_sign_opts *o, enum dkim_alg alg,
			    time_t now, const char *bh, uint64_t body_len,
			    char hl[][DKIM_HNAME_MAX + 1], size_t nh)
{
	char tag[DKIM_DOMAIN_MAX + DKIM_AUID_MAX + 32];
	size_t col = strlen("DKIM-Signature:");

	strbuf_appends(f, "DKIM-Signature:");
	snprintf(tag, sizeof(tag), "v=1; a=%s;", dkim_alg_str(alg));
	dkim_fold_append(f, &col, tag);
	dkim_fold_append(f, &col, "c=relaxed/relaxed;");
	snprintf(tag, sizeof(tag), "d=%s;", o->domain);
	dkim_fold_append(f, &col, tag);
	snprintf(tag, sizeof(tag), "s=%s;", o->selector);
	dkim_fold_append(f, &col, tag);
	if (o->auid != NULL) {
		snprintf(tag, sizeof(tag), "i=%s;", o->auid);
		dkim_fold_append(f, &col, tag);
	}
	snprintf(tag, sizeof(tag), "t=%lld;", (long long)now);
	dkim_fold_append(f, &col, tag);
	if (o->expire_secs > 0) {
		snprintf(tag, sizeof(tag), "x=%lld;", (long long)now + o->expire_secs);
		dkim_fold_append(f, &col, tag);
	}
	if (o->body_length) {
		snprintf(tag, sizeof(tag), "l=%llu;", (unsigned long long)body_len);
		dkim_fold_append(f, &col, tag);
	}
	for (size_t i = 0; i < nh; i++) {
		snprintf(tag, sizeof(tag), "%s%s%s", i == 0 ? "h=" : "", hl[i], i + 1 == nh ? ";" : ":");
		if (i == 0) {
			dkim_fold_append(f, &col, tag);
		} else if (col + strlen(tag) > DKIM_FOLD) {
			strbuf_append(f, "\r\n\t", 3);
			strbuf_appends(f, tag);
			col = 1 + strlen(tag);
		} else {
			strbuf_appends(f, tag);
			col += strlen(tag);
		}
	}
	snprintf(tag, sizeof(tag), "bh=%s;", bh);
	dkim_fold_append(f, &col, tag);
	dkim_fold_append(f, &col, "b=");
}

static int dkim_sign_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -1;
}

static int dkim_sign_key_alg(EVP_PKEY *key, enum dkim_alg *alg, char *err, size_t errlen)
{
	int id = key ? EVP_PKEY_get_base_id(key) : 0;

	if (id == EVP_PKEY_ED25519) {
		*alg = DKIM_ALG_ED25519_SHA256;
		return 0;
	}
	if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(key) >= 1024) {
		*alg = DKIM_ALG_RSA_SHA256;
		return 0;
	}
	return dkim_sign_fail(err, errlen, "signing key must be Ed25519 or RSA of 1024 bits or more");
}

int dkim_sign(const unsigned char *msg, size_t len, const struct dkim_sign_opts *o,
	      struct strbuf *out, char *err, size_t errlen)
{
	char (*hl)[DKIM_HNAME_MAX + 1] = xcalloc(DKIM_H_MAX, sizeof(*hl));
	unsigned char bh[EVP_MAX_MD_SIZE], sig[DKIM_SIG_MAX];
	char bh64[64], *b64 = xmalloc(DKIM_SIG_MAX * 2);
	struct strbuf field, data;
	uint64_t total, hashed;
	size_t nh, siglen = sizeof(sig), bhlen;
	time_t now = o->now ? o->now : time(NULL);
	enum dkim_alg alg;
	struct dkim_msg m;
	int rc = -1;

	strbuf_init(&field, 64 * 1024);
	strbuf_init(&data, DKIM_CANON_MAX);
	if (dkim_sign_key_alg(o->key, &alg, err, errlen) < 0)
		goto out;
	if (dkim_msg_open(&m, msg, len) < 0) {
		dkim_sign_fail(err, errlen, "too many header fields");
		goto out;
	}
	rc = dkim_sign_hlist(&m, o->headers ? o->headers : DKIM_DEFAULT_HEADERS,
			     o->oversign ? o->oversign : DKIM_DEFAULT_OVERSIGN, hl, &nh);
	if (rc < 0) {
		dkim_sign_fail(err, errlen, rc == -2 ? "message has no From field" : "header list too long");
		rc = -1;
		goto out_msg;
	}
	rc = -1;
	bhlen = dkim_body_hash(&m, alg, DKIM_CANON_RELAXED, false, 0, bh, &total, &hashed);
	if (bhlen == 0 || base64_encode(bh, bhlen, bh64, sizeof(bh64)) < 0) {
		dkim_sign_fail(err, errlen, "body hash failed");
		goto out_msg;
	}
	dkim_sign_field(&field, o, alg, now, bh64, total, hl, nh);
	if (dkim_header_data(&m, (const char (*)[DKIM_HNAME_MAX + 1])hl, nh, DKIM_CANON_RELAXED, field.data, field.len,
			     strlen("DKIM-Signature:"), &data) < 0 ||
	    dkim_sign_bytes(o->key, data.data, data.len, sig, &siglen) < 0 ||
	    base64_encode(sig, siglen, b64, DKIM_SIG_MAX * 2) < 0) {
		dkim_sign_fail(err, errlen, "signing failed");
		goto out_msg;
	}
	for (size_t i = 0, n = strlen(b64); i < n; i += 64) {
		strbuf_append(&field, "\r\n\t", 3);
		strbuf_append(&field, b64 + i, n - i < 64 ? n - i : 64);
	}
	strbuf_append(&field, "\r\n", 2);
	rc = strbuf_append(out, field.data, field.len);
	if (rc < 0)
		dkim_sign_fail(err, errlen, "signature header does not fit");
out_msg:
	dkim_msg_free(&m);
out:
	strbuf_free(&field);
	strbuf_free(&data);
	free(b64);
	free(hl);
	return rc;
}

/* PEM (any key type OpenSSL reads), or dkimpy's raw base64 Ed25519 seed. */
EVP_PKEY *dkim_load_private_key(const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	unsigned char seed[64];
	char line[256];
	EVP_PKEY *pk;
	long n;

	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	pk = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	if (pk == NULL && fseek(fp, 0, SEEK_SET) == 0 && fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		n = base64_decode(line, strlen(line), seed, sizeof(seed));
		if (n == 32)
			pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	}
	fclose(fp);
	if (pk == NULL)
		snprintf(err, errlen, "%s: not a PEM private key nor a base64 Ed25519 seed", path);
	return pk;
}
