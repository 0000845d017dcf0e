/*
 * Reverse DNS of the client: the PTR name is looked up once per HELO and
 * kept in the facts (for logs, Received headers and later engines). With
 * require_ptr a client without one is judged; with require_fcrdns the name
 * must also resolve back to the client address (forward-confirmed reverse
 * DNS), which a forged PTR record cannot achieve.
 *
 * RFC 7372 gives the codes: 550 5.7.25 / 450 4.7.25. A temporary DNS
 * failure is never a reason to reject: it defers only when [rdns] action
 * is defer, and passes otherwise.
 */
#define LOG_MODULE "policy"
#include "core/log.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "policy/policy_engine.h"

#define RDNS_ENGINE "rdns"
#define RDNS_NAME_MAX 253
#define RDNS_QUERY_MAX 80       /* 32 nibbles * 2 + "ip6.arpa" */

struct rdns_engine {
	struct postern *pt;
	const struct config *cfg;
};

/* One client being looked up: the PTR, then maybe the forward name. */
struct rdns_lookup {
	struct rdns_engine *e;
	struct policy_facts *f;
	policy_done_cb done;
	void *arg;
	struct dns_request *req;
	int family;                 /* of the client, IPv4-mapped counted as IPv4 */
	unsigned char addr[16];     /* IPv4 in addr[0..3] */
};

/* The client address as PTR queries see it; false when it is not IP. */
static bool rdns_client_addr(const struct policy_facts *f, int *family, unsigned char addr[16])
{
	const struct sockaddr *sa = (const struct sockaddr *)&f->client;
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		*family = AF_INET;
	} else {
		*family = AF_INET6;
	}
	return true;
}

/* "4.3.2.1.in-addr.arpa" or the nibble form under ip6.arpa (RFC 3596). */
static void rdns_query_name(int family, const unsigned char *addr, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (family == AF_INET) {
		snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", addr[3], addr[2], addr[1], addr[0]);
		return;
	}
	for (int i = 15; i >= 0 && n + 4 < outlen; i--) {
		out[n++] = hex[addr[i] & 0x0f];
		out[n++] = '.';
		out[n++] = hex[addr[i] >> 4];
		out[n++] = '.';
	}
	snprintf(out + n, outlen - n, "ip6.arpa");
}

/* A PTR target usable as a host name: lower case, no trailing dot. */
static char *rdns_clean_name(const char *name)
{
	size_t len = strlen(name);
	char *out;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > RDNS_NAME_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '.' && name[i] != '_')
			return NULL;
	}
	out = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[len] = '\0';
	return out;
}

/* A finding that [rdns] action decides on; TAG adds the symbol. */
static void rdns_finding(const struct rdns_engine *e, struct policy_facts *f,
			 struct policy_result *res, const char *symbol, const char *why)
{
	const struct policy_common *c = &e->cfg->rdns;
	struct engine_result *r;

	snprintf(res->engine, sizeof(res->engine), RDNS_ENGINE);
	switch (c->action) {
	case POLICY_ACTION_REJECT:
	case POLICY_ACTION_DEFER:
		res->verdict = c->action == POLICY_ACTION_REJECT ? POLICY_REJECT : POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "%s Client host rejected: %s, [%s]",
			 c->action == POLICY_ACTION_REJECT ? "550 5.7.25" : "450 4.7.25", why,
			 f->client_addr);
		break;
	case POLICY_ACTION_TAG:
		r = engine_results_add(f->symbols, "policy", symbol);
		r->score = c->score;
		r->category = CATEGORY_DYNAMIC;
		snprintf(r->reason, sizeof(r->reason), "[%s]: %s", f->client_addr, why);
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "%s [%s]: %s", symbol, f->client_addr, why);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("rdns client=%s finding=%s (ignored)", f->client_addr, symbol);
		break;
	}
}

/* DNS did not answer: defer when the administrator wants that, else pass. */
static void rdns_tempfail(const struct rdns_engine *e, const struct policy_facts *f,
			  struct policy_result *res, enum dns_status st)
{
	log_info("rdns client=%s: look-up failed (%s), not held against it", f->client_addr,
		 dns_status_str(st));
	if (e->cfg->rdns.action != POLICY_ACTION_DEFER)
		return;
	res->verdict = POLICY_DEFER;
	snprintf(res->engine, sizeof(res->engine), RDNS_ENGINE);
	snprintf(res->reply, sizeof(res->reply),
		 "450 4.7.25 Client host rejected: cannot find your hostname, [%s]", f->client_addr);
}

