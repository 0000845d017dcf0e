/*
 * Greylisting at RCPT: the first attempt of an unknown (client network,
 * sender, recipient) triple is deferred; a real MTA retries after the delay
 * and passes, and its network is then whitelisted for a while. The state
 * is the SQLite store of store/greylist_store.h, kept in the policy state
 * so reloads do not forget it; its calls are short enough for the loop
 * thread (see greylist_store.c for why).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "policy/policy_engine.h"
#include "store/greylist_store.h"

#define LOG_MODULE "policy"
#include "core/log.h"

#define GREYLIST_ENGINE "greylist"
#define GREYLIST_DB_NAME "greylist.db"

struct greylist_engine {
	const struct config *cfg;
	struct greylist *store;          /* a reference of its own */
};

/* Lower-cased copy of s into out, cut to the store's key size. */
static void greylist_lower(const char *s, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < outlen; i++)
		out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + ('a' - 'A') : s[i]);
	out[i] = '\0';
}

static int greylist_engine_check(void *state, struct policy_facts *f, struct policy_result *res,
				 policy_done_cb done, void *arg, void **handle)
{
	struct greylist_engine *ge = state;
	const struct config *cfg = ge->cfg;
	struct greylist_params p = {
		.delay = cfg->greylist_delay, .window = cfg->greylist_window,
		.whitelist_ttl = cfg->greylist_whitelist_ttl,
	};
	char network[INET6_ADDRSTRLEN + 8], sender[GREYLIST_KEY_MAX], rcpt[GREYLIST_KEY_MAX];
	struct engine_result *sym;
	enum greylist_verdict v;

	if (f->rcpt == NULL || f->sender == NULL ||
	    greylist_network((const struct sockaddr *)&f->client, cfg->greylist_ipv4_prefix,
			     cfg->greylist_ipv6_prefix, network, sizeof(network)) < 0)
		return 0;
	greylist_lower(f->sender[0] != '\0' ? f->sender : "<>", sender, sizeof(sender));
	greylist_lower(f->rcpt, rcpt, sizeof(rcpt));
	v = greylist_check(ge->store, &p, network, sender, rcpt);
	log_debug("greylist %s from=<%s> to=<%s>: %s", network, sender, rcpt, greylist_verdict_str(v));
	if (v != GREYLIST_NEW && v != GREYLIST_EARLY)
		return 0;
	policy_result_reply(res, cfg->greylist.action, GREYLIST_ENGINE, "Greylisted, please try again later");
	if (res->verdict == POLICY_TAG) {
		sym = engine_results_add(f->symbols, "policy", "GREYLISTED");
		sym->score = cfg->greylist.score;
		sym->category = CATEGORY_DYNAMIC;
		snprintf(sym->reason, sizeof(sym->reason), "first attempt from %s", network);
	}
	return 0;
}

static void greylist_engine_free(void *state)
{
	struct greylist_engine *ge = state;

	greylist_unref(ge->store);
	free(ge);
}

/* The store at <data_dir>/greylist.db, reusing the open one when the path is unchanged. */
static int greylist_engine_store(struct policy_build *b)
{
	struct policy_state *st = b->state;
	char path[4096], err[512];
	struct greylist *g;

	if (b->cfg->data_dir == NULL) {
		snprintf(b->err, b->errlen, "[greylist] needs [server] data_dir for its database");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", b->cfg->data_dir, GREYLIST_DB_NAME);
	if (st->greylist != NULL && strcmp(greylist_path(st->greylist), path) == 0)
		return 0;
	g = greylist_open(path, err, sizeof(err));
	if (g == NULL) {
		snprintf(b->err, b->errlen, "[greylist] %s", err);
		return -1;
	}
	if (st->greylist != NULL)
		log_info("greylist database moved from %s to %s", greylist_path(st->greylist), path);
	greylist_unref(st->greylist);
	st->greylist = g;
	return 0;
}

int policy_greylist_build(struct policy_build *b)
{
	struct config *cfg = b->cfg;
	struct greylist_engine *ge;
	struct policy_engine e = {
		.name = GREYLIST_ENGINE, .stage = POLICY_STAGE_RCPT, .common = &cfg->greylist,
		.legitimacy = true, .check = greylist_engine_check, .free = greylist_engine_free,
	};

	if (!cfg->greylist.enabled)
		return 0;
	if (greylist_engine_store(b) < 0)
		return -1;
	ge = xcalloc(1, sizeof(*ge));
	ge->cfg = cfg;
	ge->store = greylist_ref(b->state->greylist);
	e.state = ge;
	policy_build_add(b, &e);
	return 0;
}

void policy_state_free_greylist(struct policy_state *st)
{
	if (st == NULL)
		return;
	greylist_unref(st->greylist);
	st->greylist = NULL;
}
