/*
 * SASL PLAIN/LOGIN decoding and argon2id password checks. Every buffer
 * that held a secret is wiped before it goes out of scope, also on error.
 */
#include "smtp/auth.h"

#include <sodium.h>
#include <string.h>

#include "core/base64.h"

#define ARGON2ID_PREFIX "$argon2id$"

/* Largest PLAIN message: three fields and the two NUL separators. */
#define PLAIN_MAX (3 * AUTH_FIELD_MAX + 2)

/* Copy one NUL-separated PLAIN field; -1 if it is too long. */
static int plain_field(const unsigned char *p, size_t n, char *out)
{
	if (n > AUTH_FIELD_MAX)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/*
 * RFC 4616: [authzid] NUL authcid NUL passwd, with exactly two NULs so a
 * password can never be split differently by us and by a logging proxy.
 */
int sasl_plain_decode(const char *b64, struct sasl_credentials *out)
{
	unsigned char buf[PLAIN_MAX];
	const unsigned char *nul1, *nul2;
	long n;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	n = base64_decode(b64, strlen(b64), buf, sizeof(buf));
	if (n < 0)
		goto out;
	if ((nul1 = memchr(buf, '\0', (size_t)n)) == NULL)
		goto out;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(buf + n - (nul1 + 1)));
	if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(buf + n - (nul2 + 1))) != NULL)
		goto out;
	if (nul2 == nul1 + 1 || nul2 + 1 == buf + n)
		goto out;
	if (plain_field(buf, (size_t)(nul1 - buf), out->authzid) < 0 ||
	    plain_field(nul1 + 1, (size_t)(nul2 - nul1 - 1), out->authcid) < 0 ||
	    plain_field(nul2 + 1, (size_t)(buf + n - nul2 - 1), out->password) < 0)
		goto out;
	rc = 0;
out:
	sodium_memzero(buf, sizeof(buf));
	if (rc < 0)
		credentials_wipe(out);
	return rc;
}

/* An empty or NUL-carrying field can be neither a user name nor a password. */
int sasl_login_decode(const char *b64, char *out, size_t outlen)
{
	long n;

	if (outlen == 0)
		return -1;
	n = base64_decode(b64, strlen(b64), out, outlen - 1);
	if (n <= 0 || memchr(out, '\0', (size_t)n) != NULL) {
		sodium_memzero(out, outlen);
		return -1;
	}
	out[n] = '\0';
	return 0;
}

int password_hash(const char *password, char *out, size_t outlen)
{
	if (sodium_init() < 0 || outlen < crypto_pwhash_STRBYTES)
		return -1;
	if (crypto_pwhash_str_alg(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -1;
	return 0;
}

/*
 * libsodium's verifier also accepts argon2i strings; only argon2id is
 * allowed so a weaker hash slipped into the configuration is not honoured.
 */
bool password_verify(const char *hash, const char *password)
{
	if (hash == NULL || password == NULL || sodium_init() < 0)
		return false;
	if (strncmp(hash, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) != 0 ||
	    strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
		return false;
	return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

void credentials_wipe(struct sasl_credentials *c)
{
	sodium_memzero(c, sizeof(*c));
}
