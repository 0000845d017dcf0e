/*
 * DKIM, DMARC and Authentication-Results: the RFC 8463 Appendix A example
 * (Ed25519 and RSA signatures of the RFC 6376 message), the RFC 6376
 * 3.4.5 canonicalisation example, parser and key-record rules, sign and
 * verify round trips with tampering, l=, expiry, and DMARC policy cases.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include "content/auth_results.h"
#include "content/dkim.h"
#include "content/dmarc.h"
#include "core/alloc.h"
#include "core/base64.h"
#include "core/strbuf.h"
#include "unit.h"

#include "dkim_vectors.h"

static const char plain_msg[] =
	"Received: from relay.example.org by mx.example.net\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.net\r\n"
	"Subject: quarterly report\r\n"
	"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	"Message-ID: <r1@example.com>\r\n"
	"\r\n"
	"Numbers attached.  \r\n"
	"\r\n"
	"Alice\r\n"
	"\r\n\r\n";

static size_t verify_with(const char *msg, size_t len, const char *keys, bool legacy, time_t now,
			  struct dkim_verdict *v)
{
	struct dkim_keyfile *kf = dkim_keyfile_parse(keys, strlen(keys));
	struct dkim_verify_opts o = { dkim_keyfile_lookup, kf, now, 0, legacy };
	size_t n = dkim_verify((const unsigned char *)msg, len, &o, v, DKIM_VERIFY_MAX);

	dkim_keyfile_free(kf);
	return n;
}

TEST(dkim_rfc8463_example)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	size_t n = verify_with(rfc8463_msg, strlen(rfc8463_msg), rfc8463_keys, false, 0, v);

	CHECK_INT(n, 2);
	CHECK_INT(v[0].result, DKIM_PASS);
	CHECK_STR(v[0].alg, "ed25519-sha256");
	CHECK_STR(v[0].selector, "brisbane");
	CHECK(dkim_verdict_trusted(&v[0]));
	CHECK_INT(v[1].result, DKIM_PASS);
	CHECK_STR(v[1].alg, "rsa-sha256");
	CHECK(dkim_verdict_trusted(&v[1]));
}

TEST(dkim_rfc8463_tampered)
{
	char *msg = xstrdup(rfc8463_msg);
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	char *p = strstr(msg, "hungry");

	p[0] = 'H';
	CHECK_INT(verify_with(msg, strlen(msg), rfc8463_keys, false, 0, v), 2);
	CHECK_INT(v[0].result, DKIM_FAIL);
	CHECK(strstr(v[0].reason, "body hash") != NULL);
	p[0] = 'h';
	p = strstr(msg, "dinner");
	p[0] = 'D';
	verify_with(msg, strlen(msg), rfc8463_keys, false, 0, v);
	CHECK_INT(v[0].result, DKIM_FAIL);
	CHECK_INT(v[1].result, DKIM_FAIL);
	CHECK(strstr(v[1].reason, "headers") != NULL);
	free(msg);
}

TEST(dkim_key_errors)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];

	verify_with(rfc8463_msg, strlen(rfc8463_msg), "x._domainkey.example.org NXDOMAIN\n", false, 0, v);
	CHECK_INT(v[0].result, DKIM_PERMERROR);
	verify_with(rfc8463_msg, strlen(rfc8463_msg),
		    "brisbane._domainkey.football.example.com ~~SERVFAIL~~\n", false, 0, v);
	CHECK_INT(v[0].result, DKIM_TEMPERROR);
	verify_with(rfc8463_msg, strlen(rfc8463_msg),
		    "brisbane._domainkey.football.example.com v=DKIM1; k=ed25519; p=\n", false, 0, v);
	CHECK_INT(v[0].result, DKIM_PERMERROR);
	CHECK(strstr(v[0].reason, "revoked") != NULL);
	verify_with(rfc8463_msg, strlen(rfc8463_msg),
		    "test._domainkey.football.example.com k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n",
		    false, 0, v);
	CHECK_INT(v[1].result, DKIM_PERMERROR);
	CHECK(strstr(v[1].reason, "k=") != NULL);
}

TEST(dkim_sig_parser)
{
	struct dkim_sig sig;
	char err[128];
	const char *ok = " v=1; a=rsa-sha256; d=example.com; s=sel;\r\n\th=From : To; "
			 "i=joe=40sub.example.com; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
			 " c=relaxed; l=10; b=AAAA\r\n BBBB;";

	CHECK_INT(dkim_sig_parse(ok, strlen(ok), false, &sig, err, sizeof(err)), 0);
	CHECK_STR(sig.auid, "joe@sub.example.com");
	CHECK_INT(sig.nh, 2);
	CHECK_STR(sig.h[1], "To");
	CHECK_INT(sig.hcanon, DKIM_CANON_RELAXED);
	CHECK_INT(sig.bcanon, DKIM_CANON_SIMPLE);
	CHECK_INT(sig.blen, 6);
	CHECK(sig.has_l && sig.l == 10);
	CHECK_INT(ok[sig.b_start - 1], '=');
	CHECK_INT(ok[sig.b_start], 'A');
	CHECK_INT(ok[sig.b_end], ';');
	CHECK_STR(sig.b_text, "AAAABBBB");

#define BAD(text, what)                                                              \
	do {                                                                          \
		CHECK_INT(dkim_sig_parse(text, strlen(text), false, &sig, err, sizeof(err)), -1); \
		CHECK(strstr(err, what) != NULL);                                     \
	} while (0)
	BAD("v=1; v=1", "syntax");
	BAD("v=1; a=rsa-sha256; d=example.com; s=s; h=to; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	    "From");
	BAD("v=1; a=rsa-sha256; d=example.com; s=s; h=from; i=x@evil.example; "
	    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA", "i=");
	BAD("v=1; a=rsa-md5; d=example.com", "a=");
	BAD("v=2; a=rsa-sha256", "v=");
	BAD("v=1; a=rsa-sha256; c=future", "c=");
	BAD("v=1; a=rsa-sha256; q=http", "q=");
	BAD("v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=AAAA; b=AAAA", "body hash");
	BAD("v=1; a=rsa-sha256; d=example.com; s=s; h=from; b=AAAA", "required");
	BAD("v=1; 9a=x", "syntax");
	BAD("v=1; a", "syntax");
#undef BAD
	/* a draft signature without v= only in legacy mode */
	ok = "a=rsa-sha1; d=example.com; s=s; h=from; bh=2jmj7l5rSw0yVb/vlWAYkK/YBwk=; b=AAAA";
	CHECK_INT(dkim_sig_parse(ok, strlen(ok), false, &sig, err, sizeof(err)), -1);
	CHECK_INT(dkim_sig_parse(ok, strlen(ok), true, &sig, err, sizeof(err)), 0);
	CHECK_STR(sig.auid, "@example.com");
}

