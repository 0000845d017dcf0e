/*
 * The clamd backend: the same verdicts as virus.h, from a clamd daemon
 * over its INSTREAM protocol (unix or TCP socket). One connection per
 * scan, blocking with timeouts: it runs on a worker thread. Thread-safe.
 */
#ifndef POSTERN_CLAMD_H
#define POSTERN_CLAMD_H

#include <stddef.h>

#include "content/virus.h"

#define CLAMD_DEFAULT_TIMEOUT_MS 30000
#define CLAMD_DEFAULT_CHUNK (64u * 1024)

struct clamd_options {
	/* "/run/clamd.sock", "unix:/run/clamd.sock", "127.0.0.1:3310", "[::1]:3310" */
	const char *address;
	unsigned timeout_ms;                /* connect, and each send/receive; 0: default */
	size_t chunk_size;                  /* bytes per INSTREAM chunk; 0: default */
};

struct clamd_client;

/* Parses the address (no connection yet); NULL and err when it is malformed. */
struct clamd_client *clamd_client_new(const struct clamd_options *o, char *err, size_t errlen);
void clamd_client_free(struct clamd_client *c);

/* Streams data to clamd; out->version is clamd's VERSION answer. */
enum virus_status clamd_scan_buffer(struct clamd_client *c, const void *data, size_t len,
				    struct virus_result *out);
/* Asks clamd's VERSION ("ClamAV 1.4.6/27000/Mon Nov 24 ..."); -1 and err on failure. */
int clamd_version(struct clamd_client *c, char *buf, size_t buflen);

#endif
