/*
 * The envelope sender at MAIL FROM, in two engines:
 *
 *   sender         the administrator's lists: [sender] allow marks the
 *                  session allow-listed (later legitimacy checks are
 *                  skipped), deny refuses. It runs for allow-listed
 *                  clients too: a deny entry is an explicit decision.
 *   sender_domain  legitimacy: the null sender (reject_blank) and a
 *                  sender domain that cannot receive replies
 *                  (require_resolvable: no MX and no A/AAAA, or a null MX).
 *
 * List entries are "a@b.example", "@b.example" or "b.example" (see
 * policy_sender_listed). A temporary DNS failure never rejects: it defers
 * only when [sender] action is defer, and passes otherwise.
 */
#define LOG_MODULE "policy"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "policy/policy_engine.h"

#define SENDER_ENGINE "sender"
#define SENDER_DOMAIN_ENGINE "sender_domain"
#define SENDER_SHOWN_MAX 256
#define SENDER_DOMAIN_MAX 255

struct sender_engine {
	struct postern *pt;
	const struct config *cfg;
};

struct sender_lookup {
	struct sender_engine *e;
	struct policy_facts *f;
	policy_done_cb done;
	void *arg;
	struct dns_request *req;
	char domain[SENDER_DOMAIN_MAX + 1];
};

/* The sender as it may appear in a reply: printable ASCII, bounded. */
static void sender_shown(const char *sender, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *sender != '\0' && n + 1 < outlen && n < SENDER_SHOWN_MAX; sender++)
		out[n++] = (*sender > 0x20 && *sender < 0x7f) ? *sender : '?';
	out[n] = '\0';
}

static void sender_tag(struct policy_facts *f, struct policy_result *res, double score,
		       const char *symbol, const char *why)
{
	struct engine_result *r = engine_results_add(f->symbols, "policy", symbol);

	r->score = score;
	r->category = CATEGORY_SPAM;
	snprintf(r->reason, sizeof(r->reason), "%s", why);
	res->verdict = POLICY_TAG;
	snprintf(res->reply, sizeof(res->reply), "%s %s", symbol, why);
}

/*
 * A finding with its own reply codes (reject_code for reject, defer_code
 * for defer); text follows the codes; tag adds symbol.
 */
static void sender_finding(const struct sender_engine *e, struct policy_facts *f,
			   struct policy_result *res, const char *engine, const char *symbol,
			   const char *reject_code, const char *defer_code, const char *text)
{
	const struct policy_common *c = &e->cfg->sender;

	snprintf(res->engine, sizeof(res->engine), "%s", engine);
	switch (c->action) {
	case POLICY_ACTION_REJECT:
		res->verdict = POLICY_REJECT;
		snprintf(res->reply, sizeof(res->reply), "%s %s", reject_code, text);
		break;
	case POLICY_ACTION_DEFER:
		res->verdict = POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "%s %s", defer_code, text);
		break;
	case POLICY_ACTION_TAG:
		sender_tag(f, res, c->score, symbol, text);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("%s client=%s from=<%s> finding=%s (ignored)", engine, f->client_addr,
			 f->sender, symbol);
		break;
	}
}

static int sender_lists_check(void *state, struct policy_facts *f, struct policy_result *res,
			      policy_done_cb done, void *arg, void **handle)
{
	const struct sender_engine *e = state;
	const struct config *cfg = e->cfg;
	char shown[SENDER_SHOWN_MAX + 1], text[SENDER_SHOWN_MAX + 64];

	if (f->sender == NULL)
		return 0;
	if (policy_sender_listed(cfg->sender_allow, cfg->nsender_allow, f->sender)) {
		res->verdict = POLICY_ACCEPT;
		snprintf(res->engine, sizeof(res->engine), SENDER_ENGINE);
		return 0;
	}
	if (!policy_sender_listed(cfg->sender_deny, cfg->nsender_deny, f->sender))
		return 0;
	sender_shown(f->sender, shown, sizeof(shown));
	snprintf(text, sizeof(text), "<%s>: Sender address rejected: Access denied", shown);
	sender_finding(e, f, res, SENDER_ENGINE, "SENDER_DENIED", "554 5.7.1", "451 4.7.1", text);
	return 0;
}

/* The sender domain has nowhere to send replies to. */
static void sender_domain_missing(const struct sender_lookup *l, struct policy_result *res)
{
	char shown[SENDER_SHOWN_MAX + 1], text[SENDER_SHOWN_MAX + 64];

	sender_shown(l->f->sender, shown, sizeof(shown));
	snprintf(text, sizeof(text), "<%s>: Sender address rejected: Domain not found", shown);
	sender_finding(l->e, l->f, res, SENDER_DOMAIN_ENGINE, "SENDER_DOMAIN_UNKNOWN", "550 5.1.8",
		       "450 4.1.8", text);
}

/* DNS did not answer: defer when the administrator wants that, else pass. */
static void sender_domain_tempfail(const struct sender_lookup *l, struct policy_result *res,
				   enum dns_status st)
{
	char shown[SENDER_SHOWN_MAX + 1];

