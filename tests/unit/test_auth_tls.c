#include "unit.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/base64.h"
#include "core/config.h"
#include "smtp/auth.h"
#include "smtp/tls.h"

/* base64 of a byte string that may contain NULs. */
static const char *b64(const void *data, size_t len, char *out, size_t outlen)
{
	if (base64_encode(data, len, out, outlen) < 0)
		unit_fail(__FILE__, __LINE__, "base64_encode: buffer too small");
	return out;
}

TEST(auth_plain_decode_valid)
{
	struct sasl_credentials c;
	char enc[1100], field[AUTH_FIELD_MAX + 1], msg[1000];

	CHECK_INT(sasl_plain_decode(b64("\0alice\0s3cret", 13, enc, sizeof(enc)), &c), 0);
	CHECK_STR(c.authzid, "");
	CHECK_STR(c.authcid, "alice");
	CHECK_STR(c.password, "s3cret");
	CHECK_INT(sasl_plain_decode(b64("admin\0alice@example.org\0pass word", 33, enc, sizeof(enc)), &c), 0);
	CHECK_STR(c.authzid, "admin");
	CHECK_STR(c.authcid, "alice@example.org");
	CHECK_STR(c.password, "pass word");
	/* Each field may be AUTH_FIELD_MAX bytes long. */
	memset(field, 'f', AUTH_FIELD_MAX);
	memcpy(msg, field, AUTH_FIELD_MAX);
	msg[AUTH_FIELD_MAX] = '\0';
	memcpy(msg + AUTH_FIELD_MAX + 1, field, AUTH_FIELD_MAX);
	msg[2 * AUTH_FIELD_MAX + 1] = '\0';
	memcpy(msg + 2 * AUTH_FIELD_MAX + 2, field, AUTH_FIELD_MAX);
	CHECK_INT(sasl_plain_decode(b64(msg, 3 * AUTH_FIELD_MAX + 2, enc, sizeof(enc)), &c), 0);
	CHECK_INT(strlen(c.authzid), AUTH_FIELD_MAX);
	CHECK_INT(strlen(c.authcid), AUTH_FIELD_MAX);
	CHECK_INT(strlen(c.password), AUTH_FIELD_MAX);
	credentials_wipe(&c);
	CHECK_STR(c.authcid, "");
	CHECK_STR(c.password, "");
}

TEST(auth_plain_decode_malformed)
{
	static const struct {
		const char *data;
		size_t len;
	} bad[] = {
		{ "alice\0secret", 12 },        /* one NUL */
		{ "alicesecret", 11 },
		{ "\0alice\0secret\0", 14 },    /* extra NUL */
		{ "\0\0alice\0secret", 14 },
		{ "\0\0secret", 8 },            /* empty authcid */
		{ "\0alice\0", 7 },             /* empty password */
		{ "\0\0", 2 },
	};
	struct sasl_credentials c;
	char enc[1300], msg[900];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sasl_plain_decode(b64(bad[i].data, bad[i].len, enc, sizeof(enc)), &c) != -1)
			unit_fail(__FILE__, __LINE__, "accepted case %zu", i);
		CHECK_STR(c.password, "");
	}
	CHECK_INT(sasl_plain_decode("", &c), -1);
	CHECK_INT(sasl_plain_decode("=", &c), -1);
	CHECK_INT(sasl_plain_decode("AGFsaWNlAHNlY3JldA", &c), -1);      /* padding missing */
	CHECK_INT(sasl_plain_decode("AGFsaWNl AHNlY3JldA==", &c), -1);
	CHECK_INT(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", &c), 0);
	/* A field over the limit. */
	memset(msg, 'x', sizeof(msg));
	msg[0] = '\0';
	msg[6] = '\0';
	CHECK_INT(sasl_plain_decode(b64(msg, 7 + AUTH_FIELD_MAX, enc, sizeof(enc)), &c), 0);
	CHECK_INT(sasl_plain_decode(b64(msg, 8 + AUTH_FIELD_MAX, enc, sizeof(enc)), &c), -1);
	/* More than three fields could ever hold. */
	CHECK_INT(sasl_plain_decode(b64(msg, sizeof(msg), enc, sizeof(enc)), &c), -1);
}

