/*
 * The repeat-limit engines of policy_rate.c ([sender_rate] at MAIL,
 * [subject_rate] at DATA) keep their tables in struct policy_state; this
 * header only exposes what tests need beyond policy_engine.h.
 */
#ifndef POSTERN_POLICY_RATE_H
#define POSTERN_POLICY_RATE_H

#include <stddef.h>

#include "policy/ratelimit.h"

struct config;
struct policy_state;

/*
 * For tests only: (re)create st's sender and subject tables with cfg's
 * parameters on the given clock, so bans can be aged without sleeping.
 * Policies built from a config with the same parameters keep using these
 * tables. -1 with why in err for unusable parameters.
 */
int policy_rate_use_clock(struct policy_state *st, const struct config *cfg,
			  ratelimit_clock_fn clock, void *clock_arg, char *err, size_t errlen);

#endif
