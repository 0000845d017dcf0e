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
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
	struct dns_request *next;     /* resolver's list of deferred answers */
	struct dns_request *prev;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	struct dns_sock *socks;
	struct event *timer;
	struct dns_request *deferred; /* requests owned by us, not by c-ares */
	unsigned depth;               /* nesting of ares_process_fd */
	bool free_pending;            /* dns_resolver_free called from a callback */
};

static void dns_resolver_destroy(struct dns_resolver *r);

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

static void dns_on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_request *req = arg;
	struct dns_mx *mx = NULL;
	size_t n = 0;
	enum dns_status st;

	if (!dns_wanted(req, status))
		return;
	st = status == ARES_SUCCESS ? dns_mx_parse(abuf, alen, &mx, &n) : dns_map_status(status);
	dns_answer(req, st, mx, n);
}

struct dns_request *dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_mx_cb cb, void *arg)
{
	struct dns_request *req = dns_request_new(r, DNS_KIND_MX, arg);

	req->cb.mx = cb;
	ares_query(r->channel, domain, ns_c_in, ns_t_mx, dns_on_mx, req);
	return dns_submitted(req, r);
}

static void dns_on_raw(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_request *req = arg;
	enum dns_status st = dns_map_status(status);
	unsigned char *copy = NULL;

	if (!dns_wanted(req, status))
		return;
	if (st == DNS_OK) {
		copy = xmalloc((size_t)alen);
		memcpy(copy, abuf, (size_t)alen);
	}
	dns_answer(req, st, copy, (size_t)alen);
}

struct dns_request *dns_query_raw(struct dns_resolver *r, const char *name, int type,
				  dns_raw_cb cb, void *arg)
{
	struct dns_request *req = dns_request_new(r, DNS_KIND_RAW, arg);

	req->cb.raw = cb;
	ares_query(r->channel, name, ns_c_in, type, dns_on_raw, req);
	return dns_submitted(req, r);
}

static void dns_on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_request *req = arg;
	struct ares_addrinfo_node *node;
	struct dns_addr *addrs = NULL;
	size_t n = 0;
	enum dns_status st = dns_map_status(status);

	if (!dns_wanted(req, status)) {
		ares_freeaddrinfo(ai);
		return;
	}
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
	}
	ares_freeaddrinfo(ai);
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
	struct ares_addrinfo_hints hints;
	struct dns_addr *literal;

	req->cb.addr = cb;
	literal = dns_parse_literal(host, family);
	if (literal != NULL) {
		dns_answer(req, DNS_OK, literal, 1);
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
