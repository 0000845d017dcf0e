/*
 * Asynchronous DNS on c-ares, driven by the libevent loop. Servers are
 * settable (tests point them at a local DNS server on a high port). A
 * request can be cancelled; its callback is then never called.
 *
 * Callbacks always run from the loop, never inside the call that started
 * the lookup. The answer arrays are only valid during the callback, and a
 * request handle is invalid once its callback has run.
 *
 * Each resolver keeps an answer cache, keyed by (lower-cased name, type;
 * for dns_lookup_addr the family), shared by dns_query_raw, dns_lookup_mx
 * (same key as a raw MX query) and dns_lookup_addr:
 *   - a positive answer lives for the smallest TTL of its answer records,
 *     at most DNS_CACHE_MAX_TTL seconds; a TTL of 0 is not cached;
 *   - NXDOMAIN and NODATA live for the SOA minimum of the authority
 *     section (RFC 2308: the smaller of the SOA's TTL and MINIMUM), else
 *     DNS_CACHE_NEGATIVE_TTL, at most DNS_CACHE_NEGATIVE_MAX_TTL;
 *   - TEMPFAIL and MALFORMED are never cached;
 *   - at most DNS_CACHE_MAX_ENTRIES entries; the least recently used goes.
 * A cache hit still calls back from the loop.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct event_base;
struct dns_resolver;
struct dns_request;

#define DNS_CACHE_MAX_ENTRIES      10000
#define DNS_CACHE_MAX_TTL          3600   /* seconds */
#define DNS_CACHE_NEGATIVE_TTL     60     /* NXDOMAIN/NODATA without an SOA */
#define DNS_CACHE_NEGATIVE_MAX_TTL 900

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,      /* name does not exist */
	DNS_NODATA,        /* name exists, no record of that type */
	DNS_TEMPFAIL,      /* timeout, SERVFAIL, refused, network error */
	DNS_MALFORMED,     /* answer could not be parsed */
};

struct dns_mx {
	char host[256];
	uint16_t preference;
};

struct dns_addr {
	struct sockaddr_storage ss;   /* port 0 */
	socklen_t len;
};

/* servers: "127.0.0.1:5353,[::1]:53" or NULL for /etc/resolv.conf. */
struct dns_resolver *dns_resolver_new(struct event_base *base, const char *servers,
				      unsigned timeout_ms, unsigned tries,
				      char *err, size_t errlen);
/* Drops every outstanding request without calling its callback. */
void dns_resolver_free(struct dns_resolver *r);

/*
 * MX records sorted by preference (ties in random order, RFC 5321 5.1).
 * A null MX (RFC 7505) comes back as one record with host ".".
 */
typedef void (*dns_mx_cb)(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n);
struct dns_request *dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_mx_cb cb, void *arg);

/* A and/or AAAA (family AF_INET, AF_INET6 or AF_UNSPEC for both); IP literals need no query. */
typedef void (*dns_addr_cb)(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n);
struct dns_request *dns_lookup_addr(struct dns_resolver *r, const char *host, int family,
				    dns_addr_cb cb, void *arg);

/*
 * Any type: the raw answer for engines that parse their own records (SPF,
 * DNSBL); answer is NULL unless st is DNS_OK.
 */
typedef void (*dns_raw_cb)(void *arg, enum dns_status st, const unsigned char *answer, size_t len);
struct dns_request *dns_query_raw(struct dns_resolver *r, const char *name, int type,
				  dns_raw_cb cb, void *arg);

struct dns_cache_stats {
	uint64_t hits;        /* answered from the cache */
	uint64_t misses;      /* sent to a server */
	uint64_t evictions;   /* dropped for room before expiry */
	size_t entries;
};
void dns_cache_get_stats(const struct dns_resolver *r, struct dns_cache_stats *out);
/* Fewer entries than DNS_CACHE_MAX_ENTRIES (0: no cache); drops the excess. */
void dns_cache_set_limit(struct dns_resolver *r, size_t max_entries);
/* The cache's clock in seconds (default: CLOCK_MONOTONIC); tests inject one. */
typedef time_t (*dns_clock_fn)(void *arg);
void dns_resolver_set_clock(struct dns_resolver *r, dns_clock_fn now, void *arg);

/* Only before the callback ran; NULL is ignored. */
void dns_cancel(struct dns_request *req);
const char *dns_status_str(enum dns_status st);

#endif
