/*
 * Recipient look-ups in an LDAP directory: does an entry match the filter
 * built from the address? Answers use the callout vocabulary
 * (policy/callout.h): an entry found is VALID, none is UNKNOWN, and any
 * failure (directory down, bad credentials, timeout, a filter too long) is
 * TEMPFAIL, on which the caller accepts.
 *
 * libldap is blocking, so each look-up runs on the worker pool with
 * every step bounded by the configured timeout, and its answer comes back
 * on the event loop. Bound connections are kept for reuse in a small pool
 * shared by the workers.
 */
#ifndef POSTERN_LDAP_LOOKUP_H
#define POSTERN_LDAP_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/callout.h"

struct workpool;
struct ldap_lookup;
struct ldap_query;

#define LDAP_LOOKUP_FILTER_MAX 1024    /* bytes of an expanded filter */

struct ldap_lookup_params {
	const char *uri;                 /* one or more, space-separated (copied) */
	const char *base;                /* search base (copied) */
	const char *filter;              /* template: %s address, %u local part, %d domain, %% (copied) */
	const char *bind_dn;             /* NULL: anonymous (copied) */
	const char *bind_password;       /* (copied) */
	unsigned timeout_ms;             /* connect, bind and search of one look-up together */
};

/*
 * The directory settings and the pool of connections, created without
 * touching the network. NULL with err filled on a bad URI or filter
 * template. Reference-counted from the event loop thread only.
 */
struct ldap_lookup *ldap_lookup_new(const struct ldap_lookup_params *p, char *err, size_t errlen);
struct ldap_lookup *ldap_lookup_ref(struct ldap_lookup *l);
void ldap_lookup_unref(struct ldap_lookup *l);

/*
 * One blocking look-up of rcpt, for a worker thread (any number of them
 * at once). detail says what decided, for the log.
 */
enum callout_answer ldap_lookup_run(struct ldap_lookup *l, const char *rcpt, char *detail,
				    size_t detaillen);

/*
 * Look rcpt up on the worker pool (high priority: a client waits). cb runs
 * exactly once on the event loop, never from inside this call, unless
 * ldap_query_cancel came first. The query holds a reference on l.
 */
struct ldap_query *ldap_query_start(struct ldap_lookup *l, struct workpool *pool, const char *rcpt,
				    callout_cb cb, void *arg);
/* Only before the callback ran; the look-up in progress finishes unseen. */
void ldap_query_cancel(struct ldap_query *q);

/*
 * Append s[0..len) to out (out_used bytes used of outlen, NUL kept) as an
 * RFC 4515 assertion value: * ( ) \ NUL and every byte outside printable
 * ASCII become \XX. -1 when it does not fit.
 */
int ldap_filter_escape(const char *s, size_t len, char *out, size_t outlen, size_t *out_used);
/*
 * The filter for rcpt ("local@domain"; the last @ splits it): each %s,
 * %u, %d of tmpl replaced by the escaped address, local part, domain, and
 * %% by %. The length written, or -1 when the result would not fit in
 * outlen (NUL included) or tmpl has another % sequence.
 */
int ldap_filter_expand(const char *tmpl, const char *rcpt, char *out, size_t outlen);
/* A template with known % sequences only and balanced parentheses. */
bool ldap_filter_template_valid(const char *tmpl, char *why, size_t whylen);

#endif
