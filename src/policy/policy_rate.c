/*
 * Repeat limits: the same sender ([sender_rate], at MAIL) or the same
 * subject ([subject_rate], at DATA) seen too often within a window is the
 * mark of a spam run or of a compromised account. Each attempt beyond the
 * limit lengthens a ban (see ratelimit.h), during which every attempt is
 * refused; the operator lifts one with ratelimit_unban.
 *
 * Keys: "sender:<address in lower case>" ("sender:<>" for the null
 * sender) and "subject:<16 hex digits>", a 64-bit FNV-1a hash of the
 * subject normalised so that trivial variations count as one: lower case,
 * whitespace runs collapsed and trimmed, every digit folded to 0
 * ("Invoice 1234" and "invoice  9876" are the same subject).
 *
 * The tables live in struct policy_state so counts and bans survive a
 * reload; one is replaced (and its bans forgotten) only when its
 * parameters change. Engines look the table up at each check, so a policy
 * still used by older sessions never holds a freed table.
 */
#define LOG_MODULE "policy"
#include "core/log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "policy/policy_engine.h"
#include "policy/policy_rate.h"
#include "policy/ratelimit.h"

#define RATE_MAX_KEYS 100000
#define RATE_SHOWN_MAX 256

enum rate_kind {
	RATE_SENDER,
	RATE_SUBJECT,
};

struct rate_engine {
	struct policy_state *st;
	const struct config *cfg;
	enum rate_kind kind;
};

static void rate_params(const struct config *cfg, enum rate_kind kind, struct ratelimit_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_keys = RATE_MAX_KEYS;
	if (kind == RATE_SENDER) {
		p->name = "sender_rate";
		p->window = cfg->sender_rate_window;
		p->limit = cfg->sender_rate_limit;
		p->ban_step = cfg->sender_rate_ban_step;
		p->ban_max = cfg->sender_rate_ban_max;
	} else {
		p->name = "subject_rate";
		p->window = cfg->subject_rate_window;
		p->limit = cfg->subject_rate_limit;
		p->ban_step = cfg->subject_rate_ban_step;
		p->ban_max = cfg->subject_rate_ban_max;
	}
}

static struct ratelimit **rate_slot(struct policy_state *st, enum rate_kind kind)
{
	return kind == RATE_SENDER ? &st->sender_rate : &st->subject_rate;
}

/* Put a new table for cfg's parameters in st, dropping the old one. */
static int rate_table_replace(struct policy_state *st, const struct config *cfg,
			      enum rate_kind kind, ratelimit_clock_fn clock, void *clock_arg,
			      char *err, size_t errlen)
{
	struct ratelimit_params p;
	struct ratelimit **slot = rate_slot(st, kind);
	struct ratelimit *rl;
	char why[256];

	rate_params(cfg, kind, &p);
	rl = ratelimit_new(&p, clock, clock_arg, why, sizeof(why));
	if (rl == NULL) {
		snprintf(err, errlen, "[%s] %s", p.name, why);
		return -1;
	}
	ratelimit_free(*slot);
	*slot = rl;
	return 0;
}

/* The table for cfg: the one in st when its parameters still hold. */
static int rate_table_keep(struct policy_build *b, enum rate_kind kind)
{
	struct ratelimit_params p;
	struct ratelimit *rl = *rate_slot(b->state, kind);
	bool had_table = rl != NULL;

	rate_params(b->cfg, kind, &p);
	if (had_table && ratelimit_has_params(rl, &p))
		return 0;
	if (rate_table_replace(b->state, b->cfg, kind, NULL, NULL, b->err, b->errlen) < 0)
		return -1;
	if (had_table)
		log_info("%s: parameters changed, counts and bans start afresh", p.name);
	return 0;
}

int policy_rate_use_clock(struct policy_state *st, const struct config *cfg,
			  ratelimit_clock_fn clock, void *clock_arg, char *err, size_t errlen)
{
	if (rate_table_replace(st, cfg, RATE_SENDER, clock, clock_arg, err, errlen) < 0)
		return -1;
	return rate_table_replace(st, cfg, RATE_SUBJECT, clock, clock_arg, err, errlen);
}

/* FNV-1a over the normalised subject; false when nothing is left of it. */
static bool rate_subject_hash(const char *subject, uint64_t *out)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	bool pending_space = false, any = false;

	for (const unsigned char *p = (const unsigned char *)subject; *p != '\0'; p++) {
		unsigned char c = *p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
			pending_space = any;
			continue;
		}
		if (pending_space) {
			h = (h ^ ' ') * 0x100000001b3ULL;
			pending_space = false;
		}
		if (isdigit(c))
			c = '0';
		else if (c < 0x80)
			c = (unsigned char)tolower(c);
		h = (h ^ c) * 0x100000001b3ULL;
		any = true;
	}
	*out = h;
	return any;
}