TEST(dkim_key_parser)
{
	struct dkim_key key;
	char err[128];

#define KEY(text) dkim_key_parse(text, strlen(text), &key, err, sizeof(err))
	CHECK_INT(KEY("v=DKIM1; k=ed25519; t=y:s; h=sha256; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="), 0);
	CHECK_INT(key.type, DKIM_ALG_ED25519_SHA256);
	CHECK(key.testing && key.strict_i && key.sha256_ok && !key.sha1_ok);
	CHECK_INT(key.plen, 32);
	CHECK_INT(KEY("p="), 0);
	CHECK_INT(key.plen, 0);
	CHECK_INT(KEY("k=rsa; v=DKIM1; p=AAAA"), -1);
	CHECK_INT(KEY("v=DKIM1; k=dsa; p=AAAA"), -1);
	CHECK_INT(KEY("v=DKIM1; s=chat; p=AAAA"), -1);
	CHECK_INT(KEY("v=DKIM1; s=email:web; p=AAAA"), 0);
	CHECK_INT(KEY("v=DKIM1; k=rsa"), -1);
	CHECK_INT(KEY("k=rsa; t; p=AAAA"), -1);
	CHECK_INT(KEY("v=DKIM1; x1 = extra ; n=notes; p=AA AA ; "), 0);
#undef KEY
}

struct test_keys {
	EVP_PKEY *rsa, *ed;
	char records[4096];
};

