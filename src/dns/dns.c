/*
 * Asynchronous DNS: c-ares does the protocol, libevent does the waiting.
 * c-ares tells us through its socket-state callback which sockets it wants
 * to read or write; each gets one persistent event. One timer, re-armed
 * from ares_timeout() after every call into c-ares, drives retries and
 * timeouts. Nothing here ever blocks the loop.
 *
 * A request handle stays valid until its callback has run or until it is
 * cancelled. A cancelled request is only marked: c-ares still owns a
 * pointer to it and calls us back later, and that is when it is freed.
 *
 * Answers are cached per resolver (bounds in dns.h): raw answer bytes for
 * dns_query_raw and dns_lookup_mx, re-parsed on a hit (so equal MX
 * preferences are shuffled anew), address lists for dns_lookup_addr. A hit
 * goes through the same deferred path as an IP literal.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"

#define LOG_MODULE "dns"
#include "core/log.h"

#define DNS_EDNS_PAYLOAD 1232   /* the DNS flag day 2020 size: no IP fragmentation */

enum dns_kind { DNS_KIND_MX, DNS_KIND_ADDR, DNS_KIND_RAW };

struct dns_sock {
	ares_socket_t fd;
	struct event *ev;
	struct dns_resolver *r;
	struct dns_sock *next;
};

struct dns_request {
	struct dns_resolver *r;
	enum dns_kind kind;
	bool cancelled;
	bool submitting;              /* inside ares_query/ares_getaddrinfo */
	union {
		dns_mx_cb mx;
		dns_addr_cb addr;
		dns_raw_cb raw;
	} cb;
	void *arg;
	/*
	 * An answer known before the submitting call returned (IP literal,
	 * /etc/hosts, a name c-ares refuses) waits here for the loop, so the
	 * caller never sees its callback run inside dns_lookup_*().
	 */
	struct event *deferred_ev;
	enum dns_status st;
	void *data;                   /* struct dns_mx[], struct dns_addr[] or bytes */
	size_t n;
	char *key;                    /* cache key of a question sent to a server */
	int type;                     /* DNS type, or DNS_CACHE_ADDR_TYPE(family) */
	struct dns_request *next;     /* resolver's list of deferred answers */
	struct dns_request *prev;
};

/*
 * The answer cache. Policy engines ask the same questions for every
 * message of a sender (its MX, its SPF record) and every connection (PTR,
 * HELO); serving those from memory removes a round trip each time. Entries
 * hang in a hash table for lookup and on an LRU list for eviction.
 */
#define DNS_CACHE_BUCKETS 16384          /* power of two, > DNS_CACHE_MAX_ENTRIES */
#define DNS_CACHE_ADDR_TYPE(family) (0x10000 + (family))   /* beyond DNS types */

struct dns_cache_entry {
	struct dns_cache_entry *hnext;   /* bucket chain */
	struct dns_cache_entry *newer;   /* LRU list */
	struct dns_cache_entry *older;
	int type;
	enum dns_status st;
	time_t expires;
	void *data;                      /* raw answer bytes or struct dns_addr[] */
	size_t len;                      /* of data, in bytes */
	char name[];
};

struct dns_cache {
	struct dns_cache_entry **buckets;
	struct dns_cache_entry *newest;
	struct dns_cache_entry *oldest;
	size_t max_entries;
	dns_clock_fn now;
	void *now_arg;
	struct dns_cache_stats stats;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	struct dns_sock *socks;
	struct event *timer;
	struct dns_request *deferred; /* requests owned by us, not by c-ares */
	unsigned depth;               /* nesting of ares_process_fd */
	bool free_pending;            /* dns_resolver_free called from a callback */
	struct dns_cache cache;
};

static void dns_resolver_destroy(struct dns_resolver *r);

static time_t dns_clock_monotonic(void *arg)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void dns_cache_init(struct dns_cache *c)
{
	c->buckets = xcalloc(DNS_CACHE_BUCKETS, sizeof(*c->buckets));
	c->max_entries = DNS_CACHE_MAX_ENTRIES;
	c->now = dns_clock_monotonic;
}

