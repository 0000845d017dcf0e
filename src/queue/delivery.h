/*
 * Outbound SMTP delivery: one request is one message to a group of
 * recipients that share a destination (a protected domain's configured
 * hosts, or the MX hosts of a domain). Tries hosts in order (MX preference,
 * then each address), opportunistic STARTTLS, pipelining when offered,
 * dot-stuffs the spooled bytes, keeps idle connections for reuse, and
 * reports a result per recipient.
 */
#ifndef POSTERN_DELIVERY_H
#define POSTERN_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "queue/envelope.h"

struct postern;
struct delivery_smtp;

enum delivery_status {
	DELIVERY_OK = 0,          /* 2xx from the server */
	DELIVERY_TEMPFAIL,        /* 4xx, no host reachable, timeouts, DNS temp failure */
	DELIVERY_PERMFAIL,        /* 5xx, no such domain, SMTPUTF8 refused, ... */
};

struct delivery_rcpt_result {
	enum delivery_status status;
	/*
	 * SMTP code, or 0 when no server said anything. Permanent failures
	 * decided here carry the code their reply names: 550 5.1.2 (no such
	 * domain), 556 5.1.10 (null MX), 553 5.6.7 (SMTPUTF8 not offered),
	 * 554 5.6.3 (BINARYMIME not offered), 552 5.3.4 (over the server's SIZE).
	 */
	int code;
	char reply[512];          /* "550 5.1.1 <x>: no such user" or "4.4.1 connect to ...: ..." */
	char remote[300];         /* "mx.example.net[192.0.2.1]:25" */
};

struct delivery_request {
	const struct envelope *env;
	size_t *rcpt_index;       /* indexes into env->rcpts */
	size_t nrcpts;
	const char *domain;       /* destination domain (lower case) */
	const struct hostport *hosts; /* protected domain's hosts, or NULL for MX */
	size_t nhosts;
	int body_fd;              /* spool file, message at offset 0 */
	uint64_t body_len;
};

/* results[i] belongs to req->rcpt_index[i]. */
typedef void (*delivery_done_cb)(void *arg, const struct delivery_rcpt_result *results, size_t n);

struct delivery_smtp *delivery_smtp_new(struct postern *pt);
/* Deliveries still running are dropped without their callback. */
void delivery_smtp_free(struct delivery_smtp *d);
/*
 * Start a delivery. The request's memory (and body_fd) must stay valid
 * until cb is called; cb is always called exactly once, from the loop.
 */
void delivery_smtp_start(struct delivery_smtp *d, const struct delivery_request *req,
			 delivery_done_cb cb, void *arg);
/* Close idle cached connections (on reload and shutdown). */
void delivery_smtp_close_idle(struct delivery_smtp *d);

#endif