static void rdns_finish(struct rdns_lookup *l, const struct policy_result *res)
{
	l->done(l->arg, res);
	free(l);
}

static bool rdns_addr_matches(const struct rdns_lookup *l, const struct dns_addr *a)
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	const unsigned char *b;

	if (sa->sa_family == AF_INET)
		return l->family == AF_INET &&
		       memcmp(&((const struct sockaddr_in *)sa)->sin_addr, l->addr, 4) == 0;
	if (sa->sa_family != AF_INET6)
		return false;
	b = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (l->family == AF_INET)
		return memcmp(b, mapped, 12) == 0 && memcmp(b + 12, l->addr, 4) == 0;
	return memcmp(b, l->addr, 16) == 0;
}

static void rdns_on_forward(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct rdns_lookup *l = arg;
	struct policy_result res = { .verdict = POLICY_PASS };

	if (st == DNS_TEMPFAIL || st == DNS_MALFORMED) {
		rdns_tempfail(l->e, l->f, &res, st);
	} else {
		bool found = false;

		for (size_t i = 0; st == DNS_OK && i < n && !found; i++)
			found = rdns_addr_matches(l, &addrs[i]);
		if (!found)
			rdns_finding(l->e, l->f, &res, "RDNS_MISMATCH",
				     "hostname does not resolve to your address");
	}
	rdns_finish(l, &res);
}

/* The first PTR name of the answer, cleaned; NULL when there is none usable. */
static char *rdns_parse_ptr(const struct rdns_lookup *l, const unsigned char *answer, size_t len)
{
	struct hostent *host = NULL;
	char *name;

	if (len > INT_MAX ||
	    ares_parse_ptr_reply(answer, (int)len, l->addr, l->family == AF_INET ? 4 : 16, l->family,
				 &host) != ARES_SUCCESS)
		return NULL;
	name = host->h_name != NULL ? rdns_clean_name(host->h_name) : NULL;
	ares_free_hostent(host);
	return name;
}

static void rdns_on_ptr(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct rdns_lookup *l = arg;
	const struct config *cfg = l->e->cfg;
	struct policy_result res = { .verdict = POLICY_PASS };
	char *name = NULL;

	l->req = NULL;
	if (st == DNS_TEMPFAIL || st == DNS_MALFORMED) {
		rdns_tempfail(l->e, l->f, &res, st);
		rdns_finish(l, &res);
		return;
	}
	if (st == DNS_OK)
		name = rdns_parse_ptr(l, answer, len);
	free(l->f->ptr_name);
	l->f->ptr_name = name;
	if (name == NULL) {
		if (cfg->rdns_require_ptr || cfg->rdns_require_fcrdns)
			rdns_finding(l->e, l->f, &res, "RDNS_NONE", "cannot find your hostname");
		rdns_finish(l, &res);
		return;
	}
	if (!cfg->rdns_require_fcrdns) {
		rdns_finish(l, &res);
		return;
	}
	l->req = dns_lookup_addr(l->e->pt->dns, name, l->family, rdns_on_forward, l);
}

static int rdns_check(void *state, struct policy_facts *f, struct policy_result *res,
		      policy_done_cb done, void *arg, void **handle)
{
	struct rdns_engine *e = state;
	struct rdns_lookup *l;
	char qname[RDNS_QUERY_MAX];

	if (e->pt->dns == NULL)
		return 0;
	l = xcalloc(1, sizeof(*l));
	if (!rdns_client_addr(f, &l->family, l->addr)) {
		free(l);
		return 0;
	}
	l->e = e;
	l->f = f;
	l->done = done;
	l->arg = arg;
	rdns_query_name(l->family, l->addr, qname, sizeof(qname));
	l->req = dns_query_raw(e->pt->dns, qname, ns_t_ptr, rdns_on_ptr, l);
	*handle = l;
	return 1;
}

static void rdns_cancel(void *state, void *handle)
{
	struct rdns_lookup *l = handle;

	dns_cancel(l->req);
	free(l);
}

int policy_rdns_build(struct policy_build *b)
{
	struct rdns_engine *e;
	struct policy_engine pe;

	if (!b->cfg->rdns.enabled)
		return 0;
	e = xcalloc(1, sizeof(*e));
	e->pt = b->pt;
	e->cfg = b->cfg;
	pe = (struct policy_engine){
		.name = RDNS_ENGINE,
		.stage = POLICY_STAGE_HELO,
		.common = &b->cfg->rdns,
		.legitimacy = true,
		.state = e,
		.check = rdns_check,
		.cancel = rdns_cancel,
		.free = free,
	};
	policy_build_add(b, &pe);
	return 0;
}
