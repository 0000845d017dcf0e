/*
 * DKIM (RFC 6376, RFC 8463 Ed25519, RFC 8301 algorithm rules): verifying
 * the DKIM-Signature fields of a message and signing outbound mail.
 *
 * Key records come from a TXT look-up function supplied by the caller, so
 * the verifier itself never touches the network: the CLI and the content
 * engine use dkim_dns_sync (a private c-ares channel per call with a hard
 * deadline), tests use a key file in Mail::DKIM's FAKE_DNS format.
 *
 * Every function here is thread-safe: no shared mutable state.
 */
#ifndef POSTERN_DKIM_H
#define POSTERN_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dns/dns.h"

struct strbuf;
typedef struct evp_pkey_st EVP_PKEY;

#define DKIM_DOMAIN_MAX 255
#define DKIM_SELECTOR_MAX 255
#define DKIM_AUID_MAX 320
#define DKIM_SIG_MAX 1024          /* an 8192-bit RSA signature */
#define DKIM_HASH_MAX 32
#define DKIM_H_MAX 64              /* header names in h= */
#define DKIM_HNAME_MAX 128
#define DKIM_VERIFY_MAX 8          /* signatures evaluated per message */
#define DKIM_REASON_MAX 192

enum dkim_alg {
	DKIM_ALG_RSA_SHA256 = 0,
	DKIM_ALG_RSA_SHA1,         /* verify only, reported weak (RFC 8301) */
	DKIM_ALG_ED25519_SHA256,
};

enum dkim_canon {
	DKIM_CANON_SIMPLE = 0,
	DKIM_CANON_RELAXED,
};

/* RFC 8601 2.7.1 results. */
enum dkim_result {
	DKIM_NONE = 0,             /* no signature */
	DKIM_PASS,
	DKIM_FAIL,                 /* the signature does not verify */
	DKIM_NEUTRAL,
	DKIM_TEMPERROR,            /* key look-up failed for now */
	DKIM_PERMERROR,            /* signature or key unusable */
};

/* One parsed DKIM-Signature field value. */
struct dkim_sig {
	enum dkim_alg alg;
	enum dkim_canon hcanon, bcanon;
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	char auid[DKIM_AUID_MAX + 1];          /* i=, decoded; "@d" when absent */
	unsigned char b[DKIM_SIG_MAX];
	size_t blen;
	char b_text[16];                       /* first characters of b=, for header.b */
	unsigned char bh[DKIM_HASH_MAX];
	size_t bhlen;
	char h[DKIM_H_MAX][DKIM_HNAME_MAX + 1];
	size_t nh;
	bool has_l;
	uint64_t l;
	bool has_t, has_x;
	int64_t t, x;
	size_t b_start, b_end;                 /* b= value span within the parsed text */
};

/*
 * Parse a DKIM-Signature value (everything after the colon). Returns 0, or
 * -1 with the reason in err: that signature is then a permerror. legacy
 * also accepts the pre-RFC 4871 drafts' signatures (no v= or v=0.5), as
 * Mail::DKIM does; RFC 6376 makes them permerrors.
 */
int dkim_sig_parse(const char *value, size_t len, bool legacy, struct dkim_sig *sig,
		   char *err, size_t errlen);

/*
 * RFC 6376 3.2 tag-list: calls fn for each tag with the name and the value
 * trimmed of surrounding whitespace (off: the value's offset in s). Returns
 * 0, -1 on a syntax error or a duplicate tag, or fn's non-zero return.
 */
typedef int (*dkim_tag_fn)(void *arg, const char *name, size_t nlen,
			   const char *val, size_t vlen, size_t off);
int dkim_taglist_parse(const char *s, size_t len, dkim_tag_fn fn, void *arg);

/* A key record (RFC 6376 3.6.1). */
struct dkim_key {
	enum dkim_alg type;        /* DKIM_ALG_RSA_SHA256 for k=rsa, or ED25519 */
	bool sha1_ok, sha256_ok;   /* h= */
	bool testing;              /* t=y */
	bool strict_i;             /* t=s: i= domain must equal d= */
	unsigned char p[1024 + 128];
	size_t plen;               /* 0: revoked */
};
int dkim_key_parse(const char *txt, size_t len, struct dkim_key *key, char *err, size_t errlen);

