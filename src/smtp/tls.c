/*
 * TLS contexts. The server has one SSL_CTX per certificate: the default
 * one from [tls] (or a generated self-signed one) and one per [tls "name"]
 * entry, switched by the SNI callback. Outbound delivery shares one client
 * SSL_CTX that does not verify: opportunistic STARTTLS (RFC 7435) protects
 * against passive listeners only, and refusing a bad certificate would just
 * make the message go in clear text.
 */
#define LOG_MODULE "tls"

#include "smtp/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"

#define SELFSIGNED_DAYS 3650
#define SELFSIGNED_CERT "selfsigned.crt"
#define SELFSIGNED_KEY "selfsigned.key"

struct tls_sni_entry {
	char *pattern;       /* "mail.example.org" or "*.example.org" */
	SSL_CTX *ctx;
};

/*
 * The SNI certificates belong to the default server SSL_CTX (as ex_data),
 * not to struct tls_context: a reload frees the context while sessions
 * that started under it may still be waiting for their ClientHello, and
 * each of those SSL objects keeps the default SSL_CTX, and so the table
 * its servername callback reads, alive.
 */
struct tls_sni_table {
	struct tls_sni_entry *entries;
	size_t n;
};

struct tls_context {
	SSL_CTX *server;     /* default certificate, owns the SNI table */
	SSL_CTX *client;
};

/*
 * OpenSSL ex_data indexes are process-wide by design: registered once,
 * read-only afterwards.
 */
static pthread_once_t sni_index_once = PTHREAD_ONCE_INIT;
static int sni_index = -1;

/*
 * "file: what: OpenSSL reason"; also drains the OpenSSL error queue. The
 * oldest error is the root cause ("No such file or directory"); the later
 * ones only say which layer passed it up.
 */
static void tls_error(char *err, size_t errlen, const char *file, const char *what)
{
	char reason[256] = "unknown error";
	unsigned long e = ERR_peek_error();

	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	if (file != NULL)
		snprintf(err, errlen, "%s: %s: %s", file, what, reason);
	else
		snprintf(err, errlen, "%s: %s", what, reason);
}

static int tls_parse_min_version(const char *name, int *version)
{
	if (name == NULL || strcasecmp(name, "TLSv1.2") == 0)
		*version = TLS1_2_VERSION;
	else if (strcasecmp(name, "TLSv1.3") == 0)
		*version = TLS1_3_VERSION;
	else
		return -1;
	return 0;
}

/* Settings shared by every server context, so SNI switching changes only the certificate. */
static SSL_CTX *server_ctx_new(const struct config *cfg, int min_version, const char *cert_file,
			       const char *key_file, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "postern";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		tls_error(err, errlen, NULL, "cannot create server TLS context");
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_dh_auto(ctx, 1);
	if (!SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) ||
	    !SSL_CTX_set_min_proto_version(ctx, min_version)) {
		tls_error(err, errlen, NULL, "cannot configure server TLS context");
		goto fail;
	}
	if (cfg->tls_ciphers != NULL && !SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers)) {
		tls_error(err, errlen, cfg->tls_ciphers, "invalid tls ciphers");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tls_error(err, errlen, cert_file, "cannot load certificate chain");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			tls_error(err, errlen, key_file, "private key does not match the certificate");
		else
			tls_error(err, errlen, key_file, "cannot load private key");
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, errlen, key_file, "private key does not match the certificate");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *client_ctx_new(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		tls_error(err, errlen, NULL, "cannot create client TLS context");
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_error(err, errlen, NULL, "cannot configure client TLS context");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void sni_table_free(struct tls_sni_table *table)
{
	if (table == NULL)
		return;
	for (size_t i = 0; i < table->n; i++) {
		SSL_CTX_free(table->entries[i].ctx);
		free(table->entries[i].pattern);
	}
	free(table->entries);
	free(table);
}

/* Called for every SSL_CTX that is freed; only the default server one carries a table. */
static void sni_table_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	sni_table_free(ptr);
}

static void sni_index_init(void)
{
	sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_table_ex_free);
}

/* Exact names win over wildcards; "*.example.org" matches exactly one more label. */
static SSL_CTX *sni_lookup(const struct tls_sni_table *table, const char *name)
{
	const char *dot = strchr(name, '.');

	for (size_t i = 0; i < table->n; i++) {
		if (strcasecmp(table->entries[i].pattern, name) == 0)
			return table->entries[i].ctx;
	}
	if (dot == NULL || dot == name)
		return NULL;
	for (size_t i = 0; i < table->n; i++) {
		const char *p = table->entries[i].pattern;

		if (p[0] == '*' && p[1] == '.' && strcasecmp(p + 2, dot + 1) == 0)
			return table->entries[i].ctx;
	}
	return NULL;
}