TEST(auth_login_decode)
{
	char out[AUTH_FIELD_MAX + 1], enc[64];

	CHECK_INT(sasl_login_decode("YWxpY2VAZXhhbXBsZS5vcmc=", out, sizeof(out)), 0);
	CHECK_STR(out, "alice@example.org");
	CHECK_INT(sasl_login_decode("", out, sizeof(out)), -1);
	CHECK_INT(sasl_login_decode("=", out, sizeof(out)), -1);
	CHECK_INT(sasl_login_decode("YWxpY2U", out, sizeof(out)), -1);
	CHECK_INT(sasl_login_decode(b64("al\0ce", 5, enc, sizeof(enc)), out, sizeof(out)), -1);
	CHECK_INT(sasl_login_decode("YWxpY2U=", out, 6), 0);
	CHECK_STR(out, "alice");
	CHECK_INT(sasl_login_decode("YWxpY2U=", out, 5), -1);
	CHECK_INT(sasl_login_decode("YWxpY2U=", out, 0), -1);
}

TEST(auth_password_hash_and_verify)
{
	char hash[crypto_pwhash_STRBYTES], other[crypto_pwhash_STRBYTES];

	CHECK_INT(password_hash("correct horse", hash, sizeof(hash)), 0);
	CHECK(strncmp(hash, "$argon2id$", 10) == 0);
	CHECK(password_verify(hash, "correct horse"));
	CHECK(!password_verify(hash, "correct horse "));
	CHECK(!password_verify(hash, "Correct horse"));
	CHECK(!password_verify(hash, ""));
	/* Salted: the same password hashes differently. */
	CHECK_INT(password_hash("correct horse", other, sizeof(other)), 0);
	CHECK(strcmp(hash, other) != 0);
	CHECK(password_verify(other, "correct horse"));
	CHECK_INT(password_hash("x", other, 10), -1);
}

TEST(auth_password_verify_rejects_other_hashes)
{
	char hash[crypto_pwhash_STRBYTES], broken[crypto_pwhash_STRBYTES];

	CHECK(sodium_init() >= 0);
	/* argon2i is a valid libsodium string but not what we accept. */
	CHECK_INT(crypto_pwhash_str_alg(hash, "pw", 2, crypto_pwhash_argon2i_OPSLIMIT_INTERACTIVE,
					crypto_pwhash_argon2i_MEMLIMIT_INTERACTIVE,
					crypto_pwhash_ALG_ARGON2I13), 0);
	CHECK(strncmp(hash, "$argon2i$", 9) == 0);
	CHECK_INT(crypto_pwhash_str_verify(hash, "pw", 2), 0);
	CHECK(!password_verify(hash, "pw"));
	CHECK(!password_verify("", "pw"));
	CHECK(!password_verify("$argon2id$", "pw"));
	CHECK(!password_verify("{PLAIN}pw", "pw"));
	CHECK(!password_verify(NULL, "pw"));
	CHECK_INT(password_hash("pw", hash, sizeof(hash)), 0);
	memcpy(broken, hash, sizeof(broken));
	broken[strlen(broken) - 3] = '\0';
	CHECK(!password_verify(broken, "pw"));
	CHECK(password_verify(hash, "pw"));
}

/* A config with only what TLS reads; everything else zero. */
static void tls_test_config(struct config *cfg, const char *data_dir)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->hostname = (char *)"mx.example.org";
	cfg->data_dir = (char *)data_dir;
}

static char *read_whole(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;

	if (fp == NULL)
		return NULL;
	if ((buf = calloc(1, 65536)) != NULL)
		*len = fread(buf, 1, 65535, fp);
	fclose(fp);
	return buf;
}

static X509 *load_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *cert;

	if (fp == NULL)
		return NULL;
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	return cert;
}

static void common_name(X509 *cert, char *buf, int len)
{
	buf[0] = '\0';
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, len);
}

