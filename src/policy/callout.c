/*
 * Recipient callouts and their answer cache (see callout.h).
 *
 * A probe walks the configured hosts in order, each address of each host,
 * until one greets it; from then on that host's answer is the answer.
 * One event timer is the deadline of the whole probe and, when there is
 * nothing to try, the way the answer reaches the caller from the loop.
 */
#include "policy/callout.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "dns/dns.h"
#include "smtp/smtp_client.h"

#define LOG_MODULE "policy"
#include "core/log.h"

#define CALLOUT_ADDRS_MAX 8          /* addresses tried per host */
#define CALLOUT_DEFAULT_PORT 25

/* ---- the cache ---- */

struct callout_entry {
	struct callout_entry *hnext;
	struct callout_entry *newer, *older;
	uint64_t hash;
	time_t expires;
	enum callout_answer answer;
	char key[];
};

struct callout_cache {
	struct callout_entry **slots;
	size_t nslots;                   /* a power of two */
	size_t count, max;
	struct callout_entry *newest, *oldest;
	callout_clock_fn clock;
	void *clock_arg;
	struct hash_key secret;
};

static time_t callout_cache_now(const struct callout_cache *c)
{
	return c->clock != NULL ? c->clock(c->clock_arg) : time(NULL);
}

struct callout_cache *callout_cache_new(size_t max_entries, callout_clock_fn clock, void *clock_arg)
{
	struct callout_cache *c = xcalloc(1, sizeof(*c));

	c->max = max_entries > 0 ? max_entries : 1;
	c->nslots = 16;
	while (c->nslots < c->max && c->nslots < ((size_t)1 << 30))
		c->nslots <<= 1;
	c->slots = xcalloc(c->nslots, sizeof(*c->slots));
	c->clock = clock;
	c->clock_arg = clock_arg;
	hash_key_init(&c->secret);
	return c;
}

void callout_cache_free(struct callout_cache *c)
{
	struct callout_entry *e, *next;

	if (c == NULL)
		return;
	for (e = c->newest; e != NULL; e = next) {
		next = e->older;
		free(e);
	}
	free(c->slots);
	free(c);
}

size_t callout_cache_count(const struct callout_cache *c)
{
	return c->count;
}

/* The key: the address with its domain lower-cased; false when too long. */
static bool callout_key(const char *rcpt, char *key, size_t keylen)
{
	size_t len = strlen(rcpt);
	char *at;

	if (len >= keylen)
		return false;
	memcpy(key, rcpt, len + 1);
	at = strrchr(key, '@');
	for (char *p = at; p != NULL && *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + ('a' - 'A') : *p);
	return true;
}

static uint64_t callout_hash(const struct callout_cache *c, const char *key)
{
	return hash_keyed(&c->secret, key, strlen(key));
}

static void callout_cache_unlink(struct callout_cache *c, struct callout_entry *e)
{
	struct callout_entry **p = &c->slots[e->hash & (c->nslots - 1)];

	while (*p != e) {
		if (*p == NULL)
			panic("callout cache entry missing from its hash chain");
		p = &(*p)->hnext;
	}
	*p = e->hnext;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	c->count--;
	free(e);
}

static struct callout_entry *callout_cache_find(struct callout_cache *c, const char *key, uint64_t h)
{
	struct callout_entry *e;

