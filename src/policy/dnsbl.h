/*
 * DNSBL and RHSBL client: asks every configured list at once whether a
 * client IP (DNSBL) or a sender domain (RHSBL) is listed, on the
 * asynchronous resolver of dns/dns.h.
 *
 * A check never stalls the session: after the deadline, lists that have
 * not answered count as errors, which are never "listed". Answers are
 * cached for their TTL (capped), NXDOMAIN for a fixed negative TTL since
 * the resolver does not hand over its SOA, errors not at all.
 *
 * How an answer is read (A records of <reversed-ip>.<zone> or
 * <domain>.<zone>):
 *   - only addresses in 127.0.0.0/8 are listing codes; others (a resolver
 *     that rewrites NXDOMAIN to an advertising host) are ignored;
 *   - a code in 127.255.255.0/24 means the list refused to answer (the
 *     Spamhaus convention for queries through public resolvers, over
 *     quota, ...): the list's result is an error, never a listing;
 *   - DNSBL_MATCH_ANY: listed when any code came back;
 *     DNSBL_MATCH_MASK: listed when (code & mask) != 0 for some code, the
 *     code being the IPv4 address as a host-order number (127.0.0.4 is
 *     0x7f000004, so mask 0x4 asks for that bit of the last octet; a
 *     mask with bits in the first octet matches every code);
 *     DNSBL_MATCH_CODES: listed when some code is one of codes[].
 *
 * IPv4 addresses are queried by reversed octets, IPv6 by reversed nibbles
 * (RFC 5782); an IPv4-mapped IPv6 address is queried as IPv4.
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct event_base;
struct dns_resolver;

#define DNSBL_CODES_MAX 8          /* listing codes kept per answer */
#define DNSBL_REASON_MAX 256       /* TXT reason, NUL included */
#define DNSBL_NAME_MAX 254         /* a query name, NUL included */
#define DNSBL_DEFAULT_DEADLINE_MS 3000
#define DNSBL_DEFAULT_CACHE_MAX 10000
#define DNSBL_DEFAULT_NEG_TTL 60
#define DNSBL_DEFAULT_MAX_TTL 3600

enum dnsbl_match {
	DNSBL_MATCH_ANY = 0,
	DNSBL_MATCH_MASK,
	DNSBL_MATCH_CODES,
};

struct dnsbl_list {
	char *name;                /* rule name (%1 of a reply); NULL: the zone */
	char *zone;                /* "zen.spamhaus.org" */
	enum dnsbl_match match;
	uint32_t mask;             /* DNSBL_MATCH_MASK */
	uint32_t *codes;           /* DNSBL_MATCH_CODES: host-order IPv4 codes */
	size_t ncodes;
	char *reply_template;      /* for dnsbl_format_reply; may be NULL */
	int priority;              /* smaller first when choosing "the" hit */
	bool want_txt;             /* fetch the TXT reason of a listing */
};

/* Seconds on a clock that does not jump (CLOCK_MONOTONIC by default). */
typedef time_t (*dnsbl_clock_fn)(void *arg);

struct dnsbl_options {
	unsigned deadline_ms;      /* the whole check; 0: DNSBL_DEFAULT_DEADLINE_MS */
	size_t cache_max;          /* answers kept; 0: no cache */
	unsigned neg_ttl;          /* seconds NXDOMAIN/NODATA is believed */
	unsigned max_ttl;          /* cap of every TTL */
	dnsbl_clock_fn clock;      /* NULL: CLOCK_MONOTONIC */
	void *clock_arg;
};

enum dnsbl_status {
	DNSBL_NOT_LISTED = 0,
	DNSBL_LISTED,
	DNSBL_ERROR,               /* no usable answer: treat as not listed */
};

struct dnsbl_result {
	const struct dnsbl_list *list;   /* a copy, valid during the callback */
	enum dnsbl_status status;
	uint32_t codes[DNSBL_CODES_MAX]; /* 127/8 answers, host order */
	size_t ncodes;
	char reason[DNSBL_REASON_MAX];   /* TXT, printable ASCII only; "" if none */
	const char *error;               /* why, when status is DNSBL_ERROR */
	bool from_cache;
};

/*
 * results[i] belongs to lists[i] of the check; hit is the listed result of
 * the smallest priority (the earlier list on a tie), or NULL. Runs from
 * the loop, never inside dnsbl_check_*(); the check handle is invalid from
 * then on.
 */
typedef void (*dnsbl_cb)(void *arg, const struct dnsbl_result *results, size_t n,
			 const struct dnsbl_result *hit);

struct dnsbl;
struct dnsbl_check;

/* opts NULL: the defaults. Free it before the resolver it uses. */
struct dnsbl *dnsbl_new(struct event_base *base, struct dns_resolver *resolver,
			const struct dnsbl_options *opts);
/* Drops every check in flight without calling back. */
void dnsbl_free(struct dnsbl *d);

/*
 * Ask lists[0..n) about ip (AF_INET or AF_INET6). The lists are copied.
 * NULL, and no callback, when there is nothing to ask (n == 0 or another
 * address family).
 */
struct dnsbl_check *dnsbl_check_ip(struct dnsbl *d, const struct dnsbl_list *lists, size_t n,
				   const struct sockaddr *ip, dnsbl_cb cb, void *arg);
/*
 * RHSBL: ask about a domain (a trailing dot is ignored). NULL, and no
 * callback, when n == 0 or the domain is not a host name (an address
 * literal, an empty label, a label over 63 or a name over 253 bytes).
 */
struct dnsbl_check *dnsbl_check_domain(struct dnsbl *d, const struct dnsbl_list *lists,
				       size_t n, const char *domain, dnsbl_cb cb, void *arg);
/* Only before the callback ran; NULL is ignored. */
void dnsbl_cancel(struct dnsbl_check *c);

/*
 * Expand a reply template: %0 the client IP, %1 the rule name, %2 the
 * zone (NULL expands to nothing), %% a percent sign. -1 (out holds "")
 * when the template has another %-sequence, when the result would contain
 * a control character (CR and LF above all: it goes into an SMTP reply)
 * or would not fit in outlen bytes.
 */
int dnsbl_format_reply(const char *tmpl, const char *ip, const char *rule, const char *zone,
		       char *out, size_t outlen);

/* The query prefix of ip ("4.3.2.1" or 32 nibbles), without the zone; -1 for other families. */
int dnsbl_ip_prefix(const struct sockaddr *ip, char *out, size_t outlen);

/*
 * The parsers of raw answers (also the fuzz target's entry points).
 * dnsbl_parse_a: the 127/8 codes (at most *ncodes in, the count out) and
 * the smallest TTL among all A records; -1 when the answer does not parse.
 * dnsbl_parse_txt: the first TXT record's strings joined, non-printable
 * bytes replaced by '?', cut to reasonlen; -1 (reason "") when there is
 * none.
 */
int dnsbl_parse_a(const unsigned char *answer, size_t len, uint32_t *codes, size_t *ncodes,
		  unsigned *ttl);
int dnsbl_parse_txt(const unsigned char *answer, size_t len, char *reason, size_t reasonlen);

#endif