TEST(tls_self_signed_generated_then_reused)
{
	char err[512], path[512], key[512], cn[256];
	struct config cfg;
	struct tls_context *tls;
	struct stat st;
	char *first, *second;
	size_t flen = 0, slen = 0;
	X509 *cert;
	GENERAL_NAMES *san;
	const GENERAL_NAME *gn;
	int days, secs;

	tls_test_config(&cfg, unit_tmpdir());
	tls = tls_context_new(&cfg, err, sizeof(err));
	if (tls == NULL)
		unit_fail(__FILE__, __LINE__, "tls_context_new: %s", err);
	tls_context_free(tls);

	snprintf(path, sizeof(path), "%s/tls", unit_tmpdir());
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
	snprintf(key, sizeof(key), "%s/tls/selfsigned.key", unit_tmpdir());
	CHECK_INT(stat(key, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/tls/selfsigned.crt", unit_tmpdir());
	CHECK((first = read_whole(path, &flen)) != NULL);

	cert = load_cert(path);
	CHECK(cert != NULL);
	if (cert != NULL) {
		EVP_PKEY *pk = X509_get0_pubkey(cert);

		common_name(cert, cn, sizeof(cn));
		CHECK_STR(cn, "mx.example.org");
		CHECK_INT(X509_get_version(cert), X509_VERSION_3);
		CHECK_INT(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
		CHECK(pk != NULL && EVP_PKEY_is_a(pk, "EC"));
		CHECK_INT(EVP_PKEY_get_bits(pk), 256);
		san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
		CHECK(san != NULL && sk_GENERAL_NAME_num(san) == 1);
		if (san != NULL && sk_GENERAL_NAME_num(san) == 1) {
			gn = sk_GENERAL_NAME_value(san, 0);
			CHECK_INT(gn->type, GEN_DNS);
			CHECK_STR((const char *)ASN1_STRING_get0_data(gn->d.dNSName), "mx.example.org");
		}
		GENERAL_NAMES_free(san);
		CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)));
		CHECK_INT(days, 3650);
		CHECK(X509_check_host(cert, "mx.example.org", 0, 0, NULL) == 1);
		X509_free(cert);
	}

	/* A second start reuses the same pair. */
	tls = tls_context_new(&cfg, err, sizeof(err));
	if (tls == NULL)
		unit_fail(__FILE__, __LINE__, "second tls_context_new: %s", err);
	tls_context_free(tls);
	CHECK((second = read_whole(path, &slen)) != NULL);
	CHECK(first != NULL && second != NULL && flen == slen && memcmp(first, second, flen) == 0);
	free(second);

	/* Losing the key regenerates both. */
	CHECK_INT(unlink(key), 0);
	tls = tls_context_new(&cfg, err, sizeof(err));
	CHECK(tls != NULL);
	tls_context_free(tls);
	CHECK((second = read_whole(path, &slen)) != NULL);
	CHECK(first != NULL && second != NULL && (slen != flen || memcmp(first, second, flen) != 0));
	free(second);
	free(first);
}

/* Generate name.crt/name.key for host in the test directory. */
static void make_cert(const char *host, const char *name, char *cert, char *key, size_t len)
{
	char err[512];

	snprintf(cert, len, "%s/%s.crt", unit_tmpdir(), name);
	snprintf(key, len, "%s/%s.key", unit_tmpdir(), name);
	if (tls_generate_self_signed(host, cert, key, err, sizeof(err)) != 0)
		unit_fail(__FILE__, __LINE__, "tls_generate_self_signed %s: %s", host, err);
}