/* The TXT records at one name. */
#define DKIM_TXT_RECORDS 8
#define DKIM_TXT_LEN 4096
struct dkim_txt {
	enum dns_status status;
	size_t n;
	char rec[DKIM_TXT_RECORDS][DKIM_TXT_LEN];
	char error[96];            /* a temporary error's text */
};
typedef void (*dkim_txt_fn)(void *arg, const char *name, struct dkim_txt *out);

/* The verdict on one signature. */
struct dkim_verdict {
	enum dkim_result result;
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	char auid[DKIM_AUID_MAX + 1];
	char b_text[16];
	const char *alg;           /* "rsa-sha256", ... or "" */
	bool weak;                 /* rsa-sha1 or an RSA key under 1024 bits */
	bool testing;              /* key says t=y: do not trust a pass */
	bool partial_body;         /* l= left unsigned body content */
	uint64_t signed_body, body_len;
	char reason[DKIM_REASON_MAX];
};

struct dkim_verify_opts {
	dkim_txt_fn lookup;
	void *lookup_arg;
	time_t now;                /* 0: time(NULL) */
	size_t max_sigs;           /* 0: DKIM_VERIFY_MAX */
	bool legacy_drafts;        /* see dkim_sig_parse */
};

/*
 * Verify up to max_sigs DKIM-Signature fields of a message (CRLF or bare
 * LF lines). Returns the number of verdicts written to out (0: unsigned).
 */
size_t dkim_verify(const unsigned char *msg, size_t len, const struct dkim_verify_opts *o,
		   struct dkim_verdict *out, size_t outmax);

/* True when a verdict may be trusted: a pass, not weak, not testing, whole body. */
bool dkim_verdict_trusted(const struct dkim_verdict *v);

struct dkim_sign_opts {
	const char *domain;
	const char *selector;
	EVP_PKEY *key;             /* RSA (rsa-sha256) or Ed25519 (ed25519-sha256) */
	const char *headers;       /* "from:to:subject:..." or NULL for the default list */
	const char *oversign;      /* signed once more than present, or NULL: "from:subject" */
	const char *auid;          /* i= or NULL */
	time_t now;                /* t=; 0: time(NULL) */
	unsigned expire_secs;      /* x= = t + this; 0: no x= */
	bool body_length;          /* add l= (lets others append: only for lists that need it) */
};

/*
 * Sign with relaxed/relaxed; appends the whole DKIM-Signature field (folded,
 * ending with CRLF) to out. Returns 0 or -1 with the reason in err.
 */
int dkim_sign(const unsigned char *msg, size_t len, const struct dkim_sign_opts *o,
	      struct strbuf *out, char *err, size_t errlen);

/* Load a PEM private key for dkim_sign; NULL with the reason in err. */
EVP_PKEY *dkim_load_private_key(const char *path, char *err, size_t errlen);

const char *dkim_result_str(enum dkim_result r);
const char *dkim_alg_str(enum dkim_alg a);

/*
 * TXT look-ups for a worker thread or a CLI: each call opens its own c-ares
 * channel on a private event loop and returns within timeout_ms * tries
 * (plus scheduling slack), so a caller's worst case is bounded by the
 * number of look-ups it makes. servers: as for dns_resolver_new.
 */
struct dkim_dns_sync {
	const char *servers;
	unsigned timeout_ms;
	unsigned tries;
};
void dkim_dns_sync_lookup(void *arg, const char *name, struct dkim_txt *out);

/*
 * A key file in Mail::DKIM's FAKE_DNS format: "name  TXT value" per line,
 * NXDOMAIN, ~~error~~ for a temporary failure, '#' and ';' comments. Use
 * with dkim_keyfile_lookup.
 */
struct dkim_keyfile;
struct dkim_keyfile *dkim_keyfile_load(const char *path, char *err, size_t errlen);
struct dkim_keyfile *dkim_keyfile_parse(const char *text, size_t len);
void dkim_keyfile_free(struct dkim_keyfile *kf);
void dkim_keyfile_lookup(void *arg, const char *name, struct dkim_txt *out);

#endif
