/*
 * DNSBL/RHSBL checks. A check owns one query per list; each query first
 * looks in the answer cache, else asks for the A records (and, for a
 * listing whose list wants it, the TXT reason). One timer per check is
 * both its deadline and, when everything came from the cache, the way the
 * answer reaches the caller from the loop rather than from inside the call.
 *
 * The cache is keyed by query name with a per-process secret (RHSBL names
 * are chosen by the sender), bounded by dropping the oldest, and keeps the raw
 * codes rather than verdicts, so lists with different match rules on the
 * same zone share it.
 */
#include "policy/dnsbl.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <event2/event.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "dns/dns.h"

#define LOG_MODULE "dnsbl"
#include "core/log.h"

#define DNSBL_A_RECORDS_MAX 32          /* A records looked at per answer */
#define DNSBL_REFUSED_NET 0x7fffff00u   /* 127.255.255.0/24: the list refused */
#define DNSBL_LOOPBACK_NET 0x7f000000u  /* 127.0.0.0/8 */

struct dnsbl_cache_entry {
	struct dnsbl_cache_entry *hnext;
	struct dnsbl_cache_entry *newer, *older;
	uint64_t hash;
	time_t expires;
	uint32_t codes[DNSBL_CODES_MAX];
	size_t ncodes;
	bool txt_known;
	char reason[DNSBL_REASON_MAX];
	char name[];
};

struct dnsbl {
	struct event_base *base;
	struct dns_resolver *resolver;
	struct dnsbl_options opts;
	struct dnsbl_cache_entry **slots;
	size_t nslots;                  /* a power of two */
	size_t ncached;
	struct dnsbl_cache_entry *newest, *oldest;
	struct hash_key secret;
	struct dnsbl_check *checks;     /* in flight */
};

enum dnsbl_phase { DNSBL_PHASE_A, DNSBL_PHASE_TXT };

struct dnsbl_query {
	struct dnsbl_check *check;
	size_t index;
	struct dns_request *req;        /* in flight, or NULL */
	enum dnsbl_phase phase;
	char name[DNSBL_NAME_MAX];
};

struct dnsbl_check {
	struct dnsbl *d;
	struct dnsbl_list *lists;       /* copies */
	struct dnsbl_query *queries;
	struct dnsbl_result *results;
	size_t n;
	size_t pending;                 /* queries with a request in flight */
	struct event *timer;
	dnsbl_cb cb;
	void *arg;
	struct dnsbl_check *prev, *next;
};