static size_t dns_cache_bucket(const char *key, int type)
{
	uint32_t h = 2166136261u;

	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ (uint32_t)type) * 16777619u;
	return h & (DNS_CACHE_BUCKETS - 1);
}

/* Names compare case-insensitively and with or without the final dot. */
static bool dns_cache_key(const char *name, char *key, size_t keylen)
{
	size_t len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len >= keylen)
		return false;
	for (size_t i = 0; i < len; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	key[len] = '\0';
	return true;
}

static void dns_cache_remove(struct dns_cache *c, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &c->buckets[dns_cache_bucket(e->name, e->type)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	c->stats.entries--;
	free(e->data);
	free(e);
}

static void dns_cache_clear(struct dns_cache *c)
{
	while (c->oldest != NULL)
		dns_cache_remove(c, c->oldest);
	free(c->buckets);
}

static void dns_cache_make_newest(struct dns_cache *c, struct dns_cache_entry *e)
{
	e->older = c->newest;
	e->newer = NULL;
	if (c->newest != NULL)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
}

/* A live entry for the key, now the most recently used; expired ones go. */
static struct dns_cache_entry *dns_cache_find(struct dns_cache *c, const char *key, int type)
{
	struct dns_cache_entry *e;

	for (e = c->buckets[dns_cache_bucket(key, type)]; e != NULL; e = e->hnext)
		if (e->type == type && strcmp(e->name, key) == 0)
			break;
	if (e == NULL)
		return NULL;
	if (c->now(c->now_arg) >= e->expires) {
		dns_cache_remove(c, e);
		return NULL;
	}
	if (c->newest != e) {
		e->newer->older = e->older;
		if (e->older != NULL)
			e->older->newer = e->newer;
		else
			c->oldest = e->newer;
		dns_cache_make_newest(c, e);
	}
	return e;
}

static void dns_cache_evict_to(struct dns_cache *c, size_t max_entries)
{
	while (c->stats.entries > max_entries) {
		dns_cache_remove(c, c->oldest);
		c->stats.evictions++;
	}
}

/* Keep a copy of data (len bytes) for ttl seconds, replacing an older answer. */
static void dns_cache_store(struct dns_cache *c, const char *key, int type, enum dns_status st,
			    const void *data, size_t len, long ttl)
{
	struct dns_cache_entry *e, *old;
	size_t keylen = strlen(key);
	size_t b;

	if (ttl <= 0 || c->max_entries == 0)
		return;
	old = dns_cache_find(c, key, type);
	if (old != NULL)
		dns_cache_remove(c, old);
	dns_cache_evict_to(c, c->max_entries - 1);
	e = xcalloc(1, sizeof(*e) + keylen + 1);
	memcpy(e->name, key, keylen + 1);
	e->type = type;
	e->st = st;
	e->expires = c->now(c->now_arg) + ttl;
	if (len > 0) {
		e->data = xmalloc(len);
		memcpy(e->data, data, len);
		e->len = len;
	}
	b = dns_cache_bucket(key, type);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	dns_cache_make_newest(c, e);
	c->stats.entries++;
}

/* Past a (possibly compressed) name; false when it runs off the message. */
static bool dns_skip_name(const unsigned char **p, const unsigned char *end)
{
	while (*p < end) {
		unsigned len = **p;

		if ((len & 0xC0) == 0xC0) {
			if (end - *p < 2)
				return false;
			*p += 2;
			return true;
		}
		if ((len & 0xC0) != 0)
			return false;
		(*p)++;
		if (len == 0)
			return true;
		if ((size_t)(end - *p) < len)
			return false;
		*p += len;
	}
	return false;
}

static uint32_t dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * How long an answer may be cached, from the message itself: the smallest
 * answer TTL when positive, the SOA's negative TTL (RFC 2308 5) when not.
 * -1 when the message cannot be walked.
 */
static long dns_answer_ttl(const unsigned char *abuf, size_t alen, bool negative)
{
	const unsigned char *p = abuf + HFIXEDSZ, *end = abuf + alen;
	unsigned qd, an, ns;
	long ttl = -1;

	if (alen < HFIXEDSZ)
		return -1;
	qd = (unsigned)abuf[4] << 8 | abuf[5];
	an = (unsigned)abuf[6] << 8 | abuf[7];
	ns = (unsigned)abuf[8] << 8 | abuf[9];
	for (unsigned i = 0; i < qd; i++) {
		if (!dns_skip_name(&p, end) || end - p < QFIXEDSZ)
			return -1;
		p += QFIXEDSZ;
	}
	for (unsigned i = 0; i < an + ns; i++) {
		uint32_t rttl;
		unsigned type, rdlen;

		if (!dns_skip_name(&p, end) || end - p < RRFIXEDSZ)
			return -1;
		type = (unsigned)p[0] << 8 | p[1];
		rttl = dns_get32(p + 4);
		rdlen = (unsigned)p[8] << 8 | p[9];
		p += RRFIXEDSZ;
		if ((size_t)(end - p) < rdlen)
			return -1;
		if (rttl > INT32_MAX)          /* RFC 2181 8: treat as zero */
			rttl = 0;
		if (!negative && i < an && (ttl < 0 || (long)rttl < ttl))
			ttl = (long)rttl;
		if (negative && i >= an && type == ns_t_soa && rdlen >= 4) {
			uint32_t minimum = dns_get32(p + rdlen - 4);

			ttl = (long)(minimum < rttl ? minimum : rttl);
		}
		p += rdlen;
	}
	if (negative)
		return ttl < 0 ? DNS_CACHE_NEGATIVE_TTL
			       : (ttl > DNS_CACHE_NEGATIVE_MAX_TTL ? DNS_CACHE_NEGATIVE_MAX_TTL : ttl);
	return ttl > DNS_CACHE_MAX_TTL ? DNS_CACHE_MAX_TTL : ttl;
}

/* After every call into c-ares the next deadline may have moved. */
static void dns_timer_rearm(struct dns_resolver *r)
{
	struct timeval tv, *next;

	next = ares_timeout(r->channel, NULL, &tv);
	if (next == NULL)
		evtimer_del(r->timer);
	else
		evtimer_add(r->timer, next);
}

/*
 * Every entry into c-ares goes through here, so that a callback freeing the
 * resolver (from inside ares_process_fd) only marks it, and the real free
 * happens once c-ares has returned.
 */
static void dns_process(struct dns_resolver *r, ares_socket_t rfd, ares_socket_t wfd)
{
	r->depth++;
	ares_process_fd(r->channel, rfd, wfd);
	r->depth--;
	if (r->depth == 0 && r->free_pending) {
		dns_resolver_destroy(r);
		return;
	}
	if (r->depth == 0)
		dns_timer_rearm(r);
}

static void dns_on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct dns_sock *s = arg;

	dns_process(s->r, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
		    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
}

static void dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	dns_process(arg, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

/* c-ares opened, changed or closed a socket: mirror it with one event. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **sp, *s;
	short what = EV_PERSIST;

	for (sp = &r->socks; *sp != NULL; sp = &(*sp)->next)
		if ((*sp)->fd == fd)
			break;
	s = *sp;
	if (!readable && !writable) {
		if (s != NULL) {
			*sp = s->next;
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->r = r;
		s->next = r->socks;
		r->socks = s;
	} else {
		event_free(s->ev);
	}
	if (readable)
		what |= EV_READ;
	if (writable)
		what |= EV_WRITE;
	s->ev = event_new(r->base, fd, what, dns_on_socket, s);
	if (s->ev == NULL)
		panic("event_new for a DNS socket failed");
	event_add(s->ev, NULL);
}

struct dns_resolver *dns_resolver_new(struct event_base *base, const char *servers,
				      unsigned timeout_ms, unsigned tries,
				      char *err, size_t errlen)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	struct ares_options opts;
	int optmask, rc;

	memset(&opts, 0, sizeof(opts));
	r->base = base;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares init: %s", ares_strerror(rc));
		free(r);
		return NULL;
	}
	opts.sock_state_cb = dns_sock_state;
	opts.sock_state_cb_data = r;
	opts.timeout = timeout_ms ? (int)timeout_ms : 2000;
	opts.tries = tries ? (int)tries : 2;
	/* mail domains are fully qualified: never try search suffixes */
	opts.ndomains = 0;
	opts.domains = NULL;
	opts.flags = ARES_FLAG_EDNS;
	opts.ednspsz = DNS_EDNS_PAYLOAD;
	optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
		  ARES_OPT_DOMAINS | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ;
	rc = ares_init_options(&r->channel, &opts, optmask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares channel: %s", ares_strerror(rc));
		goto err_lib;
	}
	if (servers != NULL && servers[0] != '\0') {
		rc = ares_set_servers_ports_csv(r->channel, servers);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "DNS servers \"%s\": %s", servers, ares_strerror(rc));
			goto err_channel;
		}
	}
	r->timer = evtimer_new(base, dns_on_timer, r);
	if (r->timer == NULL) {
		snprintf(err, errlen, "DNS timer: out of event resources");
		goto err_channel;
	}
	dns_cache_init(&r->cache);
	return r;

