/*
 * [connlimit]: concurrent sessions and connection rate per client IP,
 * judged before the banner.
 *
 * Both tables live in struct policy_state so that counts and bans survive
 * a reload. The concurrency table counts without a limit of its own and
 * the engine compares against max_per_ip, so a reload that changes
 * max_per_ip keeps the slots held by running sessions. The rate table is
 * replaced (and its bans forgotten, with a log line) only when its
 * parameters change; engines always reach both through the state, never
 * through a pointer of their own, so sessions of an older policy see the
 * table of the newest one.
 *
 * Every connection attempt counts against the rate, refused ones
 * included, so a client that hammers while banned keeps extending its
 * ban up to ban_max.
 *
 * A [perimeter] relay is our own infrastructure: its sessions take no
 * slot and do not count. Each message it brings instead counts, at the
 * end of DATA, as a connection of the first untrusted Received hop,
 * under the same "ip:ADDR" key as that host's direct connections; a
 * refusal then answers that message only and keeps the relay connected.
 */
#define LOG_MODULE "policy"
#include "policy/policy_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/log.h"
#include "policy/policy_connect.h"
#include "policy/ratelimit.h"

#define CONNLIMIT_MAX_KEYS 100000
#define CONNLIMIT_KEY_MAX (INET6_ADDRSTRLEN + 8)

struct connlimit {
	const struct config *cfg;
	struct policy_state *st;
	bool at_data;                  /* the perimeter hop's instance */
};

static void connlimit_key(const char *addr, char *key, size_t keylen)
{
	snprintf(key, keylen, "ip:%s", addr);
}

static void connlimit_rate_params(const struct config *cfg, struct ratelimit_params *p)
{
	memset(p, 0, sizeof(*p));
	p->name = "conn_rate";
	p->window = cfg->conn_window;
	p->limit = cfg->conn_rate;
	p->ban_step = cfg->conn_ban_step;
	p->ban_max = cfg->conn_ban_max;
	p->max_keys = CONNLIMIT_MAX_KEYS;
}

/*
 * The answer under [connlimit] action; text follows the code. At connect
 * the session ends; at DATA only the message is refused.
 */
static void connlimit_verdict(const struct connlimit *cl, struct policy_facts *f,
			      struct policy_result *res, const char *symbol, const char *text)
{
	const struct config *cfg = cl->cfg;
	struct engine_result *r;

	snprintf(res->engine, sizeof(res->engine), "connlimit");
	switch (cfg->connlimit.action) {
	case POLICY_ACTION_DEFER:
		res->verdict = POLICY_DEFER;
		res->disconnect = !cl->at_data;
		snprintf(res->reply, sizeof(res->reply), "%s %s", cl->at_data ? "451 4.7.1" : "421 4.7.0",
			 text);
		break;
	case POLICY_ACTION_REJECT:
		res->verdict = POLICY_REJECT;
		res->disconnect = !cl->at_data;
		snprintf(res->reply, sizeof(res->reply), "554 5.7.1 %s", text);
		break;
	case POLICY_ACTION_TAG:
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "%s", text);
		r = engine_results_add(f->symbols, "policy", symbol);
		r->score = cfg->connlimit.score;
		r->category = CATEGORY_DYNAMIC;
		snprintf(r->reason, sizeof(r->reason), "%s (%s)", text, f->client_addr);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("connlimit: %s: %s (action ignore)", f->client_addr, text);
		break;
	}
}

/* Count the attempt; true when the rate (or a running ban) refuses it. */
static bool connlimit_rate_refuses(struct connlimit *cl, struct policy_facts *f,
				   struct policy_result *res, const char *key)
{
	struct ratelimit_state rs;
	char who[INET6_ADDRSTRLEN + 16], text[160];

	if (cl->cfg->conn_rate == 0 || cl->st->conn_rate == NULL)
		return false;
	if (ratelimit_hit(cl->st->conn_rate, key, &rs) == RATELIMIT_ALLOW)
		return false;
	if (cl->at_data)
		snprintf(who, sizeof(who), "[%s]", f->client_addr);
	else
		snprintf(who, sizeof(who), "your address");
	if (rs.ban_left > 0)
		snprintf(text, sizeof(text), "Too many connections from %s, try again in %u seconds", who,
			 rs.ban_left);
	else
		snprintf(text, sizeof(text), "Too many connections from %s, try again later", who);
	connlimit_verdict(cl, f, res, "CONNLIMIT_RATE", text);
	return true;
}

static int connlimit_check(void *state, struct policy_facts *f, struct policy_result *res,
			   policy_done_cb done, void *arg, void **handle)
{
	struct connlimit *cl = state;
	char key[CONNLIMIT_KEY_MAX];
	unsigned current = 0;

	if (f->via_perimeter)
		return 0;
	connlimit_key(f->conn_addr, key, sizeof(key));
	if (connlimit_rate_refuses(cl, f, res, key))
		return 0;
	if (cl->cfg->max_per_ip == 0 || f->conn_slot_held)
		return 0;
	if (!ratelimit_conc_acquire(cl->st->conn_conc, key, &current)) {
		connlimit_verdict(cl, f, res, "CONNLIMIT_CONCURRENCY",
				  "Too many connections from your address");
		return 0;
	}
	if (current > cl->cfg->max_per_ip) {
		ratelimit_conc_release(cl->st->conn_conc, key);
		connlimit_verdict(cl, f, res, "CONNLIMIT_CONCURRENCY",
				  "Too many connections from your address");
		return 0;
	}
	f->conn_slot_held = true;
	return 0;
}