static void test_keys_make(struct test_keys *k, const char *flags)
{
	unsigned char der[2048], *p = der, raw[32];
	char b64[4096], b64ed[64];
	size_t rawlen = sizeof(raw);
	int len;

	k->rsa = EVP_RSA_gen(1024);
	k->ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	CHECK(k->rsa != NULL && k->ed != NULL);
	len = i2d_PUBKEY(k->rsa, &p);
	CHECK(len > 0);
	CHECK(base64_encode(der, (size_t)len, b64, sizeof(b64)) > 0);
	CHECK(EVP_PKEY_get_raw_public_key(k->ed, raw, &rawlen) == 1);
	CHECK(base64_encode(raw, rawlen, b64ed, sizeof(b64ed)) > 0);
	snprintf(k->records, sizeof(k->records),
		 "rsa._domainkey.example.com v=DKIM1; k=rsa;%s p=%s\n"
		 "ed._domainkey.mail.example.com v=DKIM1; k=ed25519;%s p=%s\n",
		 flags, b64, flags, b64ed);
}

static void test_keys_free(struct test_keys *k)
{
	EVP_PKEY_free(k->rsa);
	EVP_PKEY_free(k->ed);
}

/* The signed message: the new field, then the original. */
static char *sign_msg(const char *msg, const char *domain, const char *sel, EVP_PKEY *key,
		      bool body_length, unsigned expire)
{
	struct dkim_sign_opts o = { domain, sel, key, NULL, NULL, NULL, 1700000000, expire, body_length };
	struct strbuf sb;
	char err[128];
	size_t len;

	strbuf_init(&sb, 1 << 20);
	CHECK_INT(dkim_sign((const unsigned char *)msg, strlen(msg), &o, &sb, err, sizeof(err)), 0);
	strbuf_appends(&sb, msg);
	return strbuf_detach(&sb, &len);
}

static enum dkim_result verify_one(const char *msg, const char *keys, struct dkim_verdict *v)
{
	CHECK_INT(verify_with(msg, strlen(msg), keys, false, 1700000100, v), 1);
	return v[0].result;
}

TEST(dkim_sign_verify_round_trip)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct test_keys k;
	char *signed_rsa, *signed_ed, *p;

	test_keys_make(&k, "");
	signed_rsa = sign_msg(plain_msg, "example.com", "rsa", k.rsa, false, 0);
	signed_ed = sign_msg(plain_msg, "mail.example.com", "ed", k.ed, false, 0);
	CHECK(strncmp(signed_rsa, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;", 53) == 0);
	/* From and Subject over-signed: present once, listed twice */
	CHECK(strstr(signed_rsa, "h=from:from:") != NULL);
	CHECK_INT(verify_one(signed_rsa, k.records, v), DKIM_PASS);
	CHECK(dkim_verdict_trusted(&v[0]));
	CHECK_INT(verify_one(signed_ed, k.records, v), DKIM_PASS);
	CHECK_STR(v[0].alg, "ed25519-sha256");

	/* relaxed canonicalisation survives refolding and whitespace changes */
	p = strstr(signed_ed, "Subject: quarterly report");
	memcpy(p, "Subject:\tquarterly  report", strlen("Subject: quarterly report"));
	CHECK_INT(verify_one(signed_ed, k.records, v), DKIM_FAIL);
	free(signed_ed);
	signed_ed = sign_msg(plain_msg, "mail.example.com", "ed", k.ed, false, 0);
	p = strstr(signed_ed, "Numbers attached.  ");
	memcpy(p, "Numbers   attached.", strlen("Numbers attached.  "));
	CHECK_INT(verify_one(signed_ed, k.records, v), DKIM_PASS);

	free(signed_ed);
	free(signed_rsa);
	test_keys_free(&k);
}

TEST(dkim_oversigning_and_added_fields)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct test_keys k;
	char *s = NULL, *msg;
	size_t len;
	struct strbuf sb;

	test_keys_make(&k, "");
	s = sign_msg(plain_msg, "example.com", "rsa", k.rsa, false, 0);
	/* an unsigned field added on the way: still passes */
	strbuf_init(&sb, 1 << 20);
	strbuf_appends(&sb, "X-Added: by a relay\r\n");
	strbuf_appends(&sb, s);
	msg = strbuf_detach(&sb, &len);
	CHECK_INT(verify_one(msg, k.records, v), DKIM_PASS);
	free(msg);
	/* a second From appended below: over-signing makes it fail */
	strbuf_init(&sb, 1 << 20);
	strbuf_append(&sb, s, (size_t)(strstr(s, "\r\n\r\n") - s) + 2);
	strbuf_appends(&sb, "From: mallory@evil.example\r\n");
	strbuf_appends(&sb, strstr(s, "\r\n\r\n") + 2);
	msg = strbuf_detach(&sb, &len);
	CHECK_INT(verify_one(msg, k.records, v), DKIM_FAIL);
	free(msg);
	free(s);
	test_keys_free(&k);
}