err_channel:
	ares_destroy(r->channel);
err_lib:
	ares_library_cleanup();
	free(r);
	return NULL;
}

static void dns_deferred_unlink(struct dns_request *req)
{
	struct dns_resolver *r = req->r;

	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		r->deferred = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
}

static void dns_request_free(struct dns_request *req)
{
	if (req->deferred_ev != NULL)
		event_free(req->deferred_ev);
	free(req->data);
	free(req->key);
	free(req);
}

/*
 * ares_destroy() calls every outstanding callback with ARES_EDESTRUCTION;
 * dns_answer() recognises those and only frees their request.
 */
static void dns_resolver_destroy(struct dns_resolver *r)
{
	struct dns_sock *s, *snext;
	struct dns_request *req, *rnext;

	ares_destroy(r->channel);
	for (s = r->socks; s != NULL; s = snext) {
		snext = s->next;
		event_free(s->ev);
		free(s);
	}
	for (req = r->deferred; req != NULL; req = rnext) {
		rnext = req->next;
		dns_request_free(req);
	}
	event_free(r->timer);
	dns_cache_clear(&r->cache);
	ares_library_cleanup();
	free(r);
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	if (r->depth > 0) {
		r->free_pending = true;
		return;
	}
	dns_resolver_destroy(r);
}