/* Unknown or absent names keep the default certificate rather than failing the handshake. */
static int tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_sni_table *table = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx;

	if (name != NULL && (ctx = sni_lookup(table, name)) != NULL)
		SSL_set_SSL_CTX(ssl, ctx);
	return SSL_TLSEXT_ERR_OK;
}

/* One server context per [tls "name"] entry, handed to the default context's SNI callback. */
static int sni_attach(SSL_CTX *server, const struct config *cfg, int min_version, char *err, size_t errlen)
{
	struct tls_sni_table *table;

	if (cfg->ntls_sni == 0)
		return 0;
	if (pthread_once(&sni_index_once, sni_index_init) != 0 || sni_index < 0) {
		tls_error(err, errlen, NULL, "cannot register the SNI table");
		return -1;
	}
	table = xcalloc(1, sizeof(*table));
	table->entries = xcalloc(cfg->ntls_sni, sizeof(*table->entries));
	for (size_t i = 0; i < cfg->ntls_sni; i++) {
		const struct tls_cert_spec *spec = &cfg->tls_sni[i];
		SSL_CTX *ctx = server_ctx_new(cfg, min_version, spec->cert_file, spec->key_file, err, errlen);

		if (ctx == NULL) {
			sni_table_free(table);
			return -1;
		}
		table->entries[table->n].pattern = xstrdup(spec->name);
		table->entries[table->n].ctx = ctx;
		table->n++;
	}
	if (!SSL_CTX_set_ex_data(server, sni_index, table)) {
		tls_error(err, errlen, NULL, "cannot attach the SNI table");
		sni_table_free(table);
		return -1;
	}
	SSL_CTX_set_tlsext_servername_callback(server, tls_servername_cb);
	SSL_CTX_set_tlsext_servername_arg(server, table);
	return 0;
}

/* Write a PEM file through a temporary name so a crash never leaves half a key. */
static int pem_write_atomic(const char *path, mode_t mode, EVP_PKEY *pkey, X509 *cert,
			    char *err, size_t errlen)
{
	char *tmp = xasprintf("%s.tmp", path);
	FILE *fp = NULL;
	int fd, ok, rc = -1;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (pkey != NULL)
		ok = PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_X509(fp, cert);
	if (!ok) {
		tls_error(err, errlen, tmp, "cannot write PEM");
		fclose(fp);
		goto remove_tmp;
	}
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		fclose(fp);
		goto remove_tmp;
	}
	if (fclose(fp) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
		goto remove_tmp;
	}
	rc = 0;
	goto out;
remove_tmp:
	unlink(tmp);
out:
	free(tmp);
	return rc;
}

static int x509_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* subjectAltName built as a structure, not a config string, so no host name can inject options. */
static int x509_add_san_dns(X509 *cert, const char *hostname)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int rc = -1;

	if (names == NULL || gn == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, hostname, -1))
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto out;
	gn = NULL;
	if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(names);
	return rc;
}

static int x509_random_serial(X509 *cert)
{
	BIGNUM *bn = BN_new();
	int rc = -1;

	if (bn != NULL && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL)
		rc = 0;
	BN_free(bn);
	return rc;
}

/* The CN is limited to 64 characters (RFC 5280 ub-common-name); the SAN carries longer names. */
static X509 *selfsigned_build(const char *hostname, EVP_PKEY *pkey)
{
	X509 *cert = X509_new();
	X509_NAME *name;

	if (cert == NULL)
		return NULL;
	name = X509_get_subject_name(cert);
	if (!X509_set_version(cert, X509_VERSION_3) || x509_random_serial(cert) < 0 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), 0) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), SELFSIGNED_DAYS, 0, NULL) == NULL ||
	    !X509_set_pubkey(cert, pkey))
		goto fail;
	if (strlen(hostname) <= 64 &&
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname, -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(cert, name) || x509_add_san_dns(cert, hostname) < 0 ||
	    x509_add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    x509_add_ext(cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    x509_add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    x509_add_ext(cert, NID_subject_key_identifier, "hash") < 0 ||
	    X509_sign(cert, pkey, EVP_sha256()) <= 0)
		goto fail;
	return cert;
fail:
	X509_free(cert);
	return NULL;
}