	for (e = c->slots[h & (c->nslots - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

bool callout_cache_get(struct callout_cache *c, const char *rcpt, enum callout_answer *answer)
{
	char key[CALLOUT_ADDRESS_MAX];
	struct callout_entry *e;

	if (!callout_key(rcpt, key, sizeof(key)))
		return false;
	e = callout_cache_find(c, key, callout_hash(c, key));
	if (e == NULL)
		return false;
	if (e->expires <= callout_cache_now(c)) {
		callout_cache_unlink(c, e);
		return false;
	}
	*answer = e->answer;
	return true;
}

void callout_cache_put(struct callout_cache *c, const char *rcpt, enum callout_answer answer,
		       unsigned ttl)
{
	char key[CALLOUT_ADDRESS_MAX];
	struct callout_entry *e;
	uint64_t h;
	size_t len;

	if (answer == CALLOUT_TEMPFAIL || ttl == 0 || !callout_key(rcpt, key, sizeof(key)))
		return;
	h = callout_hash(c, key);
	e = callout_cache_find(c, key, h);
	if (e != NULL)
		callout_cache_unlink(c, e);
	while (c->count >= c->max)
		callout_cache_unlink(c, c->oldest);
	len = strlen(key);
	e = xmalloc(sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->hash = h;
	e->answer = answer;
	e->expires = callout_cache_now(c) + (time_t)ttl;
	e->hnext = c->slots[h & (c->nslots - 1)];
	c->slots[h & (c->nslots - 1)] = e;
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest != NULL)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->count++;
}

/* ---- the probe ---- */

enum callout_phase {
	CALLOUT_RESOLVE,
	CALLOUT_CONNECT,
	CALLOUT_GREETING,
	CALLOUT_EHLO,
	CALLOUT_HELO,
	CALLOUT_MAIL,
	CALLOUT_RCPT,
	CALLOUT_QUIT,
};

struct callout {
	struct event_base *base;
	struct dns_resolver *dns;
	char *helo;
	char *rcpt;
	struct hostport *hosts;
	size_t nhosts;
	size_t host;                     /* the host being tried */
	struct dns_addr addrs[CALLOUT_ADDRS_MAX];
	size_t naddrs, addr;             /* its addresses, the one being tried */
	char peer[INET6_ADDRSTRLEN + 16];
	unsigned connect_timeout_ms;
	enum callout_phase phase;
	struct dns_request *req;
	struct bufferevent *bev;
	struct event *deadline;
	struct smtp_reply reply;
	struct smtp_ext ext;
	enum callout_answer answer;      /* decided at RCPT, reported after QUIT */
	char detail[CALLOUT_DETAIL_MAX];
	char last_error[CALLOUT_DETAIL_MAX]; /* why the last host could not be reached */
	callout_cb cb;
	void *arg;
};

static void callout_try_host(struct callout *co);
static void callout_try_addr(struct callout *co);

static void callout_release(struct callout *co)
{
	dns_cancel(co->req);
	if (co->bev != NULL)
		bufferevent_free(co->bev);
	if (co->deadline != NULL)
		event_free(co->deadline);
	for (size_t i = 0; i < co->nhosts; i++)
		free(co->hosts[i].host);
	free(co->hosts);
	free(co->helo);
	free(co->rcpt);
	free(co);
}

/* Report and free; the callout is gone afterwards. */
static void callout_finish(struct callout *co, enum callout_answer answer, const char *detail)
{
	char text[CALLOUT_DETAIL_MAX];
	callout_cb cb = co->cb;
	void *arg = co->arg;

	snprintf(text, sizeof(text), "%s", detail);
	smtp_text_clean(text);
	callout_release(co);
	cb(arg, answer, text);
}

void callout_cancel(struct callout *co)
{
	if (co != NULL)
		callout_release(co);
}

static void callout_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct callout *co = arg;

	if (co->phase == CALLOUT_QUIT)
		callout_finish(co, co->answer, co->detail);
	else if (co->nhosts == 0)
		callout_finish(co, CALLOUT_TEMPFAIL, "no host to ask");
	else
		callout_finish(co, CALLOUT_TEMPFAIL, "no answer before the deadline");
}

static void callout_send(struct callout *co, enum callout_phase phase, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void callout_send(struct callout *co, enum callout_phase phase, const char *fmt, ...)
{
	va_list ap;

	co->phase = phase;
	smtp_reply_reset(&co->reply);
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(co->bev), fmt, ap);
	va_end(ap);
}

/* The server refused the dialogue before RCPT: we cannot tell. */
static void callout_give_up(struct callout *co, const char *what)
{
	co->answer = CALLOUT_TEMPFAIL;
	snprintf(co->detail, sizeof(co->detail), "%s answered %s with \"%s\"", co->peer, what,
		 co->reply.text);
	callout_send(co, CALLOUT_QUIT, "QUIT\r\n");
}

static bool callout_rcpt_is_ascii(const struct callout *co)
{
	for (const unsigned char *p = (const unsigned char *)co->rcpt; *p != '\0'; p++)
		if (*p >= 0x80)
			return false;
	return true;
}

static void callout_send_mail(struct callout *co)
{
	if (callout_rcpt_is_ascii(co)) {
		callout_send(co, CALLOUT_MAIL, "MAIL FROM:<>\r\n");
	} else if (co->ext.flags & SMTP_EXT_SMTPUTF8) {
		callout_send(co, CALLOUT_MAIL, "MAIL FROM:<> SMTPUTF8\r\n");
	} else {
		co->answer = CALLOUT_TEMPFAIL;
		snprintf(co->detail, sizeof(co->detail),
			 "%s lacks SMTPUTF8 for an internationalized address", co->peer);
		callout_send(co, CALLOUT_QUIT, "QUIT\r\n");
	}
}

/* A complete reply arrived; false when the callout is finished and freed. */
static bool callout_step(struct callout *co)
{
	int code = co->reply.code;

	switch (co->phase) {
	case CALLOUT_GREETING:
		if (code / 100 != 2) {
			snprintf(co->last_error, sizeof(co->last_error), "%s greeted with \"%s\"",
				 co->peer, co->reply.text);
			bufferevent_free(co->bev);
			co->bev = NULL;
			co->addr = co->naddrs;   /* this host does not want us: the next one */
			callout_try_addr(co);
			return false;
		}
		/* from now on the probe's deadline is the only limit */
		bufferevent_set_timeouts(co->bev, NULL, NULL);
		memset(&co->ext, 0, sizeof(co->ext));
		callout_send(co, CALLOUT_EHLO, "EHLO %s\r\n", co->helo);
		return true;
	case CALLOUT_EHLO:
		if (code / 100 != 2)
			callout_send(co, CALLOUT_HELO, "HELO %s\r\n", co->helo);
		else
			callout_send_mail(co);
		return true;
	case CALLOUT_HELO:
		if (code / 100 != 2)
			callout_give_up(co, "HELO");
		else
			callout_send_mail(co);
		return true;
	case CALLOUT_MAIL:
		if (code / 100 != 2)
			callout_give_up(co, "MAIL FROM:<>");
		else
			callout_send(co, CALLOUT_RCPT, "RCPT TO:<%s>\r\n", co->rcpt);
		return true;
	case CALLOUT_RCPT:
		co->answer = code / 100 == 2 ? CALLOUT_VALID : code / 100 == 5 ? CALLOUT_UNKNOWN
									    : CALLOUT_TEMPFAIL;
		snprintf(co->detail, sizeof(co->detail), "%s: %s", co->peer, co->reply.text);
		callout_send(co, CALLOUT_QUIT, "QUIT\r\n");
		return true;
	case CALLOUT_QUIT:
		callout_finish(co, co->answer, co->detail);
		return false;
	case CALLOUT_RESOLVE:
	case CALLOUT_CONNECT:
		break;
	}
	panic("callout reply in phase %d", (int)co->phase);
}

static void callout_read_cb(struct bufferevent *bev, void *arg)
{
	struct callout *co = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		const char *text;
		size_t textlen;
		enum smtp_reply_state st = smtp_reply_feed(&co->reply, line, len, &text, &textlen);

		if (st != SMTP_REPLY_MALFORMED && co->phase == CALLOUT_EHLO && co->reply.nlines > 1)
			smtp_ext_parse(&co->ext, text, textlen);
		free(line);
		if (st == SMTP_REPLY_MALFORMED) {
			if (co->phase == CALLOUT_QUIT)
				callout_finish(co, co->answer, co->detail);
			else
				callout_finish(co, CALLOUT_TEMPFAIL, "malformed reply");
			return;
		}
		if (st == SMTP_REPLY_DONE && !callout_step(co))
			return;
	}
	if (evbuffer_get_length(in) > SMTP_REPLY_LINE_MAX + 2)
		callout_finish(co, CALLOUT_TEMPFAIL, "reply line too long");
}

static const char *callout_unreachable_why(const struct callout *co, short what)
{
	if (what & BEV_EVENT_TIMEOUT)
		return co->phase == CALLOUT_CONNECT ? "connection timed out" : "no greeting in time";
	if (what & BEV_EVENT_EOF)
		return "closed before greeting";
	return evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
}

static void callout_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct callout *co = arg;
	char detail[CALLOUT_DETAIL_MAX];

	if (what & BEV_EVENT_CONNECTED) {
		/* a host that accepts but never greets is skipped like an unreachable one */
		struct timeval tv = { co->connect_timeout_ms / 1000, (co->connect_timeout_ms % 1000) * 1000 };

		co->phase = CALLOUT_GREETING;
		smtp_reply_reset(&co->reply);
		bufferevent_set_timeouts(co->bev, &tv, NULL);
		bufferevent_enable(co->bev, EV_READ);
		return;
	}
	if (co->phase == CALLOUT_QUIT) {
		callout_finish(co, co->answer, co->detail);
		return;
	}
	if (co->phase == CALLOUT_CONNECT || co->phase == CALLOUT_GREETING) {
		snprintf(co->last_error, sizeof(co->last_error), "%s: %s", co->peer,
			 callout_unreachable_why(co, what));
		bufferevent_free(co->bev);
		co->bev = NULL;
		callout_try_addr(co);
		return;
	}
	snprintf(detail, sizeof(detail), "%s: %s during the dialogue", co->peer,
		 what & BEV_EVENT_EOF ? "connection closed" : "connection error");
	callout_finish(co, CALLOUT_TEMPFAIL, detail);
}

static void callout_describe_peer(struct callout *co, const struct sockaddr *sa)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	uint16_t port;

