/*
 * HELO sanity: the name a client gives in HELO/EHLO says little, but a
 * client that cannot even give a fully-qualified name, gives a name that
 * does not exist, an address literal that is not its own, or claims to be
 * this very host, is almost never a legitimate mail server.
 *
 * The syntax checks answer at once; the A/AAAA look-up (require_resolvable)
 * goes through the resolver. Every finding follows [helo] action: reject,
 * defer, tag (a symbol with [helo] score) or ignore (log only). A temporary
 * DNS failure is never held against the client.
 */
#define LOG_MODULE "policy"
#include "core/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "policy/policy_engine.h"

#define HELO_ENGINE "helo"
#define HELO_SHOWN_MAX 128      /* of the HELO name in replies and logs */
#define HELO_NAME_MAX 253

struct helo_engine {
	struct postern *pt;
	const struct config *cfg;
};

/* One look-up in flight; owned by the engine until done() or cancel(). */
struct helo_lookup {
	struct helo_engine *e;
	struct policy_facts *f;
	struct policy_result res;     /* findings of the synchronous checks */
	policy_done_cb done;
	void *arg;
	struct dns_request *req;
};

/* The client's words in our reply: printable ASCII only, bounded. */
static void helo_shown(const char *helo, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *helo != '\0' && n + 1 < outlen && n < HELO_SHOWN_MAX; helo++)
		out[n++] = (*helo > 0x20 && *helo < 0x7f) ? *helo : '?';
	out[n] = '\0';
}

/* An address literal "[192.0.2.1]" or "[IPv6:2001:db8::1]" as bytes. */
static bool helo_parse_literal(const char *helo, struct sockaddr_storage *ss)
{
	char inner[64];
	size_t len = strlen(helo);
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (len < 3 || helo[0] != '[' || helo[len - 1] != ']' || len - 2 >= sizeof(inner))
		return false;
	memcpy(inner, helo + 1, len - 2);
	inner[len - 2] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (strncasecmp(inner, "IPv6:", 5) == 0) {
		sin6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, inner + 5, &sin6->sin6_addr) == 1;
	}
	sin->sin_family = AF_INET;
	return inet_pton(AF_INET, inner, &sin->sin_addr) == 1;
}

/*
 * The 16 bytes of an address, IPv4 as IPv4-mapped IPv6, for comparisons.
 * Read with memcpy: the storage was written through another sockaddr
 * type, and the optimiser may not see a cast pointer's read as aliasing it.
 */
static bool helo_addr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
	sa_family_t family;

	memcpy(&family, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof(family));
	if (family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, (const char *)sa + offsetof(struct sockaddr_in, sin_addr), 4);
		return true;
	}
	if (family == AF_INET6) {
		memcpy(out, (const char *)sa + offsetof(struct sockaddr_in6, sin6_addr), 16);
		return true;
	}
	return false;
}

static bool helo_same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	unsigned char x[16], y[16];

	return helo_addr_bytes(a, x) && helo_addr_bytes(b, y) && memcmp(x, y, 16) == 0;
}

static bool helo_label_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/*
 * A dotted host name whose last label looks like a top-level domain
 * (letters, or an IDN "xn--" label): "mail.example.com" passes, "mail",
 * "localhost" and a bare "192.0.2.1" do not.
 */
static bool helo_is_fqdn(const char *helo)
{
	size_t len = strlen(helo), labels = 0, i = 0;
	const char *last = NULL;

	if (len > 0 && helo[len - 1] == '.')
		len--;
	if (len == 0 || len > HELO_NAME_MAX)
		return false;
	while (i < len) {
		size_t start = i;

		while (i < len && helo[i] != '.') {
			if (!helo_label_char(helo[i]))
				return false;
			i++;
		}
		if (i == start || i - start > 63 || helo[start] == '-' || helo[i - 1] == '-')
			return false;
		last = helo + start;
		labels++;
		if (i < len && ++i == len)
			return false;
	}
	if (labels < 2)
		return false;
	if (strncasecmp(last, "xn--", 4) == 0)
		return (size_t)(helo + len - last) > 4;
	if (helo + len - last < 2)
		return false;
	for (const char *p = last; p < helo + len; p++) {
		if (!isalpha((unsigned char)*p))
			return false;
	}
	return true;
}

/* Whether the client claims a name or address of ours. */
static bool helo_claims_ours(const struct helo_engine *e, const char *helo,
			     const struct sockaddr_storage *literal, bool is_literal)
{
	const struct config *cfg = e->cfg;
	size_t len = strlen(helo);
	unsigned char want[16], have[16];

	if (!is_literal) {
		if (cfg->hostname == NULL)
			return false;
		if (len > 0 && helo[len - 1] == '.')
			len--;
		return strlen(cfg->hostname) == len && strncasecmp(cfg->hostname, helo, len) == 0;
	}
	if (!helo_addr_bytes((const struct sockaddr *)literal, want))
		return false;
	for (size_t i = 0; i < cfg->nlistens; i++) {
		struct in_addr a4;
		struct in6_addr a6;

		if (inet_pton(AF_INET, cfg->listens[i].addr, &a4) == 1) {
			memset(have, 0, 10);
			have[10] = have[11] = 0xff;
			memcpy(have + 12, &a4, 4);
		} else if (inet_pton(AF_INET6, cfg->listens[i].addr, &a6) == 1) {
			memcpy(have, &a6, 16);
		} else {
			continue;
		}
		if (memcmp(have, want, 16) == 0)
			return true;
	}
	return false;
}