static time_t dnsbl_now(const struct dnsbl *d)
{
	struct timespec ts;

	if (d->opts.clock != NULL)
		return d->opts.clock(d->opts.clock_arg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static uint64_t dnsbl_hash(const struct dnsbl *d, const char *name)
{
	return hash_keyed(&d->secret, name, strlen(name));
}

static void dnsbl_cache_unlink(struct dnsbl *d, struct dnsbl_cache_entry *e)
{
	struct dnsbl_cache_entry **p = &d->slots[e->hash & (d->nslots - 1)];

	while (*p != e) {
		if (*p == NULL)
			panic("cache entry %s missing from its hash chain", e->name);
		p = &(*p)->hnext;
	}
	*p = e->hnext;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		d->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		d->oldest = e->newer;
	d->ncached--;
	free(e);
}

/* A fresh entry for name, or NULL; expired ones are dropped on the way. */
static struct dnsbl_cache_entry *dnsbl_cache_get(struct dnsbl *d, const char *name)
{
	struct dnsbl_cache_entry *e;
	uint64_t h;

	if (d->nslots == 0)
		return NULL;
	h = dnsbl_hash(d, name);
	for (e = d->slots[h & (d->nslots - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->name, name) == 0)
			break;
	if (e != NULL && e->expires <= dnsbl_now(d)) {
		dnsbl_cache_unlink(d, e);
		return NULL;
	}
	return e;
}

static void dnsbl_cache_put(struct dnsbl *d, const char *name, const uint32_t *codes,
			    size_t ncodes, unsigned ttl)
{
	struct dnsbl_cache_entry *e;
	size_t len = strlen(name), i;

	if (d->nslots == 0 || ttl == 0)
		return;
	if (ttl > d->opts.max_ttl)
		ttl = d->opts.max_ttl;
	if ((e = dnsbl_cache_get(d, name)) != NULL)
		dnsbl_cache_unlink(d, e);
	if (d->ncached >= d->opts.cache_max)
		dnsbl_cache_unlink(d, d->oldest);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->name, name, len);
	e->hash = dnsbl_hash(d, name);
	e->expires = dnsbl_now(d) + (time_t)ttl;
	if (ncodes > 0)
		memcpy(e->codes, codes, ncodes * sizeof(*codes));
	e->ncodes = ncodes;
	i = e->hash & (d->nslots - 1);
	e->hnext = d->slots[i];
	d->slots[i] = e;
	e->older = d->newest;
	if (d->newest != NULL)
		d->newest->newer = e;
	d->newest = e;
	if (d->oldest == NULL)
		d->oldest = e;
	d->ncached++;
}

/* The reason lives as long as the listing it explains. */
static void dnsbl_cache_put_reason(struct dnsbl *d, const char *name, const char *reason)
{
	struct dnsbl_cache_entry *e = dnsbl_cache_get(d, name);

	if (e == NULL)
		return;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	e->txt_known = true;
}

struct dnsbl *dnsbl_new(struct event_base *base, struct dns_resolver *resolver,
			const struct dnsbl_options *opts)
{
	struct dnsbl *d = xcalloc(1, sizeof(*d));

	d->base = base;
	d->resolver = resolver;
	if (opts != NULL) {
		d->opts = *opts;
	} else {
		d->opts.cache_max = DNSBL_DEFAULT_CACHE_MAX;
		d->opts.neg_ttl = DNSBL_DEFAULT_NEG_TTL;
		d->opts.max_ttl = DNSBL_DEFAULT_MAX_TTL;
	}
	if (d->opts.deadline_ms == 0)
		d->opts.deadline_ms = DNSBL_DEFAULT_DEADLINE_MS;
	if (d->opts.cache_max > 0) {
		d->nslots = 16;
		while (d->nslots < d->opts.cache_max && d->nslots < ((size_t)1 << 30))
			d->nslots *= 2;
		d->slots = xcalloc(d->nslots, sizeof(*d->slots));
	}
	hash_key_init(&d->secret);
	return d;
}

static void dnsbl_lists_free(struct dnsbl_list *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lists[i].name);
		free(lists[i].zone);
		free(lists[i].codes);
		free(lists[i].reply_template);
	}
	free(lists);
}

static struct dnsbl_list *dnsbl_lists_copy(const struct dnsbl_list *src, size_t n)
{
	struct dnsbl_list *lists = xcalloc(n, sizeof(*lists));

	for (size_t i = 0; i < n; i++) {
		lists[i] = src[i];
		lists[i].zone = xstrdup(src[i].zone != NULL ? src[i].zone : "");
		lists[i].name = xstrdup(src[i].name != NULL ? src[i].name : lists[i].zone);
		lists[i].reply_template = xstrdup_or_null(src[i].reply_template);
		lists[i].codes = NULL;
		if (src[i].ncodes > 0) {
			lists[i].codes = xreallocarray(NULL, src[i].ncodes, sizeof(uint32_t));
			memcpy(lists[i].codes, src[i].codes, src[i].ncodes * sizeof(uint32_t));
		}
	}
	return lists;
}

