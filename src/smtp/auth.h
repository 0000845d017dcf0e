/*
 * SMTP AUTH (RFC 4954) mechanism decoding and password checks. Passwords
 * are stored as argon2id strings (libsodium crypto_pwhash_str); verifying
 * one is deliberately slow, so sessions call password_verify() from the
 * worker pool, never on the event loop.
 */
#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_FIELD_MAX 256

struct sasl_credentials {
	char authzid[AUTH_FIELD_MAX + 1];
	char authcid[AUTH_FIELD_MAX + 1];
	char password[AUTH_FIELD_MAX + 1];
};

/* RFC 4616 PLAIN: base64("authzid\0authcid\0password"); -1 when malformed. */
int sasl_plain_decode(const char *b64, struct sasl_credentials *out);
/* LOGIN: one base64 field (user name or password). */
int sasl_login_decode(const char *b64, char *out, size_t outlen);

/* argon2id hash in libsodium's string format; -1 on failure. */
int password_hash(const char *password, char *out, size_t outlen);
/* Constant-time check of a password against an argon2id string. */
bool password_verify(const char *hash, const char *password);
/* Wipe secrets from memory. */
void credentials_wipe(struct sasl_credentials *c);

#endif
