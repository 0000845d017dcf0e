/*
 * Rate/ban table: a keyed hash (SipHash, secret per table) of small fixed
 * entries, each on an LRU list so that eviction and idle expiry are O(1)
 * from the tail. An entry counts attempts in at most 16 buckets covering
 * the window; buckets are cleared lazily when the entry is next looked at,
 * so there is no timer and an idle key costs nothing until it is expired.
 */
#include "policy/ratelimit.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"

#define LOG_MODULE "ratelimit"
#include "core/log.h"

#define RL_BUCKETS 16
#define RL_INITIAL_SLOTS 64
#define RL_EXPIRE_PER_HIT 2     /* idle tail entries dropped per hit: amortized expiry */

struct rl_entry {
	struct rl_entry *hnext;         /* hash chain */
	struct rl_entry *newer, *older; /* LRU list */
	uint64_t hash;
	time_t ban_until;
	long long last_slot;            /* time slot of the newest bucket */
	unsigned counts[RL_BUCKETS];
	unsigned uses;                  /* concurrent uses (ratelimit_conc) */
	size_t keylen;
	char key[];
};

struct rl_table {
	struct rl_entry **slots;
	size_t nslots;                  /* a power of two */
	size_t n;
	size_t max;
	struct rl_entry *newest, *oldest;
	struct hash_key secret;
};

struct ratelimit {
	struct rl_table t;
	char name[RATELIMIT_NAME_MAX];
	unsigned window, limit, ban_step, ban_max;
	unsigned step;                  /* seconds per bucket */
	unsigned nbuckets;              /* buckets covering the window */
	ratelimit_clock_fn clock;
	void *clock_arg;
};

struct ratelimit_conc {
	struct rl_table t;
	unsigned limit;
};

static void rl_table_init(struct rl_table *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	t->nslots = RL_INITIAL_SLOTS;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	t->max = max;
	hash_key_init(&t->secret);
}

static void rl_table_destroy(struct rl_table *t)
{
	struct rl_entry *e, *next;

	for (e = t->newest; e != NULL; e = next) {
		next = e->older;
		free(e);
	}
	free(t->slots);
}

static size_t rl_key_len(const char *key)
{
	return strnlen(key, RATELIMIT_KEY_MAX);
}

static uint64_t rl_hash(const struct rl_table *t, const char *key, size_t len)
{
	return hash_keyed(&t->secret, key, len);
}

static struct rl_entry *rl_lookup(const struct rl_table *t, const char *key, size_t len,
				  uint64_t hash)
{
	struct rl_entry *e;

	for (e = t->slots[hash & (t->nslots - 1)]; e != NULL; e = e->hnext)
		if (e->hash == hash && e->keylen == len && memcmp(e->key, key, len) == 0)
			return e;
	return NULL;
}