static enum dns_status dns_map_status(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return DNS_OK;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:     /* a name that cannot exist never will */
		return DNS_NXDOMAIN;
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_EBADRESP:
		return DNS_MALFORMED;
	default:                /* timeout, SERVFAIL, REFUSED, network errors */
		return DNS_TEMPFAIL;
	}
}

static void dns_call(struct dns_request *req)
{
	switch (req->kind) {
	case DNS_KIND_MX:
		req->cb.mx(req->arg, req->st, req->data, req->n);
		break;
	case DNS_KIND_ADDR:
		req->cb.addr(req->arg, req->st, req->data, req->n);
		break;
	case DNS_KIND_RAW:
		req->cb.raw(req->arg, req->st, req->data, req->n);
		break;
	}
}

static void dns_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct dns_request *req = arg;

	dns_deferred_unlink(req);
	dns_call(req);
	dns_request_free(req);
}

/* Hand an answer (data owned by req) to the caller, now or from the loop. */
static void dns_answer(struct dns_request *req, enum dns_status st, void *data, size_t n)
{
	struct dns_resolver *r = req->r;

	req->st = st;
	req->data = data;
	req->n = st == DNS_OK ? n : 0;
	if (!req->submitting) {
		dns_call(req);
		dns_request_free(req);
		return;
	}
	req->deferred_ev = event_new(r->base, -1, 0, dns_on_deferred, req);
	if (req->deferred_ev == NULL)
		panic("event_new for a DNS answer failed");
	req->next = r->deferred;
	if (r->deferred != NULL)
		r->deferred->prev = req;
	r->deferred = req;
	event_active(req->deferred_ev, EV_TIMEOUT, 0);
}

