/*
 * The rate/ban table of the dynamic limit engine, and a counter of
 * concurrent connections. Keys are strings chosen by the caller, such as
 * "ip:192.0.2.1", "sender:a@example.com" or "subject:<hash>".
 *
 * What a rule means, in the administrator's words:
 *
 *   At most `limit` attempts per `window` seconds per key. Every attempt
 *   beyond that (counted inside the window, refused ones included) adds
 *   `ban_step` seconds of ban, counted from the end of the ban already
 *   running or from now, whichever is later; a ban never reaches more than
 *   `ban_max` seconds into the future. While banned, every attempt is
 *   refused. The ban ends at ban_until; nothing else lifts it except an
 *   explicit unban.
 *
 * The window slides in steps of ceil(window / 16) seconds, which keeps a
 * key at a small fixed size whatever the rate: an attempt stops counting
 * between `window - step` and `window + step` seconds after it was made.
 * Windows up to 16 s are exact to the second; for a multiple of 16 s the
 * attempt stops counting between `window - step` and `window`.
 *
 * Memory is bounded by max_keys. A key that is idle (nothing in its window
 * and no ban running) is forgotten; when the table is full the least
 * recently seen key is evicted even if banned, so max_keys should exceed
 * the number of distinct keys expected within one window. Keys are hashed
 * with a secret per table, so chosen keys cannot force collisions. Keys
 * longer than RATELIMIT_KEY_MAX bytes are told apart by that prefix only.
 *
 * Not thread-safe: one table belongs to one thread (the event loop).
 */
#ifndef POSTERN_RATELIMIT_H
#define POSTERN_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define RATELIMIT_KEY_MAX 512
#define RATELIMIT_NAME_MAX 64

/* Seconds on any clock that does not run backwards by much (time() by default). */
typedef time_t (*ratelimit_clock_fn)(void *arg);

struct ratelimit_params {
	const char *name;      /* the rule's name, reported as `kind` (copied) */
	unsigned window;       /* seconds, >= 1 */
	unsigned limit;        /* attempts allowed per window; 0 = unlimited, never bans */
	unsigned ban_step;     /* ban seconds per attempt beyond limit; 0 = refuse but never ban */
	unsigned ban_max;      /* a ban never ends later than now + ban_max */
	size_t max_keys;       /* >= 1 */
};

enum ratelimit_verdict {
	RATELIMIT_ALLOW = 0,   /* within the limit */
	RATELIMIT_OVER_LIMIT,  /* this attempt exceeded the limit (and may have started a ban) */
	RATELIMIT_BANNED,      /* a ban was already running when this attempt came */
};

struct ratelimit_state {
	const char *kind;      /* the table's name */
	unsigned count;        /* attempts in the current window */
	unsigned limit;
	unsigned window;
	time_t ban_until;      /* end of the ban; 0 when none is running */
	unsigned ban_left;     /* seconds until ban_until, 0 when not banned */
};

struct ratelimit;

/* NULL (and why in err) for unusable parameters; clock NULL means time(). */
struct ratelimit *ratelimit_new(const struct ratelimit_params *p, ratelimit_clock_fn clock,
				void *clock_arg, char *err, size_t errlen);
void ratelimit_free(struct ratelimit *rl);
/*
 * Whether rl was made with these parameters (name, window, limit, bans,
 * max_keys): a reload keeps a table, and its bans, only when they match.
 */
bool ratelimit_has_params(const struct ratelimit *rl, const struct ratelimit_params *p);

/* Count one attempt of key and judge it; out (may be NULL) gets the state after it. */
enum ratelimit_verdict ratelimit_hit(struct ratelimit *rl, const char *key,
				     struct ratelimit_state *out);
/* The state of key without counting an attempt; false when the key is not known. */
bool ratelimit_peek(struct ratelimit *rl, const char *key, struct ratelimit_state *out);
/* Ban key for `seconds` from now (an operator's decision; ban_max does not apply). */
void ratelimit_ban(struct ratelimit *rl, const char *key, unsigned seconds);
/* Lift the ban of key and forget its attempts; false when the key was not known. */
bool ratelimit_unban(struct ratelimit *rl, const char *key);
/* Forget idle keys now (hits also do a little of this as they go). */
void ratelimit_expire(struct ratelimit *rl);
size_t ratelimit_count(const struct ratelimit *rl);

/*
 * Every known key, most recently seen first (for `postern bans list`).
 * The callback must not change the table; a non-zero return stops the walk.
 */
typedef int (*ratelimit_foreach_cb)(void *arg, const char *key, const struct ratelimit_state *st);
void ratelimit_foreach(struct ratelimit *rl, ratelimit_foreach_cb cb, void *arg);

/*
 * Concurrent uses per key ("at most N connections at once per IP").
 * A key is remembered only while its count is above zero, so memory is
 * bounded by the number of live uses; max_keys caps it further.
 */
struct ratelimit_conc;

/* limit 0: unlimited (counts are still kept for display). */
struct ratelimit_conc *ratelimit_conc_new(unsigned limit, size_t max_keys);
void ratelimit_conc_free(struct ratelimit_conc *c);
/*
 * Take one use of key. False, without counting it, when key already has
 * `limit` uses or when max_keys distinct keys are in use. current (may be
 * NULL) gets the count after the call.
 */
bool ratelimit_conc_acquire(struct ratelimit_conc *c, const char *key, unsigned *current);
/* Give back one use taken by a successful acquire. */
void ratelimit_conc_release(struct ratelimit_conc *c, const char *key);
unsigned ratelimit_conc_count(struct ratelimit_conc *c, const char *key);

#endif
