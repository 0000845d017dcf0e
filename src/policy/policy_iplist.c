/*
 * [iplist]: static allow and deny lists of client addresses, judged
 * before the banner.
 *
 * Deny wins over allow: an address in both lists is refused. Postfix
 * stops at the first "permit" of its restriction list; here an explicit
 * deny is the operator's sharper statement (block one compromised host
 * inside an allow-listed partner network without splitting the range),
 * and refusing is the safer mistake. An allowed client is ACCEPTed: the
 * later legitimacy engines (limits, DNSBL, HELO, SPF...) skip the
 * session; the content stage and the virus scan still run.
 */
#define LOG_MODULE "policy"
#include "policy/policy_engine.h"

#include <stdio.h>
#include <string.h>

#include "content/engine.h"
#include "core/log.h"

static void iplist_tag(struct policy_facts *f, const struct config *cfg)
{
	struct engine_result *r = engine_results_add(f->symbols, "policy", "IPLIST_DENY");

	r->score = cfg->iplist.score;
	r->category = CATEGORY_DYNAMIC;
	snprintf(r->reason, sizeof(r->reason), "client %s is in the [iplist] deny list", f->client_addr);
}

/* The deny list's verdict under [iplist] action. */
static void iplist_deny(const struct config *cfg, struct policy_facts *f, struct policy_result *res)
{
	snprintf(res->engine, sizeof(res->engine), "iplist");
	switch (cfg->iplist.action) {
	case POLICY_ACTION_REJECT:
		res->verdict = POLICY_REJECT;
		res->disconnect = true;
		snprintf(res->reply, sizeof(res->reply), "554 5.7.1 Access denied");
		break;
	case POLICY_ACTION_DEFER:
		res->verdict = POLICY_DEFER;
		res->disconnect = true;
		snprintf(res->reply, sizeof(res->reply), "421 4.7.1 Access denied, try again later");
		break;
	case POLICY_ACTION_TAG:
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "client in the deny list");
		iplist_tag(f, cfg);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("iplist: client %s is in the deny list (action ignore)", f->client_addr);
		break;
	}
}

static int iplist_check(void *state, struct policy_facts *f, struct policy_result *res,
			policy_done_cb done, void *arg, void **handle)
{
	const struct config *cfg = state;
	const struct sockaddr *sa = (const struct sockaddr *)&f->client;

	if (cfg->ip_deny.count > 0 && cidr_list_contains(&cfg->ip_deny, sa)) {
		iplist_deny(cfg, f, res);
		return 0;
	}
	if (cfg->ip_allow.count > 0 && cidr_list_contains(&cfg->ip_allow, sa)) {
		res->verdict = POLICY_ACCEPT;
		snprintf(res->engine, sizeof(res->engine), "iplist");
	}
	return 0;
}

int policy_iplist_build(struct policy_build *b)
{
	struct policy_engine e = {
		.name = "iplist",
		.stage = POLICY_STAGE_CONNECT,
		.common = &b->cfg->iplist,
		.legitimacy = false,
		.state = b->cfg,
		.check = iplist_check,
	};

	if (b->cfg->ip_allow.count == 0 && b->cfg->ip_deny.count == 0)
		return 0;
	policy_build_add(b, &e);
	return 0;
}