TEST(dkim_body_length_partial)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct test_keys k;
	struct strbuf sb;
	char *s, *msg;
	size_t len;

	test_keys_make(&k, "");
	s = sign_msg(plain_msg, "example.com", "rsa", k.rsa, true, 0);
	CHECK(strstr(s, "l=") != NULL);
	CHECK_INT(verify_one(s, k.records, v), DKIM_PASS);
	CHECK(!v[0].partial_body);
	strbuf_init(&sb, 1 << 20);
	strbuf_appends(&sb, s);
	strbuf_appends(&sb, "Click here: http://phish.example/\r\n");
	msg = strbuf_detach(&sb, &len);
	CHECK_INT(verify_one(msg, k.records, v), DKIM_PASS);
	CHECK(v[0].partial_body);
	CHECK(!dkim_verdict_trusted(&v[0]));
	CHECK(strstr(v[0].reason, "unsigned content follows") != NULL);
	CHECK(v[0].signed_body < v[0].body_len);
	free(msg);
	free(s);
	test_keys_free(&k);
}

TEST(dkim_expiry_and_testing_keys)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct test_keys k;
	char *s;

	test_keys_make(&k, " t=y;");
	s = sign_msg(plain_msg, "example.com", "rsa", k.rsa, false, 60);
	CHECK(strstr(s, "x=1700000060;") != NULL);
	CHECK_INT(verify_with(s, strlen(s), k.records, false, 1700000030, v), 1);
	CHECK_INT(v[0].result, DKIM_PASS);
	CHECK(v[0].testing && !dkim_verdict_trusted(&v[0]));
	CHECK_INT(verify_with(s, strlen(s), k.records, false, 1700000100, v), 1);
	CHECK_INT(v[0].result, DKIM_PERMERROR);
	CHECK(strstr(v[0].reason, "expired") != NULL);
	free(s);
	test_keys_free(&k);
}