static void dnsbl_check_unlink(struct dnsbl_check *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		c->d->checks = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void dnsbl_check_destroy(struct dnsbl_check *c)
{
	for (size_t i = 0; i < c->n; i++)
		dns_cancel(c->queries[i].req);
	event_free(c->timer);
	dnsbl_lists_free(c->lists, c->n);
	free(c->queries);
	free(c->results);
	free(c);
}

void dnsbl_free(struct dnsbl *d)
{
	if (d == NULL)
		return;
	while (d->checks != NULL) {
		struct dnsbl_check *c = d->checks;

		dnsbl_check_unlink(c);
		dnsbl_check_destroy(c);
	}
	while (d->oldest != NULL)
		dnsbl_cache_unlink(d, d->oldest);
	free(d->slots);
	free(d);
}

void dnsbl_cancel(struct dnsbl_check *c)
{
	if (c == NULL)
		return;
	dnsbl_check_unlink(c);
	dnsbl_check_destroy(c);
}

static const struct dnsbl_result *dnsbl_pick_hit(const struct dnsbl_check *c)
{
	const struct dnsbl_result *hit = NULL;

	for (size_t i = 0; i < c->n; i++)
		if (c->results[i].status == DNSBL_LISTED &&
		    (hit == NULL || c->results[i].list->priority < hit->list->priority))
			hit = &c->results[i];
	return hit;
}

/*
 * Hand the results over. Whatever is still in flight is abandoned: an A
 * query counts as an error, a TXT query just leaves the reason empty.
 */
static void dnsbl_finish(struct dnsbl_check *c)
{
	const struct dnsbl_result *hit;

	for (size_t i = 0; i < c->n; i++) {
		struct dnsbl_query *q = &c->queries[i];

		if (q->req == NULL)
			continue;
		dns_cancel(q->req);
		q->req = NULL;
		if (q->phase == DNSBL_PHASE_A) {
			c->results[i].status = DNSBL_ERROR;
			c->results[i].error = "no answer before the deadline";
		}
	}
	hit = dnsbl_pick_hit(c);
	if (hit != NULL)
		log_debug("name=%s listed zone=%s", c->queries[hit - c->results].name,
			  hit->list->zone);
	dnsbl_check_unlink(c);
	c->cb(c->arg, c->results, c->n, hit);
	dnsbl_check_destroy(c);
}

static void dnsbl_on_timer(evutil_socket_t fd, short what, void *arg)
{
	dnsbl_finish(arg);
}

static void dnsbl_query_settled(struct dnsbl_query *q)
{
	struct dnsbl_check *c = q->check;

	if (--c->pending == 0)
		dnsbl_finish(c);
}

/* Apply the list's match rule to the codes of an answer. */
static void dnsbl_judge(struct dnsbl_result *res, const uint32_t *codes, size_t ncodes)
{
	const struct dnsbl_list *l = res->list;
	bool listed = false;

	if (ncodes > 0)
		memcpy(res->codes, codes, ncodes * sizeof(*codes));
	res->ncodes = ncodes;
	for (size_t i = 0; i < ncodes; i++) {
		if ((codes[i] & 0xffffff00u) == DNSBL_REFUSED_NET) {
			res->status = DNSBL_ERROR;
			res->error = "the list refused the query (127.255.255.x)";
			return;
		}
		switch (l->match) {
		case DNSBL_MATCH_ANY:
			listed = true;
			break;
		case DNSBL_MATCH_MASK:
			listed |= (codes[i] & l->mask) != 0;
			break;
		case DNSBL_MATCH_CODES:
			for (size_t j = 0; j < l->ncodes; j++)
				listed |= codes[i] == l->codes[j];
			break;
		default:
			panic("list %s has match rule %d", l->zone, (int)l->match);
		}
	}
	res->status = listed ? DNSBL_LISTED : DNSBL_NOT_LISTED;
}

static void dnsbl_on_txt(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct dnsbl_query *q = arg;
	struct dnsbl_result *res = &q->check->results[q->index];

	q->req = NULL;
	/* an unparsable TXT answer leaves the reason empty, as no TXT does */
	if (st == DNS_OK)
		dnsbl_parse_txt(answer, len, res->reason, sizeof(res->reason));
	if (st == DNS_OK || st == DNS_NXDOMAIN || st == DNS_NODATA)
		dnsbl_cache_put_reason(q->check->d, q->name, res->reason);
	dnsbl_query_settled(q);
}

/* A listing may want its reason; true when a TXT query went out for it. */
static bool dnsbl_want_reason(struct dnsbl_query *q, const struct dnsbl_cache_entry *cached)
{
	struct dnsbl_check *c = q->check;
	struct dnsbl_result *res = &c->results[q->index];

	if (res->status != DNSBL_LISTED || !res->list->want_txt)
		return false;
	if (cached != NULL && cached->txt_known) {
		snprintf(res->reason, sizeof(res->reason), "%s", cached->reason);
		return false;
	}
	q->phase = DNSBL_PHASE_TXT;
	q->req = dns_query_raw(c->d->resolver, q->name, ns_t_txt, dnsbl_on_txt, q);
	return true;
}

static void dnsbl_on_a(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct dnsbl_query *q = arg;
	struct dnsbl *d = q->check->d;
	struct dnsbl_result *res = &q->check->results[q->index];
	uint32_t codes[DNSBL_CODES_MAX];
	size_t ncodes = DNSBL_CODES_MAX;
	unsigned ttl = 0;

	q->req = NULL;
	switch (st) {
	case DNS_OK:
		if (dnsbl_parse_a(answer, len, codes, &ncodes, &ttl) < 0) {
			res->status = DNSBL_ERROR;
			res->error = dns_status_str(DNS_MALFORMED);
			break;
		}
		dnsbl_cache_put(d, q->name, codes, ncodes, ttl);
		dnsbl_judge(res, codes, ncodes);
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		dnsbl_cache_put(d, q->name, NULL, 0, d->opts.neg_ttl);
		dnsbl_judge(res, NULL, 0);
		break;
	default:
		res->status = DNSBL_ERROR;
		res->error = dns_status_str(st);
		break;
	}
	if (!dnsbl_want_reason(q, NULL))
		dnsbl_query_settled(q);
}

/* Answer from the cache when possible; true when a request went out. */
static bool dnsbl_query_start(struct dnsbl_query *q)
{
	struct dnsbl_check *c = q->check;
	struct dnsbl_result *res = &c->results[q->index];
	const struct dnsbl_cache_entry *e = dnsbl_cache_get(c->d, q->name);

	if (e != NULL) {
		res->from_cache = true;
		dnsbl_judge(res, e->codes, e->ncodes);
		return dnsbl_want_reason(q, e);
	}
	q->phase = DNSBL_PHASE_A;
	q->req = dns_query_raw(c->d->resolver, q->name, ns_t_a, dnsbl_on_a, q);
	return true;
}

/* prefix is the reversed IP or the domain; a name too long is an error for that list only. */
static struct dnsbl_check *dnsbl_check_start(struct dnsbl *d, const struct dnsbl_list *lists,
					     size_t n, const char *prefix, dnsbl_cb cb, void *arg)
{
	struct dnsbl_check *c = xcalloc(1, sizeof(*c));
	struct timeval tv;

	c->d = d;
	c->n = n;
	c->cb = cb;
	c->arg = arg;
	c->lists = dnsbl_lists_copy(lists, n);
	c->queries = xcalloc(n, sizeof(*c->queries));
	c->results = xcalloc(n, sizeof(*c->results));
	c->timer = evtimer_new(d->base, dnsbl_on_timer, c);
	if (c->timer == NULL)
		panic("evtimer_new for a DNSBL check failed");
	c->next = d->checks;
	if (d->checks != NULL)
		d->checks->prev = c;
	d->checks = c;
	for (size_t i = 0; i < n; i++) {
		struct dnsbl_query *q = &c->queries[i];
		int len;

		q->check = c;
		q->index = i;
		c->results[i].list = &c->lists[i];
		len = snprintf(q->name, sizeof(q->name), "%s.%s", prefix, c->lists[i].zone);
		if (c->lists[i].zone[0] == '\0' || len < 0 || (size_t)len >= sizeof(q->name)) {
			c->results[i].status = DNSBL_ERROR;
			c->results[i].error = "query name too long or zone empty";
			continue;
		}
		if (dnsbl_query_start(q))
			c->pending++;
	}
	if (c->pending == 0) {
		event_active(c->timer, EV_TIMEOUT, 0);
		return c;
	}
	tv.tv_sec = d->opts.deadline_ms / 1000;
	tv.tv_usec = (d->opts.deadline_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	return c;
}

/* RFC 5782 2.4: 32 nibbles, least significant first. */
static int dnsbl_ip6_prefix(const unsigned char *b, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t pos = 0;

	if (outlen < 64)
		return -1;
	for (int i = 15; i >= 0; i--) {
		out[pos++] = hex[b[i] & 0xf];
		out[pos++] = '.';
		out[pos++] = hex[b[i] >> 4];
		out[pos++] = '.';
	}
	out[pos - 1] = '\0';
	return 0;
}

static int dnsbl_ip4_prefix(const unsigned char *b, char *out, size_t outlen)
{
	int len = snprintf(out, outlen, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);

	return len > 0 && (size_t)len < outlen ? 0 : -1;
}

int dnsbl_ip_prefix(const struct sockaddr *ip, char *out, size_t outlen)
{
	const struct in6_addr *a6;

	if (ip->sa_family == AF_INET)
		return dnsbl_ip4_prefix((const unsigned char *)
					&((const struct sockaddr_in *)ip)->sin_addr, out, outlen);
	if (ip->sa_family != AF_INET6)
		return -1;
	a6 = &((const struct sockaddr_in6 *)ip)->sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a6))
		return dnsbl_ip4_prefix(a6->s6_addr + 12, out, outlen);
	return dnsbl_ip6_prefix(a6->s6_addr, out, outlen);
}

