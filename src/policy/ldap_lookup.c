/*
 * LDAP recipient look-ups (see ldap_lookup.h).
 *
 * Threads: the settings of a struct ldap_lookup never change after
 * creation, so workers read them freely; the pool of idle connections is
 * the only shared mutable part and has its own mutex. Each connection is
 * used by one worker at a time (taken out of the pool while in use), and
 * the pool keeps at most LDAP_POOL_MAX idle ones, so there are never more
 * connections than workers plus that. The reference count is touched on
 * the event loop only (creation, query start and done, engine free), which
 * is what lets a reload free the engine while a look-up still runs.
 */
#include "policy/ldap_lookup.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <ldap.h>

#include "core/alloc.h"
#include "core/workpool.h"

#define LOG_MODULE "ldap"
#include "core/log.h"

#define LDAP_POOL_MAX 8                /* idle bound connections kept */

struct ldap_lookup {
	unsigned refcount;
	char *uri;
	char *base;
	char *filter;
	char *bind_dn;
	char *bind_password;
	unsigned timeout_ms;
	pthread_mutex_t lock;              /* guards idle and nidle */
	LDAP *idle[LDAP_POOL_MAX];
	size_t nidle;
};

struct ldap_query {
	struct ldap_lookup *l;
	char *rcpt;
	callout_cb cb;
	void *arg;
	bool cancelled;                    /* loop thread only */
	enum callout_answer answer;        /* written by the worker, read in done */
	char detail[CALLOUT_DETAIL_MAX];
};

/* Keep the NUL: every piece goes through here so nothing runs past outlen. */
static int filter_put(char *out, size_t outlen, size_t *used, const char *s, size_t n)
{
	if (*used >= outlen || n >= outlen - *used)
		return -1;
	memcpy(out + *used, s, n);
	*used += n;
	out[*used] = '\0';
	return 0;
}

static bool filter_byte_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '*' && c != '(' && c != ')' && c != '\\';
}

int ldap_filter_escape(const char *s, size_t len, char *out, size_t outlen, size_t *out_used)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[3] = { '\\', hex[c >> 4], hex[c & 0xf] };

		if (filter_byte_plain(c) ? filter_put(out, outlen, out_used, s + i, 1) < 0
					 : filter_put(out, outlen, out_used, esc, sizeof(esc)) < 0)
			return -1;
	}
	return 0;
}

int ldap_filter_expand(const char *tmpl, const char *rcpt, char *out, size_t outlen)
{
	const char *at = strrchr(rcpt, '@');
	size_t locallen = at != NULL ? (size_t)(at - rcpt) : strlen(rcpt);
	const char *domain = at != NULL ? at + 1 : "";
	size_t used = 0;
	int rc = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	for (const char *p = tmpl; *p != '\0' && rc == 0; p++) {
		if (*p != '%') {
			rc = filter_put(out, outlen, &used, p, 1);
			continue;
		}
		switch (*++p) {
		case 's':
			rc = ldap_filter_escape(rcpt, strlen(rcpt), out, outlen, &used);
			break;
		case 'u':
			rc = ldap_filter_escape(rcpt, locallen, out, outlen, &used);
			break;
		case 'd':
			rc = ldap_filter_escape(domain, strlen(domain), out, outlen, &used);
			break;
		case '%':
			rc = filter_put(out, outlen, &used, "%", 1);
			break;
		default:
			return -1;
		}
	}
	return rc < 0 ? -1 : (int)used;
}

bool ldap_filter_template_valid(const char *tmpl, char *why, size_t whylen)
{
	int depth = 0;

	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p == '%') {
			if (p[1] != 's' && p[1] != 'u' && p[1] != 'd' && p[1] != '%') {
				if (p[1] == '\0')
					snprintf(why, whylen, "a lone %% at the end (write %%%% for a %%)");
				else
					snprintf(why, whylen, "unknown sequence %%%c (%%s, %%u, %%d and %%%% are known)",
						 p[1]);
				return false;
			}
			p++;
		} else if (*p == '(') {
			depth++;
		} else if (*p == ')' && --depth < 0) {
			break;
		}
	}
	if (depth != 0) {
		snprintf(why, whylen, "unbalanced parentheses");
		return false;
	}
	return true;
}