TEST(tls_context_errors)
{
	char err[512], cert_a[256], key_a[256], cert_b[256], key_b[256], missing[256];
	struct config cfg;
	struct tls_context *tls;

	make_cert("a.example.org", "a", cert_a, key_a, sizeof(cert_a));
	make_cert("b.example.org", "b", cert_b, key_b, sizeof(cert_b));
	snprintf(missing, sizeof(missing), "%s/missing.crt", unit_tmpdir());

	tls_test_config(&cfg, unit_tmpdir());
	cfg.tls_cert_file = cert_a;
	cfg.tls_key_file = key_a;
	tls = tls_context_new(&cfg, err, sizeof(err));
	CHECK(tls != NULL);
	tls_context_free(tls);

	cfg.tls_key_file = key_b;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, key_b) != NULL);
	CHECK(strstr(err, "does not match") != NULL);

	cfg.tls_cert_file = missing;
	cfg.tls_key_file = key_a;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, missing) != NULL);
	CHECK(strstr(err, "No such file") != NULL);

	cfg.tls_cert_file = cert_a;
	cfg.tls_key_file = cert_a;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, cert_a) != NULL);

	cfg.tls_key_file = NULL;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "together") != NULL);

	cfg.tls_key_file = key_a;
	cfg.tls_min_version = (char *)"SSLv3";
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "SSLv3") != NULL);

	cfg.tls_min_version = NULL;
	cfg.tls_ciphers = (char *)"NO-SUCH-CIPHER";
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "NO-SUCH-CIPHER") != NULL);

	/* A bad SNI entry fails the whole context, naming its file. */
	cfg.tls_ciphers = NULL;
	cfg.tls_sni = &(struct tls_cert_spec){ .name = (char *)"b.example.org", .cert_file = missing,
					       .key_file = key_b };
	cfg.ntls_sni = 1;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, missing) != NULL);

	tls_test_config(&cfg, NULL);
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "data_dir") != NULL);
	snprintf(missing, sizeof(missing), "%s/no/such/dir", unit_tmpdir());
	cfg.data_dir = missing;
	CHECK(tls_context_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, missing) != NULL);
}

static bool handshake_step(SSL *ssl, bool *done)
{
	int r, e;

	if (*done)
		return true;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return true;
	}
	e = SSL_get_error(ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/*
 * Handshake client against server over a socketpair in one thread
 * (non-blocking, alternating), send a line through, and return the common
 * name the client saw, or "" on failure. Frees both SSL objects.
 */
static void handshake_pair(SSL *client, SSL *server, char *cn, size_t cnlen, char *desc, size_t desclen)
{
	int sv[2];
	bool cdone = false, sdone = false, ok = true;
	char buf[16] = "";
	X509 *peer;

	cn[0] = desc[0] = '\0';
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		unit_fail(__FILE__, __LINE__, "socketpair");
		return;
	}
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	CHECK(client != NULL && server != NULL);
	SSL_set_fd(client, sv[0]);
	SSL_set_fd(server, sv[1]);
	for (int i = 0; i < 200 && ok && !(cdone && sdone); i++)
		ok = handshake_step(client, &cdone) && handshake_step(server, &sdone);
	if (ok && cdone && sdone) {
		CHECK_INT(SSL_write(client, "EHLO x\r\n", 8), 8);
		CHECK_INT(SSL_read(server, buf, sizeof(buf) - 1), 8);
		CHECK_STR(buf, "EHLO x\r\n");
		peer = SSL_get1_peer_certificate(client);
		if (peer != NULL)
			common_name(peer, cn, (int)cnlen);
		X509_free(peer);
		tls_describe(client, desc, desclen);
	}
	ERR_clear_error();
	SSL_free(client);
	SSL_free(server);
	close(sv[0]);
	close(sv[1]);
}

static void handshake(struct tls_context *tls, const char *sni, int client_max_version,
		      char *cn, size_t cnlen, char *desc, size_t desclen)
{
	SSL *client = tls_client_ssl(tls, sni);

	if (client_max_version != 0)
		SSL_set_max_proto_version(client, client_max_version);
	handshake_pair(client, tls_server_ssl(tls), cn, cnlen, desc, desclen);
}