/*
 * Whether the owner still wants the answer. A request that was cancelled
 * or is being torn down with the channel is freed here instead.
 */
static bool dns_wanted(struct dns_request *req, int status)
{
	if (req->cancelled || status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		dns_request_free(req);
		return false;
	}
	return true;
}

static struct dns_request *dns_request_new(struct dns_resolver *r, enum dns_kind kind, void *arg)
{
	struct dns_request *req = xcalloc(1, sizeof(*req));

	req->r = r;
	req->kind = kind;
	req->arg = arg;
	req->submitting = true;
	return req;
}

/* The submitting call has returned: later answers go straight to the caller. */
static struct dns_request *dns_submitted(struct dns_request *req, struct dns_resolver *r)
{
	req->submitting = false;
	dns_timer_rearm(r);
	return req;
}

static int dns_mx_compare(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return (int)x->preference - (int)y->preference;
}

/* RFC 5321 5.1: hosts of equal preference are tried in random order. */
static void dns_mx_shuffle_ties(struct dns_mx *mx, size_t n)
{
	size_t start = 0;

	while (start < n) {
		size_t end = start + 1;

		while (end < n && mx[end].preference == mx[start].preference)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + arc4random_uniform((uint32_t)(i - start + 1));
			struct dns_mx tmp = mx[i];

			mx[i] = mx[j];
			mx[j] = tmp;
		}
		start = end;
	}
}

/* The answer's MX records, sorted; a null MX (RFC 7505) has host ".". */
static enum dns_status dns_mx_parse(const unsigned char *abuf, int alen,
				    struct dns_mx **out, size_t *nout)
{
	struct ares_mx_reply *head, *m;
	struct dns_mx *mx;
	size_t n = 0;
	int rc;

	rc = ares_parse_mx_reply(abuf, alen, &head);
	if (rc != ARES_SUCCESS)
		return dns_map_status(rc);
	for (m = head; m != NULL; m = m->next)
		n++;
	mx = xcalloc(n ? n : 1, sizeof(*mx));
	n = 0;
	for (m = head; m != NULL; m = m->next) {
		const char *host = m->host[0] != '\0' ? m->host : ".";

		if (strlen(host) >= sizeof(mx[n].host))
			continue;
		strcpy(mx[n].host, host);
		mx[n].preference = m->priority;
		n++;
	}
	ares_free_data(head);
	if (n == 0) {
		free(mx);
		return DNS_MALFORMED;
	}
	qsort(mx, n, sizeof(*mx), dns_mx_compare);
	dns_mx_shuffle_ties(mx, n);
	*out = mx;
	*nout = n;
	return DNS_OK;
}

/*
 * The cached answer to this question, counted as a hit; on a miss the
 * request remembers the key so that its answer can be kept.
 */
static const struct dns_cache_entry *dns_cache_lookup(struct dns_request *req, const char *name,
						      int type)
{
	struct dns_cache *c = &req->r->cache;
	const struct dns_cache_entry *e;
	char key[256];

	if (!dns_cache_key(name, key, sizeof(key)))
		return NULL;
	e = dns_cache_find(c, key, type);
	if (e != NULL) {
		c->stats.hits++;
		return e;
	}
	c->stats.misses++;
	req->key = xstrdup(key);
	req->type = type;
	return NULL;
}

/*
 * Keep a server's raw answer: positive and negative ones, never failures.
 * Done even for a cancelled request, since the answer is just as good.
 */
static void dns_cache_keep_raw(struct dns_request *req, int status, enum dns_status st,
			       const unsigned char *abuf, int alen)
{
	long ttl;

	if (req->key == NULL)
		return;
	if (st == DNS_OK)
		ttl = dns_answer_ttl(abuf, (size_t)alen, false);
	else if ((status == ARES_ENOTFOUND || status == ARES_ENODATA) && abuf != NULL && alen > 0)
		ttl = dns_answer_ttl(abuf, (size_t)alen, true);
	else if (status == ARES_ENOTFOUND || status == ARES_ENODATA)
		ttl = DNS_CACHE_NEGATIVE_TTL;
	else
		return;
	dns_cache_store(&req->r->cache, req->key, req->type, st,
			st == DNS_OK ? abuf : NULL, st == DNS_OK ? (size_t)alen : 0, ttl);
}