struct dnsbl_check *dnsbl_check_ip(struct dnsbl *d, const struct dnsbl_list *lists, size_t n,
				   const struct sockaddr *ip, dnsbl_cb cb, void *arg)
{
	char prefix[72];

	if (n == 0 || dnsbl_ip_prefix(ip, prefix, sizeof(prefix)) < 0)
		return NULL;
	return dnsbl_check_start(d, lists, n, prefix, cb, arg);
}

/* A host name as RFC 1123 has it (underscores let through, as DNS does). */
static bool dnsbl_domain_ok(const char *domain, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)domain[i];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

struct dnsbl_check *dnsbl_check_domain(struct dnsbl *d, const struct dnsbl_list *lists,
				       size_t n, const char *domain, dnsbl_cb cb, void *arg)
{
	char name[DNSBL_NAME_MAX];
	size_t len = strlen(domain);

	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (n == 0 || !dnsbl_domain_ok(domain, len))
		return NULL;
	for (size_t i = 0; i < len; i++)
		name[i] = (char)((domain[i] >= 'A' && domain[i] <= 'Z') ? domain[i] + 32 : domain[i]);
	name[len] = '\0';
	return dnsbl_check_start(d, lists, n, name, cb, arg);
}

static int dnsbl_append(char *out, size_t outlen, size_t *pos, const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *pos + 1 >= outlen)
			return -1;
		out[(*pos)++] = *s;
	}
	return 0;
}