static uint64_t ldap_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What is left of the look-up's time, never 0 (libldap reads 0 as "no limit" in places). */
static struct timeval ldap_time_left(uint64_t deadline)
{
	uint64_t now = ldap_now_ms();
	uint64_t left = deadline > now ? deadline - now : 1;

	return (struct timeval){ .tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)(left % 1000) * 1000 };
}

/* The server's own words are often the useful part ("invalid DN", "no such object"). */
static void ldap_describe(LDAP *ld, int rc, const char *what, char *detail, size_t len)
{
	char *diag = NULL;

	if (ld != NULL)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	snprintf(detail, len, "%s: %s%s%s", what, ldap_err2string(rc),
		 diag != NULL && *diag != '\0' ? ": " : "", diag != NULL ? diag : "");
	ldap_memfree(diag);
}

static void ldap_close(LDAP *ld)
{
	ldap_unbind_ext_s(ld, NULL, NULL);
}

/* A new connection, bound when a DN is configured (anonymous ones connect at the search). */
static LDAP *ldap_lookup_connect(struct ldap_lookup *l, uint64_t deadline, char *detail, size_t len)
{
	struct timeval tv = ldap_time_left(deadline);
	int version = LDAP_VERSION3;
	struct berval cred;
	LDAP *ld = NULL;
	int rc;

	rc = ldap_initialize(&ld, l->uri);
	if (rc != LDAP_SUCCESS) {
		ldap_describe(NULL, rc, "initialize", detail, len);
		return NULL;
	}
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS) {
		snprintf(detail, len, "cannot set the connection's options");
		ldap_close(ld);
		return NULL;
	}
	if (l->bind_dn == NULL)
		return ld;
	cred.bv_val = l->bind_password != NULL ? l->bind_password : (char *)"";
	cred.bv_len = strlen(cred.bv_val);
	rc = ldap_sasl_bind_s(ld, l->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	if (rc != LDAP_SUCCESS) {
		char what[160];

		snprintf(what, sizeof(what), "bind as %.120s", l->bind_dn);
		ldap_describe(ld, rc, what, detail, len);
		ldap_close(ld);
		return NULL;
	}
	return ld;
}

static LDAP *ldap_pool_take(struct ldap_lookup *l)
{
	LDAP *ld = NULL;

	pthread_mutex_lock(&l->lock);
	if (l->nidle > 0)
		ld = l->idle[--l->nidle];
	pthread_mutex_unlock(&l->lock);
	return ld;
}

static void ldap_pool_give(struct ldap_lookup *l, LDAP *ld)
{
	pthread_mutex_lock(&l->lock);
	if (l->nidle < LDAP_POOL_MAX) {
		l->idle[l->nidle++] = ld;
		ld = NULL;
	}
	pthread_mutex_unlock(&l->lock);
	if (ld != NULL)
		ldap_close(ld);
}

/* LDAP_SUCCESS with *found set, or the error; at most one entry and no attributes travel. */
static int ldap_lookup_search(struct ldap_lookup *l, LDAP *ld, const char *filter, uint64_t deadline,
			      bool *found)
{
	char no_attrs[] = LDAP_NO_ATTRS;
	char *attrs[] = { no_attrs, NULL };
	struct timeval tv = ldap_time_left(deadline);
	LDAPMessage *res = NULL;
	int rc;

	rc = ldap_search_ext_s(ld, l->base, LDAP_SCOPE_SUBTREE, filter, attrs, 1, NULL, NULL, &tv, 1,
			       &res);
	if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) {
		*found = res != NULL && ldap_count_entries(ld, res) > 0;
		rc = LDAP_SUCCESS;
	}
	ldap_msgfree(res);
	return rc;
}

/*
 * A kept connection may have been closed by the server since (idle
 * timeout, restart): that one failure earns a second try on a fresh
 * connection, within the same deadline.
 */
enum callout_answer ldap_lookup_run(struct ldap_lookup *l, const char *rcpt, char *detail, size_t detaillen)
{
	char filter[LDAP_LOOKUP_FILTER_MAX + 1];
	uint64_t deadline = ldap_now_ms() + l->timeout_ms;
	bool found = false;