/* Printable ASCII for replies and symbol reasons, bounded. */
static void rate_shown(const char *s, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *s != '\0' && n + 1 < outlen && n < RATE_SHOWN_MAX; s++)
		out[n++] = (*s > 0x20 && *s < 0x7f) ? *s : '?';
	out[n] = '\0';
}

/* Over the limit or banned: the action of the engine's section decides. */
static void rate_refuse(const struct rate_engine *e, struct policy_facts *f,
			struct policy_result *res, const struct ratelimit_state *rs, const char *what)
{
	const struct policy_common *c = e->kind == RATE_SENDER ? &e->cfg->sender_rate
							       : &e->cfg->subject_rate;
	const char *engine = e->kind == RATE_SENDER ? "sender_rate" : "subject_rate";
	const char *symbol = e->kind == RATE_SENDER ? "SENDER_RATE" : "SUBJECT_RATE";
	struct engine_result *r;
	char when[64];

	if (rs->ban_left > 0)
		snprintf(when, sizeof(when), "try again in %u seconds", rs->ban_left);
	else
		snprintf(when, sizeof(when), "try again later");
	switch (c->action) {
	case POLICY_ACTION_DEFER:
		policy_result_reply(res, c->action, engine, "Too many messages %s, %s", what, when);
		break;
	case POLICY_ACTION_REJECT:
		policy_result_reply(res, c->action, engine, "Too many messages %s", what);
		break;
	case POLICY_ACTION_TAG:
		r = engine_results_add(f->symbols, "policy", symbol);
		r->score = c->score;
		r->category = CATEGORY_DYNAMIC;
		snprintf(r->reason, sizeof(r->reason), "%u messages %s in %u s (limit %u)", rs->count,
			 what, rs->window, rs->limit);
		policy_result_reply(res, c->action, engine, "%s %s", symbol, r->reason);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("%s client=%s over the limit: %u messages %s (ignored)", engine,
			 f->client_addr, rs->count, what);
		break;
	}
}

static int rate_sender_check(void *state, struct policy_facts *f, struct policy_result *res,
			     policy_done_cb done, void *arg, void **handle)
{
	struct rate_engine *e = state;
	struct ratelimit *rl = e->st->sender_rate;
	struct ratelimit_state rs;
	char key[RATELIMIT_KEY_MAX + 1], shown[RATE_SHOWN_MAX + 1], what[RATE_SHOWN_MAX + 16];

	if (f->sender == NULL || rl == NULL)
		return 0;
	snprintf(key, sizeof(key), "sender:%s", f->sender[0] != '\0' ? f->sender : "<>");
	for (char *p = key; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (ratelimit_hit(rl, key, &rs) == RATELIMIT_ALLOW)
		return 0;
	rate_shown(f->sender, shown, sizeof(shown));
	snprintf(what, sizeof(what), "from <%s>", shown);
	rate_refuse(e, f, res, &rs, what);
	return 0;
}

static int rate_subject_check(void *state, struct policy_facts *f, struct policy_result *res,
			      policy_done_cb done, void *arg, void **handle)
{
	struct rate_engine *e = state;
	struct ratelimit *rl = e->st->subject_rate;
	struct ratelimit_state rs;
	char key[32];
	uint64_t h;

	if (f->subject == NULL || rl == NULL || !rate_subject_hash(f->subject, &h))
		return 0;
	snprintf(key, sizeof(key), "subject:%016" PRIx64, h);
	if (ratelimit_hit(rl, key, &rs) == RATELIMIT_ALLOW)
		return 0;
	rate_refuse(e, f, res, &rs, "with this subject");
	return 0;
}

static int rate_add(struct policy_build *b, enum rate_kind kind)
{
	struct rate_engine *e;
	struct policy_engine pe;

	if (rate_table_keep(b, kind) < 0)
		return -1;
	e = xcalloc(1, sizeof(*e));
	e->st = b->state;
	e->cfg = b->cfg;
	e->kind = kind;
	pe = (struct policy_engine){
		.name = kind == RATE_SENDER ? "sender_rate" : "subject_rate",
		.stage = kind == RATE_SENDER ? POLICY_STAGE_MAIL : POLICY_STAGE_DATA,
		.common = kind == RATE_SENDER ? &b->cfg->sender_rate : &b->cfg->subject_rate,
		.legitimacy = false,
		.state = e,
		.check = kind == RATE_SENDER ? rate_sender_check : rate_subject_check,
		.free = free,
	};
	policy_build_add(b, &pe);
	return 0;
}

int policy_rate_build(struct policy_build *b)
{
	if (b->cfg->sender_rate.enabled && rate_add(b, RATE_SENDER) < 0)
		return -1;
	if (b->cfg->subject_rate.enabled && rate_add(b, RATE_SUBJECT) < 0)
		return -1;
	return 0;
}