/* RFC 6376 3.4.5: relaxed body " C\r\nD E\r\n"; empty bodies (3.4.3, 3.4.4). */
TEST(dkim_body_canonical_hashes)
{
	static const char *msg = "From: a@example.com\r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
	unsigned char want[32];
	char want64[64], bh[80];
	struct test_keys k;
	char *s, *p;

	test_keys_make(&k, "");
	EVP_Digest(" C\r\nD E\r\n", 9, want, NULL, EVP_sha256(), NULL);
	base64_encode(want, 32, want64, sizeof(want64));
	s = sign_msg(msg, "example.com", "rsa", k.rsa, false, 0);
	p = strstr(s, "bh=");
	CHECK(p != NULL);
	snprintf(bh, sizeof(bh), "%.*s", (int)strcspn(p + 3, ";"), p + 3);
	CHECK_STR(bh, want64);
	free(s);
	s = sign_msg("From: a@example.com\r\n\r\n\r\n\r\n", "example.com", "rsa", k.rsa, false, 0);
	CHECK(strstr(s, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;") != NULL);
	free(s);
	test_keys_free(&k);
}

TEST(dkim_sign_needs_from_and_good_key)
{
	struct test_keys k;
	struct dkim_sign_opts o;
	struct strbuf sb;
	char err[128];
	EVP_PKEY *small = EVP_RSA_gen(512);

	test_keys_make(&k, "");
	memset(&o, 0, sizeof(o));
	o.domain = "example.com";
	o.selector = "s";
	o.key = k.ed;
	strbuf_init(&sb, 65536);
	CHECK_INT(dkim_sign((const unsigned char *)"To: x@example.com\r\n\r\nhi\r\n", 25, &o, &sb, err,
			    sizeof(err)), -1);
	CHECK(strstr(err, "From") != NULL);
	o.key = small;
	CHECK_INT(dkim_sign((const unsigned char *)plain_msg, strlen(plain_msg), &o, &sb, err, sizeof(err)), -1);
	strbuf_free(&sb);
	EVP_PKEY_free(small);
	test_keys_free(&k);
}

TEST(dkim_unsigned_and_garbage)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	static const char junk[] = "DKIM-Signature: ;;;===\r\nDKIM-Signature:\r\nFrom: x\r\n\r\n";

	CHECK_INT(verify_with(plain_msg, strlen(plain_msg), "", false, 0, v), 0);
	CHECK_INT(verify_with(junk, strlen(junk), "", false, 0, v), 2);
	CHECK_INT(v[0].result, DKIM_PERMERROR);
	CHECK_INT(v[1].result, DKIM_PERMERROR);
	CHECK_INT(verify_with("", 0, "", false, 0, v), 0);
}

TEST(dmarc_record_and_from)
{
	struct dmarc_record r;
	char d[256];
	const char *m1 = "Subject: x\r\nFrom: \"Doe, John\" (work) <John.Doe@Sub.Example.COM>\r\n\r\nbody\r\n";
	const char *m2 = "From: a@example.com\r\nFrom: b@example.org\r\n\r\n";
	const char *m3 = "From: a@example.com, b@example.org\r\n\r\n";
	const char *m4 = "From:\r\n  plain@example.net\r\n\r\n";

#define REC(t) dmarc_record_parse(t, strlen(t), &r)
	CHECK_INT(REC("v=DMARC1; p=reject; sp=none; adkim=s; pct=20; rua=mailto:d@example.com"), 0);
	CHECK(r.p == DMARC_POLICY_REJECT && r.sp == DMARC_POLICY_NONE && r.adkim_strict && !r.aspf_strict);
	CHECK_INT(r.pct, 20);
	CHECK_INT(REC("v=DMARC1; p=quarantine"), 0);
	CHECK(r.sp == DMARC_POLICY_QUARANTINE && r.pct == 100);
	CHECK_INT(REC("p=reject; v=DMARC1"), -1);
	CHECK_INT(REC("v=DMARC1; p=bogus"), -1);
	CHECK_INT(REC("v=DMARC1; p=bogus; rua=mailto:x@example.com"), 0);
	CHECK(r.p == DMARC_POLICY_NONE);
#undef REC
	CHECK_INT(dmarc_from_domain((const unsigned char *)m1, strlen(m1), d, sizeof(d)), 0);
	CHECK_STR(d, "sub.example.com");
	CHECK_INT(dmarc_from_domain((const unsigned char *)m2, strlen(m2), d, sizeof(d)), -1);
	CHECK_INT(dmarc_from_domain((const unsigned char *)m3, strlen(m3), d, sizeof(d)), -1);
	CHECK_INT(dmarc_from_domain((const unsigned char *)m4, strlen(m4), d, sizeof(d)), 0);
	CHECK_STR(d, "example.net");
	dmarc_org_domain("a.b.example.co.uk", d, sizeof(d));
	CHECK_STR(d, "example.co.uk");
}

static void dmarc_run(const char *records, const char *from, bool spf_pass, const char *spf_domain,
		      const struct dkim_verdict *v, size_t nv, unsigned roll, struct dmarc_outcome *out)
{
	struct dkim_keyfile *kf = dkim_keyfile_parse(records, strlen(records));
	struct dmarc_input in = { from, spf_pass, spf_domain, v, nv, roll };

	dmarc_evaluate(&in, dkim_keyfile_lookup, kf, out);
	dkim_keyfile_free(kf);
}

TEST(dmarc_evaluation)
{
	static const char *zone =
		"_dmarc.example.com v=DMARC1; p=reject; sp=quarantine; pct=50\n"
		"_dmarc.strict.example v=DMARC1; p=reject; adkim=s; aspf=s\n"
		"_dmarc.flaky.example ~~timeout~~\n"
		"_dmarc.two.example v=DMARC1; p=none\n"
		"_dmarc.two.example v=DMARC1; p=reject\n";
	struct dkim_verdict v;
	struct dmarc_outcome o;

	memset(&v, 0, sizeof(v));
	v.result = DKIM_PASS;
	snprintf(v.domain, sizeof(v.domain), "mail.example.com");
	dmarc_run(zone, "example.com", false, NULL, &v, 1, 0, &o);
	CHECK_INT(o.result, DMARC_PASS);
	CHECK(o.dkim_aligned && !o.spf_aligned);
	dmarc_run(zone, "example.com", true, "bounce.example.com", NULL, 0, 0, &o);
	CHECK_INT(o.result, DMARC_PASS);
	CHECK(o.spf_aligned);
	/* fail: p=reject inside the pct sample, quarantine outside it */
	dmarc_run(zone, "example.com", true, "other.example", NULL, 0, 10, &o);
	CHECK_INT(o.result, DMARC_FAIL);
	CHECK_INT(o.disposition, DMARC_POLICY_REJECT);
	dmarc_run(zone, "example.com", false, NULL, NULL, 0, 70, &o);
	CHECK_INT(o.disposition, DMARC_POLICY_QUARANTINE);
	/* a subdomain without its own record: organizational record, sp= */
	dmarc_run(zone, "news.example.com", false, NULL, NULL, 0, 0, &o);
	CHECK(o.org_fallback);
	CHECK_STR(o.policy_domain, "example.com");
	CHECK_INT(o.policy, DMARC_POLICY_QUARANTINE);
	/* strict alignment wants exact domains */
	snprintf(v.domain, sizeof(v.domain), "mail.strict.example");
	dmarc_run(zone, "strict.example", true, "x.strict.example", &v, 1, 0, &o);
	CHECK_INT(o.result, DMARC_FAIL);
	/* a weak or partial pass earns no alignment */
	snprintf(v.domain, sizeof(v.domain), "example.com");
	v.partial_body = true;
	dmarc_run(zone, "example.com", false, NULL, &v, 1, 0, &o);
	CHECK_INT(o.result, DMARC_FAIL);
	dmarc_run(zone, "flaky.example", false, NULL, NULL, 0, 0, &o);
	CHECK_INT(o.result, DMARC_TEMPERROR);
	dmarc_run(zone, "two.example", false, NULL, NULL, 0, 0, &o);
	CHECK_INT(o.result, DMARC_NONE);
	dmarc_run(zone, "nowhere.example", false, NULL, NULL, 0, 0, &o);
	CHECK_INT(o.result, DMARC_NONE);
	dmarc_run(zone, NULL, false, NULL, NULL, 0, 0, &o);
	CHECK_INT(o.result, DMARC_PERMERROR);
}

TEST(auth_results_text)
{
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct dmarc_outcome dm;
	struct auth_results_in in;
	struct strbuf sb;
	size_t n = verify_with(rfc8463_msg, strlen(rfc8463_msg), rfc8463_keys, false, 0, v);

	memset(&dm, 0, sizeof(dm));
	dm.result = DMARC_PASS;
	dm.policy = DMARC_POLICY_REJECT;
	snprintf(dm.from_domain, sizeof(dm.from_domain), "football.example.com");
	memset(&in, 0, sizeof(in));
	in.authserv_id = "mx.example.net";
	in.spf_result = "pass";
	in.spf_mailfrom = "joe@football.example.com";
	in.dkim_checked = true;
	in.dkim = v;
	in.ndkim = n;
	in.dmarc = &dm;
	strbuf_init(&sb, 65536);
	CHECK_INT(auth_results_header(&in, &sb), 0);
	CHECK(strncmp(sb.data, "Authentication-Results: mx.example.net;\r\n\tspf=pass "
			       "smtp.mailfrom=joe@football.example.com;\r\n\tdkim=pass", 99) == 0);
	CHECK(strstr(sb.data, "header.b=\"9/dsDChY\"") != NULL);
	CHECK(strstr(sb.data, "header.s=test header.b=icKcLSEZ") != NULL);
	CHECK(strstr(sb.data, "dmarc=pass (p=reject dis=none) header.from=football.example.com\r\n") != NULL);
	/* a reason cannot close its comment early */
	strbuf_reset(&sb);
	snprintf(v[0].reason, sizeof(v[0].reason), "x) dkim=pass (y");
	in.ndkim = 1;
	in.dmarc = NULL;
	in.spf_result = NULL;
	CHECK_INT(auth_results_header(&in, &sb), 0);
	CHECK(strstr(sb.data, "(x dkim=pass y)") != NULL);
	strbuf_reset(&sb);
	memset(&in, 0, sizeof(in));
	in.authserv_id = "mx";
	CHECK_INT(auth_results_header(&in, &sb), 0);
	CHECK_STR(sb.data, "Authentication-Results: mx; none\r\n");
	strbuf_free(&sb);
}