/* The key is renamed into place before the certificate: a pair only counts once both exist. */
int tls_generate_self_signed(const char *hostname, const char *cert_path, const char *key_path,
			     char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	X509 *cert = NULL;
	int rc = -1;

	if (hostname == NULL || hostname[0] == '\0') {
		snprintf(err, errlen, "%s: no host name for the self-signed certificate", cert_path);
		return -1;
	}
	ERR_clear_error();
	if ((pkey = EVP_EC_gen("P-256")) == NULL) {
		tls_error(err, errlen, key_path, "cannot generate EC P-256 key");
		return -1;
	}
	if ((cert = selfsigned_build(hostname, pkey)) == NULL) {
		tls_error(err, errlen, cert_path, "cannot build self-signed certificate");
		goto out;
	}
	if (pem_write_atomic(key_path, 0600, pkey, NULL, err, errlen) < 0 ||
	    pem_write_atomic(cert_path, 0644, NULL, cert, err, errlen) < 0)
		goto out;
	log_info("generated self-signed certificate cert=%s key=%s hostname=%s", cert_path, key_path, hostname);
	rc = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return rc;
}

/* The default certificate: configured files, or the generated pair in <data_dir>/tls/. */
static SSL_CTX *default_server_ctx(const struct config *cfg, int min_version, char *err, size_t errlen)
{
	char *dir, *cert, *key;
	SSL_CTX *ctx = NULL;

	if (cfg->tls_cert_file != NULL && cfg->tls_key_file != NULL)
		return server_ctx_new(cfg, min_version, cfg->tls_cert_file, cfg->tls_key_file, err, errlen);
	if (cfg->tls_cert_file != NULL || cfg->tls_key_file != NULL) {
		snprintf(err, errlen, "tls: cert_file and key_file must be set together");
		return NULL;
	}
	if (cfg->data_dir == NULL) {
		snprintf(err, errlen, "tls: no certificate configured and no data_dir for a self-signed one");
		return NULL;
	}
	dir = xasprintf("%s/tls", cfg->data_dir);
	cert = xasprintf("%s/%s", dir, SELFSIGNED_CERT);
	key = xasprintf("%s/%s", dir, SELFSIGNED_KEY);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create directory: %s", dir, strerror(errno));
		goto out;
	}
	if (access(cert, F_OK) < 0 || access(key, F_OK) < 0) {
		if (tls_generate_self_signed(cfg->hostname, cert, key, err, errlen) < 0)
			goto out;
	}
	ctx = server_ctx_new(cfg, min_version, cert, key, err, errlen);
out:
	free(key);
	free(cert);
	free(dir);
	return ctx;
}

struct tls_context *tls_context_new(const struct config *cfg, char *err, size_t errlen)
{
	struct tls_context *tls;
	int min_version;

	ERR_clear_error();
	if (tls_parse_min_version(cfg->tls_min_version, &min_version) < 0) {
		snprintf(err, errlen, "tls: unknown min_version '%s' (TLSv1.2 or TLSv1.3)", cfg->tls_min_version);
		return NULL;
	}
	tls = xcalloc(1, sizeof(*tls));
	if ((tls->server = default_server_ctx(cfg, min_version, err, errlen)) == NULL ||
	    sni_attach(tls->server, cfg, min_version, err, errlen) < 0 ||
	    (tls->client = client_ctx_new(err, errlen)) == NULL)
		goto fail;
	return tls;
fail:
	tls_context_free(tls);
	return NULL;
}

void tls_context_free(struct tls_context *tls)
{
	if (tls == NULL)
		return;
	SSL_CTX_free(tls->client);
	SSL_CTX_free(tls->server);
	free(tls);
}

SSL *tls_server_ssl(struct tls_context *tls)
{
	SSL *ssl = SSL_new(tls->server);

	if (ssl == NULL) {
		unsigned long e = ERR_get_error();

		log_error("cannot create server TLS session: %s", ERR_reason_error_string(e));
		ERR_clear_error();
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

static bool is_ip_literal(const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* RFC 6066 forbids IP literals in SNI, so those connect without a server name. */
SSL *tls_client_ssl(struct tls_context *tls, const char *server_name)
{
	SSL *ssl = SSL_new(tls->client);

	if (ssl == NULL) {
		unsigned long e = ERR_get_error();

		log_error("cannot create client TLS session: %s", ERR_reason_error_string(e));
		ERR_clear_error();
		return NULL;
	}
	if (server_name != NULL && server_name[0] != '\0' && !is_ip_literal(server_name) &&
	    !SSL_set_tlsext_host_name(ssl, server_name)) {
		log_warn("cannot set TLS server name name=%s", server_name);
		ERR_clear_error();
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

void tls_describe(const SSL *ssl, char *buf, size_t len)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);

	if (cipher == NULL) {
		snprintf(buf, len, "%s cipher=none bits=0", SSL_get_version(ssl));
		return;
	}
	snprintf(buf, len, "%s cipher=%s bits=%d", SSL_get_version(ssl), SSL_CIPHER_get_name(cipher),
		 SSL_CIPHER_get_bits(cipher, NULL));
}
