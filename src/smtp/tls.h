/*
 * TLS contexts for the server (STARTTLS and implicit TLS, several
 * certificates chosen by SNI) and for outbound opportunistic STARTTLS.
 * Without a configured certificate a self-signed one is generated once in
 * <data_dir>/tls/ (before privileges are dropped) and reused afterwards.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct config;
struct tls_context;

struct tls_context *tls_context_new(const struct config *cfg, char *err, size_t errlen);
void tls_context_free(struct tls_context *tls);
/* A new server-side SSL object for one inbound session. */
SSL *tls_server_ssl(struct tls_context *tls);
/* A new client-side SSL object (no verification: opportunistic), with SNI. */
SSL *tls_client_ssl(struct tls_context *tls, const char *server_name);
/* "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256" for logs and Received. */
void tls_describe(const SSL *ssl, char *buf, size_t len);
/* Generate a self-signed certificate and key for hostname at these paths. */
int tls_generate_self_signed(const char *hostname, const char *cert_path, const char *key_path,
			     char *err, size_t errlen);

#endif