/* A loopback client is this host itself: it may call itself by our name. */
static bool helo_client_is_local(const struct policy_facts *f)
{
	unsigned char b[16];
	static const unsigned char v6_loopback[16] = { [15] = 1 };

	if (!helo_addr_bytes((const struct sockaddr *)&f->client, b))
		return false;
	if (memcmp(b, v6_loopback, 16) == 0)
		return true;
	return b[10] == 0xff && b[11] == 0xff && memcmp(b, v6_loopback, 10) == 0 && b[12] == 127;
}

/*
 * Apply the action to one finding. True when the stage is decided (defer
 * or reject); tags accumulate symbols and the first one gives the reason.
 */
static bool helo_finding(const struct helo_engine *e, struct policy_facts *f,
			 struct policy_result *res, const char *symbol, const char *why)
{
	const struct policy_common *c = &e->cfg->helo;
	char shown[HELO_SHOWN_MAX + 1];
	struct engine_result *r;

	helo_shown(f->helo, shown, sizeof(shown));
	snprintf(res->engine, sizeof(res->engine), HELO_ENGINE);
	switch (c->action) {
	case POLICY_ACTION_REJECT:
	case POLICY_ACTION_DEFER:
		res->verdict = c->action == POLICY_ACTION_REJECT ? POLICY_REJECT : POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "%s <%s>: Helo command rejected: %s",
			 c->action == POLICY_ACTION_REJECT ? "550 5.7.1" : "450 4.7.1", shown, why);
		return true;
	case POLICY_ACTION_TAG:
		r = engine_results_add(f->symbols, "policy", symbol);
		r->score = c->score;
		r->category = CATEGORY_DYNAMIC;
		snprintf(r->reason, sizeof(r->reason), "HELO %s: %s", shown, why);
		if (res->verdict != POLICY_TAG) {
			res->verdict = POLICY_TAG;
			snprintf(res->reply, sizeof(res->reply), "%s %s: %s", symbol, shown, why);
		}
		return false;
	case POLICY_ACTION_IGNORE:
		log_info("helo client=%s helo=%s finding=%s (ignored)", f->client_addr, shown, symbol);
		return false;
	}
	return false;
}

static void helo_on_addr(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct helo_lookup *l = arg;
	struct policy_result res = l->res;

	if (st == DNS_NXDOMAIN || st == DNS_NODATA || (st == DNS_OK && n == 0))
		helo_finding(l->e, l->f, &res, "HELO_UNRESOLVABLE", "Host not found");
	else if (st != DNS_OK)
		log_info("helo client=%s: cannot resolve %s (%s), not held against it",
			 l->f->client_addr, l->f->helo, dns_status_str(st));
	l->done(l->arg, &res);
	free(l);
}

static int helo_check(void *state, struct policy_facts *f, struct policy_result *res,
		      policy_done_cb done, void *arg, void **handle)
{
	struct helo_engine *e = state;
	const struct config *cfg = e->cfg;
	struct sockaddr_storage literal;
	bool is_literal;
	struct helo_lookup *l;

	if (f->helo == NULL)
		return 0;
	is_literal = helo_parse_literal(f->helo, &literal);
	if (cfg->helo_require_fqdn && !is_literal && !helo_is_fqdn(f->helo) &&
	    helo_finding(e, f, res, "HELO_NOT_FQDN", "need fully-qualified hostname"))
		return 0;
	if (f->direction == POLICY_DIR_INBOUND && !helo_client_is_local(f) &&
	    !(is_literal && helo_same_addr((const struct sockaddr *)&literal,
					   (const struct sockaddr *)&f->client)) &&
	    helo_claims_ours(e, f->helo, &literal, is_literal) &&
	    helo_finding(e, f, res, "HELO_FORGED_OURS", "you are not me"))
		return 0;
	if (!cfg->helo_require_resolvable)
		return 0;
	if (is_literal) {
		if (!helo_same_addr((const struct sockaddr *)&literal, (const struct sockaddr *)&f->client))
			helo_finding(e, f, res, "HELO_LITERAL_MISMATCH",
				     "address literal does not match your address");
		return 0;
	}
	if (!helo_is_fqdn(f->helo)) {
		/* No DNS name to look up; found once, whichever check found it. */
		if (!cfg->helo_require_fqdn)
			helo_finding(e, f, res, "HELO_UNRESOLVABLE", "Host not found");
		return 0;
	}
	if (e->pt->dns == NULL)
		return 0;
	l = xcalloc(1, sizeof(*l));
	l->e = e;
	l->f = f;
	l->res = *res;
	l->done = done;
	l->arg = arg;
	l->req = dns_lookup_addr(e->pt->dns, f->helo, AF_UNSPEC, helo_on_addr, l);
	*handle = l;
	return 1;
}

static void helo_cancel(void *state, void *handle)
{
	struct helo_lookup *l = handle;

	dns_cancel(l->req);
	free(l);
}

int policy_helo_build(struct policy_build *b)
{
	struct helo_engine *e;
	struct policy_engine pe;

	if (!b->cfg->helo.enabled)
		return 0;
	e = xcalloc(1, sizeof(*e));
	e->pt = b->pt;
	e->cfg = b->cfg;
	pe = (struct policy_engine){
		.name = HELO_ENGINE,
		.stage = POLICY_STAGE_HELO,
		.common = &b->cfg->helo,
		.legitimacy = true,
		.state = e,
		.check = helo_check,
		.cancel = helo_cancel,
		.free = free,
	};
	policy_build_add(b, &pe);
	return 0;
}