	if (sa->sa_family == AF_INET6) {
		evutil_inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
		snprintf(co->peer, sizeof(co->peer), "[%s]:%u", addr, port);
	} else {
		evutil_inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
		snprintf(co->peer, sizeof(co->peer), "%s:%u", addr, port);
	}
}

/* Connect to the next address of the current host, or move to the next host. */
static void callout_try_addr(struct callout *co)
{
	struct sockaddr_storage ss;
	struct timeval tv = { co->connect_timeout_ms / 1000, (co->connect_timeout_ms % 1000) * 1000 };
	uint16_t port;

	if (co->addr >= co->naddrs) {
		co->host++;
		callout_try_host(co);
		return;
	}
	port = co->hosts[co->host].port ? co->hosts[co->host].port : CALLOUT_DEFAULT_PORT;
	memcpy(&ss, &co->addrs[co->addr].ss, sizeof(ss));
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	callout_describe_peer(co, (const struct sockaddr *)&ss);
	co->addr++;
	co->phase = CALLOUT_CONNECT;
	co->bev = bufferevent_socket_new(co->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (co->bev == NULL)
		panic("bufferevent_socket_new failed");
	bufferevent_set_timeouts(co->bev, &tv, &tv);
	/* the callbacks are set afterwards: a failure inside the call reports itself by -1 alone */
	if (bufferevent_socket_connect(co->bev, (struct sockaddr *)&ss, co->addrs[co->addr - 1].len) < 0) {
		snprintf(co->last_error, sizeof(co->last_error), "%s: %s", co->peer,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		bufferevent_free(co->bev);
		co->bev = NULL;
		callout_try_addr(co);
		return;
	}
	bufferevent_setcb(co->bev, callout_read_cb, NULL, callout_event_cb, co);
}

static void callout_resolved(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct callout *co = arg;

	co->req = NULL;
	if (st != DNS_OK || n == 0) {
		snprintf(co->last_error, sizeof(co->last_error), "%s: %s", co->hosts[co->host].host,
			 st != DNS_OK ? dns_status_str(st) : "no address");
		co->host++;
		callout_try_host(co);
		return;
	}
	co->naddrs = n < CALLOUT_ADDRS_MAX ? n : CALLOUT_ADDRS_MAX;
	memcpy(co->addrs, addrs, co->naddrs * sizeof(*addrs));
	co->addr = 0;
	callout_try_addr(co);
}

static void callout_try_host(struct callout *co)
{
	if (co->host >= co->nhosts) {
		callout_finish(co, CALLOUT_TEMPFAIL, co->last_error[0] ? co->last_error : "no host reachable");
		return;
	}
	co->phase = CALLOUT_RESOLVE;
	co->req = dns_lookup_addr(co->dns, co->hosts[co->host].host, AF_UNSPEC, callout_resolved, co);
}

struct callout *callout_start(struct event_base *base, struct dns_resolver *dns,
			      const struct callout_params *p, const char *rcpt, callout_cb cb,
			      void *arg)
{
	struct callout *co = xcalloc(1, sizeof(*co));
	struct timeval tv = { p->deadline_ms / 1000, (p->deadline_ms % 1000) * 1000 };

	co->base = base;
	co->dns = dns;
	co->helo = xstrdup(p->helo);
	co->rcpt = xstrdup(rcpt);
	co->connect_timeout_ms = p->connect_timeout_ms;
	co->cb = cb;
	co->arg = arg;
	co->hosts = xcalloc(p->nhosts ? p->nhosts : 1, sizeof(*co->hosts));
	for (size_t i = 0; i < p->nhosts; i++) {
		co->hosts[i].host = xstrdup(p->hosts[i].host);
		co->hosts[i].port = p->hosts[i].port;
	}
	co->nhosts = p->nhosts;
	co->deadline = evtimer_new(base, callout_deadline_cb, co);
	if (co->deadline == NULL)
		panic("evtimer_new failed");
	if (co->nhosts == 0) {
		/* nothing to ask: answer from the loop, as promised */
		tv.tv_sec = 0;
		tv.tv_usec = 0;
		evtimer_add(co->deadline, &tv);
		return co;
	}
	evtimer_add(co->deadline, &tv);
	callout_try_host(co);
	return co;
}