TEST(tls_handshake_with_sni)
{
	char err[512], cn[256], desc[256];
	char net_crt[256], net_key[256], wild_crt[256], wild_key[256];
	struct tls_cert_spec sni[2];
	struct config cfg;
	struct tls_context *tls;

	make_cert("mail.example.net", "net", net_crt, net_key, sizeof(net_crt));
	make_cert("wild.example.com", "wild", wild_crt, wild_key, sizeof(wild_crt));
	sni[0] = (struct tls_cert_spec){ .name = (char *)"*.example.com", .cert_file = wild_crt,
					 .key_file = wild_key };
	sni[1] = (struct tls_cert_spec){ .name = (char *)"mail.example.net", .cert_file = net_crt,
					 .key_file = net_key };
	tls_test_config(&cfg, unit_tmpdir());
	cfg.tls_sni = sni;
	cfg.ntls_sni = 2;
	tls = tls_context_new(&cfg, err, sizeof(err));
	if (tls == NULL) {
		unit_fail(__FILE__, __LINE__, "tls_context_new: %s", err);
		return;
	}

	handshake(tls, "mail.example.net", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mail.example.net");
	CHECK(strncmp(desc, "TLSv1.3 cipher=TLS_", 19) == 0);
	CHECK(strstr(desc, " bits=") != NULL);
	handshake(tls, "MAIL.Example.NET", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mail.example.net");
	handshake(tls, "anything.example.com", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "wild.example.com");
	handshake(tls, "a.b.example.com", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	handshake(tls, "example.com", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	handshake(tls, "unknown.example.org", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	handshake(tls, NULL, 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	/* No SNI for IP literals (RFC 6066). */
	handshake(tls, "192.0.2.1", 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	/* TLS 1.2 still works by default. */
	handshake(tls, "mail.example.net", TLS1_2_VERSION, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mail.example.net");
	CHECK(strncmp(desc, "TLSv1.2 cipher=", 15) == 0);
	tls_context_free(tls);
}

/* A reload frees the context while a session still waits for its ClientHello. */
TEST(tls_sni_outlives_context_free)
{
	char err[512], cn[256], desc[256], crt[256], key[256];
	struct tls_cert_spec sni;
	struct config cfg;
	struct tls_context *old, *fresh;
	SSL *server;

	make_cert("mail.example.net", "net", crt, key, sizeof(crt));
	sni = (struct tls_cert_spec){ .name = (char *)"mail.example.net", .cert_file = crt, .key_file = key };
	tls_test_config(&cfg, unit_tmpdir());
	cfg.tls_sni = &sni;
	cfg.ntls_sni = 1;
	old = tls_context_new(&cfg, err, sizeof(err));
	fresh = tls_context_new(&cfg, err, sizeof(err));
	CHECK(old != NULL && fresh != NULL);
	if (old == NULL || fresh == NULL)
		return;
	server = tls_server_ssl(old);
	tls_context_free(old);
	handshake_pair(tls_client_ssl(fresh, "mail.example.net"), server, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mail.example.net");
	tls_context_free(fresh);
}

TEST(tls_min_version_enforced)
{
	char err[512], cn[256], desc[256];
	struct config cfg;
	struct tls_context *tls;

	tls_test_config(&cfg, unit_tmpdir());
	cfg.tls_min_version = (char *)"TLSv1.3";
	tls = tls_context_new(&cfg, err, sizeof(err));
	if (tls == NULL) {
		unit_fail(__FILE__, __LINE__, "tls_context_new: %s", err);
		return;
	}
	handshake(tls, NULL, TLS1_2_VERSION, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "");
	handshake(tls, NULL, 0, cn, sizeof(cn), desc, sizeof(desc));
	CHECK_STR(cn, "mx.example.org");
	tls_context_free(tls);
}

TEST(tls_describe_before_handshake)
{
	char err[512], desc[128];
	struct config cfg;
	struct tls_context *tls;
	SSL *ssl;

	tls_test_config(&cfg, unit_tmpdir());
	tls = tls_context_new(&cfg, err, sizeof(err));
	CHECK(tls != NULL);
	if (tls == NULL)
		return;
	ssl = tls_client_ssl(tls, "mx.example.org");
	tls_describe(ssl, desc, sizeof(desc));
	CHECK(strstr(desc, "cipher=none") != NULL);
	SSL_free(ssl);
	tls_context_free(tls);
}
