/*
 * Recipient callouts: ask a protected domain's own server whether it knows
 * a recipient, with an SMTP dialogue that stops before any mail moves
 * (EHLO, MAIL FROM:<>, RCPT TO, QUIT), and a cache of the answers so that
 * a directory harvest does not turn into as many probes of the backend.
 *
 * Only a definite answer counts: 2xx is VALID, 5xx is UNKNOWN. Everything
 * else (4xx, no host reachable, a broken dialogue, the deadline) is
 * TEMPFAIL, on which the caller accepts: mail is never refused because
 * the backend is down.
 */
#ifndef POSTERN_CALLOUT_H
#define POSTERN_CALLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/config.h"

struct event_base;
struct dns_resolver;
struct callout;
struct callout_cache;

enum callout_answer {
	CALLOUT_VALID = 0,
	CALLOUT_UNKNOWN,
	CALLOUT_TEMPFAIL,
};

#define CALLOUT_ADDRESS_MAX 512      /* longer recipients are neither probed nor cached */
#define CALLOUT_DETAIL_MAX 768

/* Seconds on the wall clock by default; tests inject their own. */
typedef time_t (*callout_clock_fn)(void *arg);

/*
 * At most max_entries answers; when full the oldest is dropped. Keys are
 * hashed with a secret per cache (recipients are chosen by the client).
 * The domain part of a key is compared case-insensitively, the local part
 * exactly. Not thread-safe: the cache belongs to the event loop.
 */
struct callout_cache *callout_cache_new(size_t max_entries, callout_clock_fn clock, void *clock_arg);
void callout_cache_free(struct callout_cache *c);
/* A fresh answer for rcpt into *answer; false when none is known. */
bool callout_cache_get(struct callout_cache *c, const char *rcpt, enum callout_answer *answer);
/* Remember answer for ttl seconds (replacing an older one); TEMPFAIL and ttl 0 are not kept. */
void callout_cache_put(struct callout_cache *c, const char *rcpt, enum callout_answer answer,
		       unsigned ttl);
size_t callout_cache_count(const struct callout_cache *c);

struct callout_params {
	const char *helo;                /* our host name for EHLO (copied) */
	const struct hostport *hosts;    /* tried in order until one answers its greeting (copied) */
	size_t nhosts;
	unsigned connect_timeout_ms;     /* per address */
	unsigned deadline_ms;            /* for the whole probe */
};

/*
 * detail says what decided: the RCPT reply, or why the probe failed
 * ("connection refused by 192.0.2.1:25"), for the log.
 */
typedef void (*callout_cb)(void *arg, enum callout_answer answer, const char *detail);

/*
 * Probe rcpt (an address without control characters). cb runs exactly
 * once from the loop, never from inside this call, unless callout_cancel
 * came first.
 */
struct callout *callout_start(struct event_base *base, struct dns_resolver *dns,
			      const struct callout_params *p, const char *rcpt, callout_cb cb,
			      void *arg);
/* Only before the callback ran. */
void callout_cancel(struct callout *co);

#endif