/* Hand over an MX answer from its raw form, a server's or the cache's. */
static void dns_answer_mx(struct dns_request *req, int status, const unsigned char *abuf, int alen)
{
	struct dns_mx *mx = NULL;
	size_t n = 0;
	enum dns_status st = dns_map_status(status);

	if (st == DNS_OK)
		st = dns_mx_parse(abuf, alen, &mx, &n);
	dns_cache_keep_raw(req, status, st, abuf, alen);
	if (!dns_wanted(req, status)) {
		free(mx);
		return;
	}
	dns_answer(req, st, mx, n);
}

static void dns_on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	dns_answer_mx(arg, status, abuf, alen);
}

struct dns_request *dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_mx_cb cb, void *arg)
{
	struct dns_request *req = dns_request_new(r, DNS_KIND_MX, arg);
	const struct dns_cache_entry *e;
	struct dns_mx *mx = NULL;
	size_t n = 0;

	req->cb.mx = cb;
	e = dns_cache_lookup(req, domain, ns_t_mx);
	if (e != NULL) {
		enum dns_status st = e->st;

		if (st == DNS_OK)
			st = dns_mx_parse(e->data, (int)e->len, &mx, &n);
		dns_answer(req, st, mx, n);
		return dns_submitted(req, r);
	}
	ares_query(r->channel, domain, ns_c_in, ns_t_mx, dns_on_mx, req);
	return dns_submitted(req, r);
}

/* A copy of len bytes, or NULL for none. */
static void *dns_memdup(const void *p, size_t len)
{
	void *copy;

	if (len == 0)
		return NULL;
	copy = xmalloc(len);
	memcpy(copy, p, len);
	return copy;
}

static void dns_on_raw(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_request *req = arg;
	enum dns_status st = dns_map_status(status);

	dns_cache_keep_raw(req, status, st, abuf, alen);
	if (!dns_wanted(req, status))
		return;
	dns_answer(req, st, st == DNS_OK ? dns_memdup(abuf, (size_t)alen) : NULL, (size_t)alen);
}

struct dns_request *dns_query_raw(struct dns_resolver *r, const char *name, int type,
				  dns_raw_cb cb, void *arg)
{
	struct dns_request *req = dns_request_new(r, DNS_KIND_RAW, arg);
	const struct dns_cache_entry *e;

	req->cb.raw = cb;
	e = dns_cache_lookup(req, name, type);
	if (e != NULL) {
		dns_answer(req, e->st, dns_memdup(e->data, e->len), e->len);
		return dns_submitted(req, r);
	}
	ares_query(r->channel, name, ns_c_in, type, dns_on_raw, req);
	return dns_submitted(req, r);
}

/* The addresses' TTL: the smallest of their records', capped. */
static long dns_addrinfo_ttl(const struct ares_addrinfo *ai)
{
	long ttl = -1;

	for (const struct ares_addrinfo_node *node = ai->nodes; node != NULL; node = node->ai_next)
		if (ttl < 0 || node->ai_ttl < ttl)
			ttl = node->ai_ttl;
	return ttl > DNS_CACHE_MAX_TTL ? DNS_CACHE_MAX_TTL : ttl;
}

static void dns_cache_keep_addrs(struct dns_request *req, int status, enum dns_status st,
				 const struct ares_addrinfo *ai, const struct dns_addr *addrs, size_t n)
{
	if (req->key == NULL)
		return;
	if (st == DNS_OK)
		dns_cache_store(&req->r->cache, req->key, req->type, st, addrs, n * sizeof(*addrs),
				dns_addrinfo_ttl(ai));
	else if (status == ARES_ENOTFOUND || status == ARES_ENODATA)
		dns_cache_store(&req->r->cache, req->key, req->type, st, NULL, 0, DNS_CACHE_NEGATIVE_TTL);
}