	if (ldap_filter_expand(l->filter, rcpt, filter, sizeof(filter)) < 0) {
		snprintf(detail, detaillen, "the filter for this address is over %d bytes", LDAP_LOOKUP_FILTER_MAX);
		return CALLOUT_TEMPFAIL;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		LDAP *ld = attempt == 0 ? ldap_pool_take(l) : NULL;
		bool kept = ld != NULL;
		int rc;

		if (ld == NULL && (ld = ldap_lookup_connect(l, deadline, detail, detaillen)) == NULL)
			return CALLOUT_TEMPFAIL;
		rc = ldap_lookup_search(l, ld, filter, deadline, &found);
		if (rc == LDAP_SUCCESS) {
			ldap_pool_give(l, ld);
			snprintf(detail, detaillen, "%s %s", found ? "an entry matches" : "no entry matches", filter);
			return found ? CALLOUT_VALID : CALLOUT_UNKNOWN;
		}
		ldap_describe(ld, rc, "search", detail, detaillen);
		ldap_close(ld);
		if (!kept || rc != LDAP_SERVER_DOWN)
			break;
	}
	return CALLOUT_TEMPFAIL;
}

struct ldap_lookup *ldap_lookup_new(const struct ldap_lookup_params *p, char *err, size_t errlen)
{
	struct ldap_lookup *l;
	char why[160];
	LDAP *ld = NULL;
	int rc;

	if (!ldap_filter_template_valid(p->filter, why, sizeof(why))) {
		snprintf(err, errlen, "ldap_filter \"%s\": %s", p->filter, why);
		return NULL;
	}
	/* parses the URIs without connecting; also sets libldap's globals up on this thread */
	rc = ldap_initialize(&ld, p->uri);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_uri \"%s\": %s", p->uri, ldap_err2string(rc));
		return NULL;
	}
	ldap_close(ld);
	l = xcalloc(1, sizeof(*l));
	l->refcount = 1;
	l->uri = xstrdup(p->uri);
	l->base = xstrdup(p->base);
	l->filter = xstrdup(p->filter);
	l->bind_dn = xstrdup_or_null(p->bind_dn);
	l->bind_password = xstrdup_or_null(p->bind_password);
	l->timeout_ms = p->timeout_ms;
	pthread_mutex_init(&l->lock, NULL);
	return l;
}

struct ldap_lookup *ldap_lookup_ref(struct ldap_lookup *l)
{
	l->refcount++;
	return l;
}

void ldap_lookup_unref(struct ldap_lookup *l)
{
	if (l == NULL || --l->refcount > 0)
		return;
	for (size_t i = 0; i < l->nidle; i++)
		ldap_close(l->idle[i]);
	pthread_mutex_destroy(&l->lock);
	free(l->uri);
	free(l->base);
	free(l->filter);
	free(l->bind_dn);
	if (l->bind_password != NULL)
		explicit_bzero(l->bind_password, strlen(l->bind_password));
	free(l->bind_password);
	free(l);
}

static void ldap_query_run(void *arg)
{
	struct ldap_query *q = arg;

	q->answer = ldap_lookup_run(q->l, q->rcpt, q->detail, sizeof(q->detail));
}

static void ldap_query_done(void *arg)
{
	struct ldap_query *q = arg;

	if (!q->cancelled)
		q->cb(q->arg, q->answer, q->detail);
	ldap_lookup_unref(q->l);
	free(q->rcpt);
	free(q);
}

struct ldap_query *ldap_query_start(struct ldap_lookup *l, struct workpool *pool, const char *rcpt,
				    callout_cb cb, void *arg)
{
	struct ldap_query *q = xcalloc(1, sizeof(*q));

	q->l = ldap_lookup_ref(l);
	q->rcpt = xstrdup(rcpt);
	q->cb = cb;
	q->arg = arg;
	q->answer = CALLOUT_TEMPFAIL;
	workpool_submit(pool, WORK_HIGH, ldap_query_run, ldap_query_done, q);
	return q;
}

/* The worker may be inside libldap right now: the query is freed by its done, unseen. */
void ldap_query_cancel(struct ldap_query *q)
{
	q->cancelled = true;
}
