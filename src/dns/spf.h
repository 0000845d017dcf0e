/*
 * SPF (RFC 7208): check_host() on the project's asynchronous resolver.
 *
 * spf_check() evaluates the MAIL FROM identity (the HELO identity when the
 * sender is null), spf_check_helo() the HELO identity alone. Every DNS
 * query goes through dns_query_raw() and is parsed here, one query at a
 * time, so a check never holds more than one outstanding request. All the
 * RFC limits are enforced: 10 DNS-querying terms, 2 void lookups, 10 MX
 * and 10 PTR names, and bounded record, macro and explanation sizes.
 *
 * The record parser and the macro expander need no DNS and are exported
 * for tests, tools and the fuzzer.
 */
#ifndef POSTERN_SPF_H
#define POSTERN_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "core/strbuf.h"

struct dns_resolver;
struct event_base;
struct spf_request;

enum spf_result {
	SPF_NONE,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

#define SPF_DOMAIN_MAX 253        /* a domain name in text form, no trailing dot */
#define SPF_RECORD_MAX 4096       /* a TXT record, strings joined */
#define SPF_EXPLANATION_MAX 1024  /* the expanded exp= text */
#define SPF_MACRO_MAX 4096        /* any macro expansion before truncation */
#define SPF_LOOKUP_LIMIT 10       /* RFC 7208 4.6.4 */
#define SPF_VOID_LIMIT 2
#define SPF_MX_LIMIT 10
#define SPF_PTR_LIMIT 10

/* What a check found. Strings live as long as the callback runs. */
struct spf_outcome {
	enum spf_result result;
	const char *identity;      /* "mailfrom" or "helo" */
	const char *domain;        /* the domain whose record was checked */
	const char *mechanism;     /* term that decided, "default" or "" */
	const char *explanation;   /* for fail: exp= text, else the default; "" otherwise */
	bool explanation_default;  /* explanation is ours, not the domain's */
	const char *problem;       /* why none/temperror/permerror, else "" */
	const char *client_ip;
	const char *sender;        /* as checked: postmaster@helo for a null sender */
	const char *helo;
	const char *receiver;
};

typedef void (*spf_done_cb)(void *arg, const struct spf_outcome *out);

/*
 * Start a check; cb runs once from base's loop, never inside this call
 * (base is the resolver's loop). sender is "" for the null sender;
 * receiver names this host in %{r} and the Received-SPF header (NULL:
 * "unknown").
 */
struct spf_request *spf_check(struct event_base *base, struct dns_resolver *r,
			      const struct sockaddr *client_ip, const char *helo,
			      const char *sender, const char *receiver,
			      spf_done_cb cb, void *arg);
/* The HELO identity alone (RFC 7208 2.3). */
struct spf_request *spf_check_helo(struct event_base *base, struct dns_resolver *r,
				   const struct sockaddr *client_ip, const char *helo,
				   const char *receiver, spf_done_cb cb, void *arg);
/* Only before the callback ran; NULL is ignored. */
void spf_cancel(struct spf_request *req);

const char *spf_result_str(enum spf_result res);

/*
 * Append "Received-SPF: ..." (RFC 7208 9.1), folded with CRLF + TAB, no
 * final CRLF; -1 if sb's limit is reached.
 */
int spf_received_header(const struct spf_outcome *out, struct strbuf *sb);

/* ---- the parts that need no DNS ---- */

enum spf_mech_type {
	SPF_MECH_ALL,
	SPF_MECH_INCLUDE,
	SPF_MECH_A,
	SPF_MECH_MX,
	SPF_MECH_PTR,
	SPF_MECH_IP4,
	SPF_MECH_IP6,
	SPF_MECH_EXISTS,
};

struct spf_mech {
	enum spf_mech_type type;
	enum spf_result qualifier;    /* SPF_PASS, SPF_FAIL, SPF_SOFTFAIL or SPF_NEUTRAL */
	char *domain_spec;            /* NULL: the current domain */
	unsigned char net[16];        /* ip4 in net[0..3], ip6 in all 16 */
	int cidr4;                    /* prefix for IPv4 clients, -1: whole address */
	int cidr6;                    /* prefix for IPv6 clients, -1: whole address */
	char *text;                   /* the term as written */
};

struct spf_record {
	struct spf_mech *mechs;
	size_t count;
	char *redirect;               /* domain-spec or NULL */
	char *exp;                    /* domain-spec or NULL */
};

/*
 * Parse the text of one "v=spf1" record; NULL on any syntax error (RFC 7208
 * 4.6: an error anywhere voids the record), with the reason in err.
 */
struct spf_record *spf_record_parse(const char *text, char *err, size_t errlen);
void spf_record_free(struct spf_record *rec);
/* Whether text starts with the version "v=spf1" followed by a space or its end. */
bool spf_record_is_spf1(const char *text, size_t len);

/* The client address as macros and mechanisms see it. */
struct spf_ip {
	int family;                   /* AF_INET or AF_INET6; mapped IPv4 is AF_INET */
	unsigned char addr[16];       /* IPv4 in addr[0..3] */
};

/* Convert a socket address, unmapping ::ffff:a.b.c.d; -1 if not IP. */
int spf_ip_from_sockaddr(struct spf_ip *ip, const struct sockaddr *sa);
/* Whether ip lies in the mechanism's network (ip4/ip6 terms). */
bool spf_ip_in_net(const struct spf_ip *ip, const unsigned char *net, int net_family, int prefix);

struct spf_macro_env {
	const char *sender;           /* local-part@domain */
	const char *local;            /* %{l} */
	const char *sender_domain;    /* %{o} */
	const char *domain;           /* %{d}: the current domain */
	const char *helo;             /* %{h} */
	const char *receiver;         /* %{r}; NULL: "unknown" */
	const char *validated;        /* %{p}; NULL: "unknown" */
	const struct spf_ip *ip;      /* %{i} %{c} %{v} */
	time_t now;                   /* %{t} */
};

/*
 * Expand a macro-string (RFC 7208 7). explain allows %{c} %{r} %{t}.
 * -1 on a syntax error or when out's limit is reached.
 */
int spf_macro_expand(const char *spec, const struct spf_macro_env *env, bool explain,
		     struct strbuf *out);
/* Whether spec is valid macro-string syntax (explain: exp text rules). */
bool spf_macro_valid(const char *spec, bool explain);
/* Whether spec uses %{p}, which needs DNS before it can be expanded. */
bool spf_macro_uses_p(const char *spec);
/*
 * Expand a domain-spec into a query name: trailing dot dropped, left labels
 * removed until it fits 253 characters (RFC 7208 7.3). -1 on syntax error.
 */
int spf_expand_domain(const char *spec, const struct spf_macro_env *env,
		      char out[SPF_DOMAIN_MAX + 1]);
/* A name DNS can carry: no empty label, labels of at most 63 octets, 253 in all. */
bool spf_domain_queryable(const char *name);

#endif