/* A message through a perimeter relay counts as a connection of its first untrusted hop. */
static int connlimit_hop_check(void *state, struct policy_facts *f, struct policy_result *res,
			       policy_done_cb done, void *arg, void **handle)
{
	struct connlimit *cl = state;
	char key[CONNLIMIT_KEY_MAX];

	if (!f->perimeter_hop)
		return 0;
	connlimit_key(f->client_addr, key, sizeof(key));
	connlimit_rate_refuses(cl, f, res, key);
	return 0;
}

/* The slot is released under the connecting address it was taken for, whoever was judged since. */
static void connlimit_session_end(void *state, struct policy_facts *f)
{
	struct connlimit *cl = state;
	char key[CONNLIMIT_KEY_MAX];

	if (!f->conn_slot_held)
		return;
	connlimit_key(f->conn_addr, key, sizeof(key));
	ratelimit_conc_release(cl->st->conn_conc, key);
	f->conn_slot_held = false;
}

static void connlimit_free(void *state)
{
	free(state);
}

/* Keep the rate table when its parameters are unchanged, else replace it. */
static int connlimit_prepare_rate(struct policy_build *b)
{
	struct policy_state *st = b->state;
	struct ratelimit_params p;
	struct ratelimit *rl;
	char why[256];

	if (b->cfg->conn_rate == 0) {
		if (st->conn_rate != NULL) {
			log_info("connlimit: connection rate limit turned off, %zu keys forgotten",
				 ratelimit_count(st->conn_rate));
			ratelimit_free(st->conn_rate);
			st->conn_rate = NULL;
		}
		return 0;
	}
	connlimit_rate_params(b->cfg, &p);
	if (st->conn_rate != NULL && ratelimit_has_params(st->conn_rate, &p))
		return 0;
	rl = ratelimit_new(&p, NULL, NULL, why, sizeof(why));
	if (rl == NULL) {
		snprintf(b->err, b->errlen, "[connlimit]: %s", why);
		return -1;
	}
	if (st->conn_rate != NULL) {
		log_info("connlimit: rate settings changed, %zu keys and their bans forgotten",
			 ratelimit_count(st->conn_rate));
		ratelimit_free(st->conn_rate);
	}
	st->conn_rate = rl;
	return 0;
}

int policy_connlimit_build(struct policy_build *b)
{
	struct connlimit *cl;
	struct policy_engine e = {
		.name = "connlimit",
		.stage = POLICY_STAGE_CONNECT,
		.common = &b->cfg->connlimit,
		.legitimacy = true,
		.check = connlimit_check,
		.session_end = connlimit_session_end,
		.free = connlimit_free,
	};

	if (connlimit_prepare_rate(b) < 0)
		return -1;
	if (b->state->conn_conc == NULL)
		b->state->conn_conc = ratelimit_conc_new(0, CONNLIMIT_MAX_KEYS);
	if (b->cfg->max_per_ip == 0 && b->cfg->conn_rate == 0)
		return 0;
	cl = xcalloc(1, sizeof(*cl));
	cl->cfg = b->cfg;
	cl->st = b->state;
	e.state = cl;
	policy_build_add(b, &e);
	if (b->cfg->conn_rate > 0 && b->cfg->perimeter_relays.count > 0) {
		cl = xcalloc(1, sizeof(*cl));
		cl->cfg = b->cfg;
		cl->st = b->state;
		cl->at_data = true;
		e.stage = POLICY_STAGE_DATA;
		e.state = cl;
		e.check = connlimit_hop_check;
		e.session_end = NULL;
		policy_build_add(b, &e);
	}
	return 0;
}

int policy_connlimit_use_clock(struct policy_state *st, const struct config *cfg,
			       ratelimit_clock_fn clock, void *clock_arg, char *err, size_t errlen)
{
	struct ratelimit_params p;
	struct ratelimit *rl;

	if (cfg->conn_rate == 0) {
		snprintf(err, errlen, "[connlimit] rate is 0: no table to make");
		return -1;
	}
	connlimit_rate_params(cfg, &p);
	if ((rl = ratelimit_new(&p, clock, clock_arg, err, errlen)) == NULL)
		return -1;
	ratelimit_free(st->conn_rate);
	st->conn_rate = rl;
	return 0;
}

void policy_state_free_rates(struct policy_state *st)
{
	ratelimit_free(st->conn_rate);
	ratelimit_conc_free(st->conn_conc);
	ratelimit_free(st->sender_rate);
	ratelimit_free(st->subject_rate);
	st->conn_rate = NULL;
	st->conn_conc = NULL;
	st->sender_rate = NULL;
	st->subject_rate = NULL;
}
