/*
 * For engine files only: how an engine is built from the config, and the
 * state that survives reloads. Adding an engine means one file with a
 * constructor and one line in policy.c's constructor table.
 */
#ifndef POSTERN_POLICY_ENGINE_H
#define POSTERN_POLICY_ENGINE_H

#include "policy/policy.h"

struct ratelimit;
struct ratelimit_conc;
struct dnsbl;
struct callout_cache;
struct greylist;

/*
 * Kept across reloads so counters, bans and caches are not forgotten when
 * the administrator changes an unrelated setting. Engines create their
 * piece on first use (from their constructor) and may replace it when its
 * parameters change.
 */
struct policy_state {
	struct postern *pt;
	struct ratelimit *conn_rate;
	struct ratelimit_conc *conn_conc;
	struct ratelimit *sender_rate;
	struct ratelimit *subject_rate;
	struct dnsbl *dnsbl;
	struct callout_cache *callouts;
	struct greylist *greylist;
};

struct policy_build {
	struct postern *pt;
	struct config *cfg;
	struct policy_state *state;
	struct policy *policy;
	char *err;
	size_t errlen;
};

/* Add one engine (copied) to the policy being built. */
void policy_build_add(struct policy_build *b, const struct policy_engine *e);

/*
 * The constructors, in pipeline order (see policy.c). Each adds zero or
 * more engines; -1 with b->err filled refuses the config.
 */
int policy_iplist_build(struct policy_build *b);
int policy_connlimit_build(struct policy_build *b);
int policy_dnsbl_build(struct policy_build *b);
int policy_helo_build(struct policy_build *b);
int policy_rdns_build(struct policy_build *b);
int policy_sender_build(struct policy_build *b);
int policy_spf_build(struct policy_build *b);
int policy_rate_build(struct policy_build *b);
int policy_recipients_build(struct policy_build *b);
int policy_greylist_build(struct policy_build *b);
int policy_perimeter_build(struct policy_build *b);

/* Free what each engine family keeps in struct policy_state (at shutdown). */
void policy_state_free_rates(struct policy_state *st);
void policy_state_free_dnsbl(struct policy_state *st);
void policy_state_free_recipients(struct policy_state *st);
void policy_state_free_greylist(struct policy_state *st);

#endif