static const char *dnsbl_expansion(char directive, const char *ip, const char *rule,
				   const char *zone)
{
	switch (directive) {
	case '0':
		return ip != NULL ? ip : "";
	case '1':
		return rule != NULL ? rule : "";
	case '2':
		return zone != NULL ? zone : "";
	case '%':
		return "%";
	default:
		return NULL;
	}
}

int dnsbl_format_reply(const char *tmpl, const char *ip, const char *rule, const char *zone,
		       char *out, size_t outlen)
{
	size_t pos = 0;
	int rc = 0;

	if (outlen == 0)
		return -1;
	for (const char *p = tmpl; *p != '\0' && rc == 0; p++) {
		char one[2] = { *p, '\0' };
		const char *value = one;

		if (*p == '%') {
			value = dnsbl_expansion(p[1], ip, rule, zone);
			if (value == NULL) {
				rc = -1;
				break;
			}
			p++;
		}
		rc = dnsbl_append(out, outlen, &pos, value);
	}
	out[rc == 0 ? pos : 0] = '\0';
	return rc;
}

int dnsbl_parse_a(const unsigned char *answer, size_t len, uint32_t *codes, size_t *ncodes,
		  unsigned *ttl)
{
	struct ares_addrttl addrs[DNSBL_A_RECORDS_MAX];
	int naddrs = DNSBL_A_RECORDS_MAX, rc;
	size_t max = *ncodes, n = 0;
	unsigned min_ttl = UINT_MAX;

	*ncodes = 0;
	*ttl = 0;
	if (len > INT_MAX)
		return -1;
	rc = ares_parse_a_reply(answer, (int)len, NULL, addrs, &naddrs);
	if (rc == ARES_ENODATA)
		return 0;
	if (rc != ARES_SUCCESS)
		return -1;
	for (int i = 0; i < naddrs; i++) {
		uint32_t code = ntohl(addrs[i].ipaddr.s_addr);
		unsigned t = addrs[i].ttl > 0 ? (unsigned)addrs[i].ttl : 0;

		if (t < min_ttl)
			min_ttl = t;
		if ((code & 0xff000000u) == DNSBL_LOOPBACK_NET && n < max)
			codes[n++] = code;
	}
	*ncodes = n;
	*ttl = naddrs > 0 ? min_ttl : 0;
	return 0;
}

int dnsbl_parse_txt(const unsigned char *answer, size_t len, char *reason, size_t reasonlen)
{
	struct ares_txt_ext *txt, *t;
	size_t pos = 0;

	if (reasonlen == 0)
		return -1;
	reason[0] = '\0';
	if (len > INT_MAX)
		return -1;
	if (ares_parse_txt_reply_ext(answer, (int)len, &txt) != ARES_SUCCESS)
		return -1;
	if (txt == NULL)
		return -1;
	for (t = txt; t != NULL && (t == txt || !t->record_start); t = t->next)
		for (size_t i = 0; i < t->length && pos + 1 < reasonlen; i++) {
			unsigned char ch = t->txt[i];

			reason[pos++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		}
	reason[pos] = '\0';
	ares_free_data(txt);
	return 0;
}