	log_info("sender_domain client=%s domain=%s: look-up failed (%s), not held against it",
		 l->f->client_addr, l->domain, dns_status_str(st));
	if (l->e->cfg->sender.action != POLICY_ACTION_DEFER)
		return;
	sender_shown(l->f->sender, shown, sizeof(shown));
	res->verdict = POLICY_DEFER;
	snprintf(res->engine, sizeof(res->engine), SENDER_DOMAIN_ENGINE);
	snprintf(res->reply, sizeof(res->reply),
		 "451 4.1.8 <%s>: Sender address rejected: Domain not found, try again later", shown);
}

static void sender_lookup_finish(struct sender_lookup *l, const struct policy_result *res)
{
	l->done(l->arg, res);
	free(l);
}

static void sender_on_addr(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct sender_lookup *l = arg;
	struct policy_result res = { .verdict = POLICY_PASS };

	if (st == DNS_NXDOMAIN || st == DNS_NODATA || (st == DNS_OK && n == 0))
		sender_domain_missing(l, &res);
	else if (st != DNS_OK)
		sender_domain_tempfail(l, &res, st);
	sender_lookup_finish(l, &res);
}

static void sender_on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n)
{
	struct sender_lookup *l = arg;
	struct policy_result res = { .verdict = POLICY_PASS };
	char shown[SENDER_SHOWN_MAX + 1], text[SENDER_SHOWN_MAX + 80];

	l->req = NULL;
	if (st == DNS_NODATA || (st == DNS_OK && n == 0)) {
		/* No MX: mail goes to the A/AAAA of the domain (RFC 5321 5.1). */
		l->req = dns_lookup_addr(l->e->pt->dns, l->domain, AF_UNSPEC, sender_on_addr, l);
		return;
	}
	if (st == DNS_NXDOMAIN) {
		sender_domain_missing(l, &res);
	} else if (st != DNS_OK) {
		sender_domain_tempfail(l, &res, st);
	} else if (n == 1 && strcmp(mx[0].host, ".") == 0) {
		/* RFC 7505 4.2: a null MX domain sends no mail either. */
		sender_shown(l->f->sender, shown, sizeof(shown));
		snprintf(text, sizeof(text), "<%s>: Sender address rejected: Domain has null MX",
			 shown);
		sender_finding(l->e, l->f, &res, SENDER_DOMAIN_ENGINE, "SENDER_NULL_MX", "550 5.7.27",
			       "450 4.7.27", text);
	}
	sender_lookup_finish(l, &res);
}

static int sender_domain_check(void *state, struct policy_facts *f, struct policy_result *res,
			       policy_done_cb done, void *arg, void **handle)
{
	struct sender_engine *e = state;
	const struct config *cfg = e->cfg;
	const char *at, *domain;
	struct sender_lookup *l;

	if (f->sender == NULL)
		return 0;
	if (f->sender[0] == '\0') {
		if (cfg->sender_reject_blank)
			sender_finding(e, f, res, SENDER_DOMAIN_ENGINE, "SENDER_BLANK", "550 5.7.1",
				       "450 4.7.1", "Null sender not accepted here");
		return 0;
	}
	at = strrchr(f->sender, '@');
	domain = at != NULL ? at + 1 : "";
	/* An address literal needs no DNS; a domain too long for DNS fails there. */
	if (!cfg->sender_require_resolvable || e->pt->dns == NULL || domain[0] == '\0' ||
	    domain[0] == '[' || strlen(domain) > SENDER_DOMAIN_MAX)
		return 0;
	l = xcalloc(1, sizeof(*l));
	l->e = e;
	l->f = f;
	l->done = done;
	l->arg = arg;
	snprintf(l->domain, sizeof(l->domain), "%s", domain);
	l->req = dns_lookup_mx(e->pt->dns, l->domain, sender_on_mx, l);
	*handle = l;
	return 1;
}

static void sender_domain_cancel(void *state, void *handle)
{
	struct sender_lookup *l = handle;

	dns_cancel(l->req);
	free(l);
}

int policy_sender_build(struct policy_build *b)
{
	const struct config *cfg = b->cfg;
	struct sender_engine *e;
	struct policy_engine pe;

	if (!cfg->sender.enabled)
		return 0;
	if (cfg->nsender_allow > 0 || cfg->nsender_deny > 0) {
		e = xcalloc(1, sizeof(*e));
		e->pt = b->pt;
		e->cfg = cfg;
		pe = (struct policy_engine){
			.name = SENDER_ENGINE,
			.stage = POLICY_STAGE_MAIL,
			.common = &b->cfg->sender,
			.legitimacy = false,
			.state = e,
			.check = sender_lists_check,
			.free = free,
		};
		policy_build_add(b, &pe);
	}
	if (cfg->sender_reject_blank || cfg->sender_require_resolvable) {
		e = xcalloc(1, sizeof(*e));
		e->pt = b->pt;
		e->cfg = cfg;
		pe = (struct policy_engine){
			.name = SENDER_DOMAIN_ENGINE,
			.stage = POLICY_STAGE_MAIL,
			.common = &b->cfg->sender,
			.legitimacy = true,
			.state = e,
			.check = sender_domain_check,
			.cancel = sender_domain_cancel,
			.free = free,
		};
		policy_build_add(b, &pe);
	}
	return 0;
}