static void dns_on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_request *req = arg;
	struct ares_addrinfo_node *node;
	struct dns_addr *addrs = NULL;
	size_t n = 0;
	enum dns_status st = dns_map_status(status);

	if (st == DNS_OK) {
		for (node = ai->nodes; node != NULL; node = node->ai_next)
			n++;
		addrs = xcalloc(n ? n : 1, sizeof(*addrs));
		n = 0;
		for (node = ai->nodes; node != NULL; node = node->ai_next) {
			if (node->ai_addrlen > sizeof(addrs[n].ss))
				continue;
			memcpy(&addrs[n].ss, node->ai_addr, node->ai_addrlen);
			addrs[n].len = node->ai_addrlen;
			if (node->ai_family == AF_INET)
				((struct sockaddr_in *)&addrs[n].ss)->sin_port = 0;
			else if (node->ai_family == AF_INET6)
				((struct sockaddr_in6 *)&addrs[n].ss)->sin6_port = 0;
			n++;
		}
		if (n == 0)
			st = DNS_NODATA;
		else
			dns_cache_keep_addrs(req, status, st, ai, addrs, n);
	} else {
		dns_cache_keep_addrs(req, status, st, ai, NULL, 0);
	}
	ares_freeaddrinfo(ai);
	if (!dns_wanted(req, status)) {
		free(addrs);
		return;
	}
	dns_answer(req, st, addrs, n);
}

/* An IP literal of the wanted family, or NULL when host is a name. */
static struct dns_addr *dns_parse_literal(const char *host, int family)
{
	struct dns_addr *a = xcalloc(1, sizeof(*a));
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

	if (family != AF_INET6 && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		a->len = sizeof(*sin);
		return a;
	}
	if (family != AF_INET && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		a->len = sizeof(*sin6);
		return a;
	}
	free(a);
	return NULL;
}

struct dns_request *dns_lookup_addr(struct dns_resolver *r, const char *host, int family,
				    dns_addr_cb cb, void *arg)
{
	struct dns_request *req = dns_request_new(r, DNS_KIND_ADDR, arg);
	const struct dns_cache_entry *e;
	struct ares_addrinfo_hints hints;
	struct dns_addr *literal;

	req->cb.addr = cb;
	literal = dns_parse_literal(host, family);
	if (literal != NULL) {
		dns_answer(req, DNS_OK, literal, 1);
		return dns_submitted(req, r);
	}
	e = dns_cache_lookup(req, host, DNS_CACHE_ADDR_TYPE(family));
	if (e != NULL) {
		dns_answer(req, e->st, dns_memdup(e->data, e->len), e->len / sizeof(struct dns_addr));
		return dns_submitted(req, r);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(r->channel, host, NULL, &hints, dns_on_addrinfo, req);
	return dns_submitted(req, r);
}

void dns_cancel(struct dns_request *req)
{
	if (req == NULL)
		return;
	if (req->deferred_ev != NULL) {
		dns_deferred_unlink(req);
		dns_request_free(req);
		return;
	}
	req->cancelled = true;
}

const char *dns_status_str(enum dns_status st)
{
	switch (st) {
	case DNS_OK:
		return "ok";
	case DNS_NXDOMAIN:
		return "NXDOMAIN";
	case DNS_NODATA:
		return "no data";
	case DNS_TEMPFAIL:
		return "temporary failure";
	case DNS_MALFORMED:
		return "malformed answer";
	}
	return "unknown";
}

void dns_cache_get_stats(const struct dns_resolver *r, struct dns_cache_stats *out)
{
	*out = r->cache.stats;
}

void dns_cache_set_limit(struct dns_resolver *r, size_t max_entries)
{
	if (max_entries > DNS_CACHE_MAX_ENTRIES)
		max_entries = DNS_CACHE_MAX_ENTRIES;
	r->cache.max_entries = max_entries;
	dns_cache_evict_to(&r->cache, max_entries);
}

void dns_resolver_set_clock(struct dns_resolver *r, dns_clock_fn now, void *arg)
{
	r->cache.now = now;
	r->cache.now_arg = arg;
}