static void rl_lru_unlink(struct rl_table *t, struct rl_entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void rl_lru_push(struct rl_table *t, struct rl_entry *e)
{
	e->newer = NULL;
	e->older = t->newest;
	if (t->newest != NULL)
		t->newest->newer = e;
	t->newest = e;
	if (t->oldest == NULL)
		t->oldest = e;
}

static void rl_touch(struct rl_table *t, struct rl_entry *e)
{
	if (t->newest == e)
		return;
	rl_lru_unlink(t, e);
	rl_lru_push(t, e);
}

/* Keep chains short as the table fills: one slot per entry at most. */
static void rl_grow(struct rl_table *t)
{
	size_t nslots = t->nslots * 2;
	struct rl_entry **slots = xcalloc(nslots, sizeof(*slots));

	for (size_t i = 0; i < t->nslots; i++) {
		struct rl_entry *e, *next;

		for (e = t->slots[i]; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = slots[e->hash & (nslots - 1)];
			slots[e->hash & (nslots - 1)] = e;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
}

static struct rl_entry *rl_insert(struct rl_table *t, const char *key, size_t len, uint64_t hash)
{
	struct rl_entry *e = xcalloc(1, sizeof(*e) + len + 1);
	size_t i;

	if (t->n >= t->nslots)
		rl_grow(t);
	memcpy(e->key, key, len);
	e->keylen = len;
	e->hash = hash;
	i = hash & (t->nslots - 1);
	e->hnext = t->slots[i];
	t->slots[i] = e;
	rl_lru_push(t, e);
	t->n++;
	return e;
}

static void rl_remove(struct rl_table *t, struct rl_entry *e)
{
	struct rl_entry **p = &t->slots[e->hash & (t->nslots - 1)];

	while (*p != e) {
		if (*p == NULL)
			panic("entry %s missing from its hash chain", e->key);
		p = &(*p)->hnext;
	}
	*p = e->hnext;
	rl_lru_unlink(t, e);
	t->n--;
	free(e);
}

/* Slots index the bucket ring, so time before the epoch is pinned to it. */
static time_t rl_now(const struct ratelimit *rl)
{
	time_t now = rl->clock != NULL ? rl->clock(rl->clock_arg) : time(NULL);

	return now > 0 ? now : 0;
}

/*
 * Clear the buckets that fell out of the window since the entry was last
 * looked at. A clock that went backwards keeps counting into the newest
 * bucket rather than corrupting older ones.
 */
static void rl_advance(const struct ratelimit *rl, struct rl_entry *e, time_t now)
{
	long long cur = (long long)now / rl->step;

	if (e->ban_until != 0 && e->ban_until <= now)
		e->ban_until = 0;
	if (cur <= e->last_slot)
		return;
	if (cur - e->last_slot >= rl->nbuckets) {
		memset(e->counts, 0, sizeof(e->counts));
	} else {
		for (long long s = e->last_slot + 1; s <= cur; s++)
			e->counts[s % rl->nbuckets] = 0;
	}
	e->last_slot = cur;
}

static unsigned rl_window_count(const struct ratelimit *rl, const struct rl_entry *e)
{
	unsigned sum = 0;

	for (unsigned i = 0; i < rl->nbuckets; i++)
		sum = e->counts[i] > UINT_MAX - sum ? UINT_MAX : sum + e->counts[i];
	return sum;
}

static bool rl_idle(const struct ratelimit *rl, struct rl_entry *e, time_t now)
{
	rl_advance(rl, e, now);
	return e->ban_until == 0 && rl_window_count(rl, e) == 0;
}

static void rl_fill_state(const struct ratelimit *rl, const struct rl_entry *e, time_t now,
			  struct ratelimit_state *out)
{
	if (out == NULL)
		return;
	out->kind = rl->name;
	out->count = rl_window_count(rl, e);
	out->limit = rl->limit;
	out->window = rl->window;
	out->ban_until = e->ban_until;
	out->ban_left = e->ban_until > now ? (unsigned)(e->ban_until - now) : 0;
}

/* Drop a few idle keys from the cold end, so memory follows the load. */
static void rl_expire_tail(struct ratelimit *rl, time_t now, unsigned budget)
{
	while (budget-- > 0 && rl->t.oldest != NULL && rl_idle(rl, rl->t.oldest, now))
		rl_remove(&rl->t, rl->t.oldest);
}

static struct rl_entry *rl_find_or_add(struct ratelimit *rl, const char *key, time_t now)
{
	size_t len = rl_key_len(key);
	uint64_t hash = rl_hash(&rl->t, key, len);
	struct rl_entry *e = rl_lookup(&rl->t, key, len, hash);

	if (e != NULL) {
		rl_touch(&rl->t, e);
		return e;
	}
	if (rl->t.n >= rl->t.max) {
		if (rl->t.oldest->ban_until > now)
			log_warn("table=%s full (%zu keys): forgetting the ban of key=%s",
				 rl->name, rl->t.max, rl->t.oldest->key);
		rl_remove(&rl->t, rl->t.oldest);
	}
	e = rl_insert(&rl->t, key, len, hash);
	e->last_slot = (long long)now / rl->step;
	return e;
}

static struct rl_entry *rl_find(struct ratelimit *rl, const char *key)
{
	size_t len = rl_key_len(key);

	return rl_lookup(&rl->t, key, len, rl_hash(&rl->t, key, len));
}

struct ratelimit *ratelimit_new(const struct ratelimit_params *p, ratelimit_clock_fn clock,
				void *clock_arg, char *err, size_t errlen)
{
	struct ratelimit *rl;

	if (p->window == 0) {
		snprintf(err, errlen, "rate limit window must be at least 1 second");
		return NULL;
	}
	if (p->max_keys == 0) {
		snprintf(err, errlen, "rate limit table needs room for at least one key");
		return NULL;
	}
	if (p->ban_step > 0 && p->ban_max < p->ban_step) {
		snprintf(err, errlen, "ban_max (%u s) is shorter than one ban_step (%u s)",
			 p->ban_max, p->ban_step);
		return NULL;
	}
	rl = xcalloc(1, sizeof(*rl));
	rl_table_init(&rl->t, p->max_keys);
	snprintf(rl->name, sizeof(rl->name), "%s", p->name != NULL ? p->name : "rate");
	rl->window = p->window;
	rl->limit = p->limit;
	rl->ban_step = p->ban_step;
	rl->ban_max = p->ban_max;
	rl->step = (p->window + RL_BUCKETS - 1) / RL_BUCKETS;
	rl->nbuckets = (p->window + rl->step - 1) / rl->step;
	rl->clock = clock;
	rl->clock_arg = clock_arg;
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	rl_table_destroy(&rl->t);
	free(rl);
}

bool ratelimit_has_params(const struct ratelimit *rl, const struct ratelimit_params *p)
{
	return strcmp(rl->name, p->name != NULL ? p->name : "rate") == 0 && rl->window == p->window &&
	       rl->limit == p->limit && rl->ban_step == p->ban_step && rl->ban_max == p->ban_max &&
	       rl->t.max == p->max_keys;
}

/* One more attempt beyond the limit: push the ban end out by one step, capped. */
static void rl_extend_ban(const struct ratelimit *rl, struct rl_entry *e, time_t now)
{
	time_t from = e->ban_until > now ? e->ban_until : now;
	time_t until = from + (time_t)rl->ban_step;
	time_t cap = now + (time_t)rl->ban_max;

	if (until > cap)
		until = cap;
	if (until > e->ban_until)
		e->ban_until = until;
}

enum ratelimit_verdict ratelimit_hit(struct ratelimit *rl, const char *key,
				     struct ratelimit_state *out)
{
	time_t now = rl_now(rl);
	struct rl_entry *e;
	unsigned *bucket;
	bool was_banned, over;

	rl_expire_tail(rl, now, RL_EXPIRE_PER_HIT);
	e = rl_find_or_add(rl, key, now);
	rl_advance(rl, e, now);
	was_banned = e->ban_until > now;
	bucket = &e->counts[e->last_slot % rl->nbuckets];
	if (*bucket < UINT_MAX)
		(*bucket)++;
	over = rl->limit != 0 && rl_window_count(rl, e) > rl->limit;
	if (over && rl->ban_step > 0)
		rl_extend_ban(rl, e, now);
	rl_fill_state(rl, e, now, out);
	if (was_banned)
		return RATELIMIT_BANNED;
	return over ? RATELIMIT_OVER_LIMIT : RATELIMIT_ALLOW;
}

bool ratelimit_peek(struct ratelimit *rl, const char *key, struct ratelimit_state *out)
{
	time_t now = rl_now(rl);
	struct rl_entry *e = rl_find(rl, key);

	if (e == NULL)
		return false;
	rl_advance(rl, e, now);
	rl_fill_state(rl, e, now, out);
	return true;
}

void ratelimit_ban(struct ratelimit *rl, const char *key, unsigned seconds)
{
	time_t now = rl_now(rl);
	struct rl_entry *e = rl_find_or_add(rl, key, now);

	rl_advance(rl, e, now);
	e->ban_until = seconds > 0 ? now + (time_t)seconds : 0;
}

bool ratelimit_unban(struct ratelimit *rl, const char *key)
{
	struct rl_entry *e = rl_find(rl, key);

	if (e == NULL)
		return false;
	e->ban_until = 0;
	memset(e->counts, 0, sizeof(e->counts));
	return true;
}

void ratelimit_expire(struct ratelimit *rl)
{
	time_t now = rl_now(rl);
	struct rl_entry *e = rl->t.oldest, *newer;

	for (; e != NULL; e = newer) {
		newer = e->newer;
		if (rl_idle(rl, e, now))
			rl_remove(&rl->t, e);
	}
}

size_t ratelimit_count(const struct ratelimit *rl)
{
	return rl->t.n;
}

void ratelimit_foreach(struct ratelimit *rl, ratelimit_foreach_cb cb, void *arg)
{
	time_t now = rl_now(rl);
	struct ratelimit_state st;

	for (struct rl_entry *e = rl->t.newest; e != NULL; e = e->older) {
		rl_advance(rl, e, now);
		rl_fill_state(rl, e, now, &st);
		if (cb(arg, e->key, &st) != 0)
			return;
	}
}

struct ratelimit_conc *ratelimit_conc_new(unsigned limit, size_t max_keys)
{
	struct ratelimit_conc *c = xcalloc(1, sizeof(*c));

	rl_table_init(&c->t, max_keys > 0 ? max_keys : 1);
	c->limit = limit;
	return c;
}

void ratelimit_conc_free(struct ratelimit_conc *c)
{
	if (c == NULL)
		return;
	rl_table_destroy(&c->t);
	free(c);
}

bool ratelimit_conc_acquire(struct ratelimit_conc *c, const char *key, unsigned *current)
{
	size_t len = rl_key_len(key);
	uint64_t hash = rl_hash(&c->t, key, len);
	struct rl_entry *e = rl_lookup(&c->t, key, len, hash);

	if (e == NULL) {
		if (c->t.n >= c->t.max) {
			log_warn("concurrency table full (%zu keys): refusing key=%s", c->t.max, key);
			if (current != NULL)
				*current = 0;
			return false;
		}
		e = rl_insert(&c->t, key, len, hash);
	}
	if ((c->limit != 0 && e->uses >= c->limit) || e->uses == UINT_MAX) {
		if (current != NULL)
			*current = e->uses;
		return false;
	}
	e->uses++;
	if (current != NULL)
		*current = e->uses;
	return true;
}

void ratelimit_conc_release(struct ratelimit_conc *c, const char *key)
{
	size_t len = rl_key_len(key);
	struct rl_entry *e = rl_lookup(&c->t, key, len, rl_hash(&c->t, key, len));

	if (e == NULL || e->uses == 0)
		panic("release of key=%s that holds no use", key);
	if (--e->uses == 0)
		rl_remove(&c->t, e);
}

unsigned ratelimit_conc_count(struct ratelimit_conc *c, const char *key)
{
	size_t len = rl_key_len(key);
	struct rl_entry *e = rl_lookup(&c->t, key, len, rl_hash(&c->t, key, len));

	return e != NULL ? e->uses : 0;
}
