/*
 * The rate/ban table with an injected clock: no test sleeps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/ratelimit.h"
#include "unit.h"

static time_t fake_clock(void *arg)
{
	return *(time_t *)arg;
}

static struct ratelimit *rl_make(time_t *now, unsigned window, unsigned limit, unsigned step,
				 unsigned max, size_t keys)
{
	struct ratelimit_params p = {
		.name = "connect-rate", .window = window, .limit = limit,
		.ban_step = step, .ban_max = max, .max_keys = keys,
	};
	char err[128] = "";
	struct ratelimit *rl = ratelimit_new(&p, fake_clock, now, err, sizeof(err));

	CHECK(rl != NULL);
	return rl;
}

TEST(ratelimit_rejects_bad_params)
{
	struct ratelimit_params p = { .window = 0, .limit = 1, .max_keys = 10 };
	char err[128] = "";

	CHECK(ratelimit_new(&p, NULL, NULL, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "window") != NULL);
	p.window = 10;
	p.max_keys = 0;
	CHECK(ratelimit_new(&p, NULL, NULL, err, sizeof(err)) == NULL);
	p.max_keys = 10;
	p.ban_step = 60;
	p.ban_max = 30;
	CHECK(ratelimit_new(&p, NULL, NULL, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "ban_max") != NULL);
}

TEST(ratelimit_allows_up_to_limit_then_over)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 10, 3, 0, 0, 100);
	struct ratelimit_state st;

	for (int i = 1; i <= 3; i++) {
		CHECK_INT(ratelimit_hit(rl, "ip:192.0.2.1", &st), RATELIMIT_ALLOW);
		CHECK_INT(st.count, i);
	}
	CHECK_INT(ratelimit_hit(rl, "ip:192.0.2.1", &st), RATELIMIT_OVER_LIMIT);
	CHECK_INT(st.count, 4);
	CHECK_INT(st.ban_until, 0);            /* ban_step 0: refuse, never ban */
	CHECK_STR(st.kind, "connect-rate");
	/* another key has its own count */
	CHECK_INT(ratelimit_hit(rl, "ip:192.0.2.2", &st), RATELIMIT_ALLOW);
	CHECK_INT(st.count, 1);
	ratelimit_free(rl);
}

TEST(ratelimit_window_slides_per_second)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 10, 3, 0, 0, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "k", NULL);           /* t=1000 */
	now = 1005;
	ratelimit_hit(rl, "k", NULL);
	ratelimit_hit(rl, "k", NULL);
	now = 1009;
	CHECK_INT(ratelimit_hit(rl, "k", &st), RATELIMIT_OVER_LIMIT);
	CHECK_INT(st.count, 4);
	now = 1010;                             /* the hit of t=1000 left the window */
	CHECK(ratelimit_peek(rl, "k", &st));
	CHECK_INT(st.count, 3);
	now = 1015;                             /* those of 1005 too */
	CHECK(ratelimit_peek(rl, "k", &st));
	CHECK_INT(st.count, 1);
	CHECK_INT(ratelimit_hit(rl, "k", &st), RATELIMIT_ALLOW);
	now = 1100;
	CHECK(ratelimit_peek(rl, "k", &st));
	CHECK_INT(st.count, 0);
	ratelimit_free(rl);
}

TEST(ratelimit_long_window_uses_coarse_steps)
{
	/* 3600 s in 16 steps of 225 s: a hit counts for 3375..3600 s */
	time_t now = 225 * 100;
	struct ratelimit *rl = rl_make(&now, 3600, 100, 0, 0, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "sender:a@example.com", NULL);      /* start of a step */
	now += 224;
	ratelimit_hit(rl, "sender:b@example.com", NULL);      /* its end */
	now = 225 * 100 + 3599;
	CHECK(ratelimit_peek(rl, "sender:a@example.com", &st));
	CHECK_INT(st.count, 1);
	CHECK(ratelimit_peek(rl, "sender:b@example.com", &st));
	CHECK_INT(st.count, 1);
	now++;
	CHECK(ratelimit_peek(rl, "sender:a@example.com", &st));
	CHECK_INT(st.count, 0);
	CHECK(ratelimit_peek(rl, "sender:b@example.com", &st));
	CHECK_INT(st.count, 0);
	ratelimit_free(rl);
}

TEST(ratelimit_ban_accumulates_and_caps)
{
	time_t now = 5000;
	/* 2 per 60 s; each extra attempt adds 30 s; never more than 100 s ahead */
	struct ratelimit *rl = rl_make(&now, 60, 2, 30, 100, 100);
	struct ratelimit_state st;

	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_ALLOW);
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_ALLOW);
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_OVER_LIMIT);
	CHECK_INT(st.ban_until, 5030);
	CHECK_INT(st.ban_left, 30);
	now = 5001;
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_BANNED);
	CHECK_INT(st.ban_until, 5060);         /* from the running ban's end */
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_BANNED);
	CHECK_INT(st.ban_until, 5090);
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_BANNED);
	CHECK_INT(st.ban_until, 5101);         /* capped at now + ban_max */
	CHECK_INT(st.ban_left, 100);
	CHECK_INT(ratelimit_hit(rl, "ip:a", &st), RATELIMIT_BANNED);
	CHECK_INT(st.ban_until, 5101);
	ratelimit_free(rl);
}

TEST(ratelimit_ban_decays_and_ends)
{
	time_t now = 5000;
	struct ratelimit *rl = rl_make(&now, 10, 1, 60, 600, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "ip:b", NULL);
	CHECK_INT(ratelimit_hit(rl, "ip:b", &st), RATELIMIT_OVER_LIMIT);
	CHECK_INT(st.ban_until, 5060);
	/* the window is empty again, but the ban still runs: a lone attempt is
	 * refused without lengthening it */
	now = 5030;
	CHECK(ratelimit_peek(rl, "ip:b", &st));
	CHECK_INT(st.ban_left, 30);
	CHECK_INT(ratelimit_hit(rl, "ip:b", &st), RATELIMIT_BANNED);
	CHECK_INT(st.ban_until, 5060);
	CHECK_INT(st.count, 1);
	now = 5060;
	CHECK(ratelimit_peek(rl, "ip:b", &st));
	CHECK_INT(st.ban_until, 0);
	CHECK_INT(st.ban_left, 0);
	CHECK_INT(ratelimit_hit(rl, "ip:b", &st), RATELIMIT_ALLOW);
	ratelimit_free(rl);
}

TEST(ratelimit_unban_and_manual_ban)
{
	time_t now = 100;
	struct ratelimit *rl = rl_make(&now, 60, 1, 60, 3600, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "ip:c", NULL);
	CHECK_INT(ratelimit_hit(rl, "ip:c", NULL), RATELIMIT_OVER_LIMIT);
	CHECK_INT(ratelimit_hit(rl, "ip:c", NULL), RATELIMIT_BANNED);
	CHECK(ratelimit_unban(rl, "ip:c"));
	CHECK(ratelimit_peek(rl, "ip:c", &st));
	CHECK_INT(st.ban_until, 0);
	CHECK_INT(st.count, 0);                 /* forgotten, so not re-banned at once */
	CHECK_INT(ratelimit_hit(rl, "ip:c", NULL), RATELIMIT_ALLOW);
	CHECK(!ratelimit_unban(rl, "ip:unknown"));

	ratelimit_ban(rl, "ip:d", 86400);       /* beyond ban_max: an operator's choice */
	CHECK(ratelimit_peek(rl, "ip:d", &st));
	CHECK_INT(st.ban_until, 100 + 86400);
	CHECK_INT(ratelimit_hit(rl, "ip:d", NULL), RATELIMIT_BANNED);
	ratelimit_free(rl);
}

TEST(ratelimit_unlimited_counts_but_never_refuses)
{
	time_t now = 100;
	struct ratelimit *rl = rl_make(&now, 60, 0, 60, 3600, 100);
	struct ratelimit_state st;

	for (int i = 0; i < 1000; i++)
		CHECK_INT(ratelimit_hit(rl, "k", &st), RATELIMIT_ALLOW);
	CHECK_INT(st.count, 1000);
	CHECK_INT(st.ban_until, 0);
	ratelimit_free(rl);
}

TEST(ratelimit_clock_going_back_is_harmless)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 10, 2, 0, 0, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "k", NULL);
	now = 900;
	CHECK_INT(ratelimit_hit(rl, "k", &st), RATELIMIT_ALLOW);
	CHECK_INT(st.count, 2);
	CHECK_INT(ratelimit_hit(rl, "k", &st), RATELIMIT_OVER_LIMIT);
	ratelimit_free(rl);
}

TEST(ratelimit_idle_keys_expire)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 10, 5, 60, 60, 100);
	struct ratelimit_state st;

	ratelimit_hit(rl, "a", NULL);
	ratelimit_hit(rl, "b", NULL);
	for (int i = 0; i < 6; i++)
		ratelimit_hit(rl, "banned", NULL);
	CHECK_INT(ratelimit_count(rl), 3);
	now = 1020;                             /* a and b idle; "banned" until 1060 */
	ratelimit_expire(rl);
	CHECK_INT(ratelimit_count(rl), 1);
	CHECK(!ratelimit_peek(rl, "a", &st));
	CHECK(ratelimit_peek(rl, "banned", &st));
	now = 1060;
	ratelimit_hit(rl, "c", NULL);           /* hits expire idle keys from the tail */
	CHECK_INT(ratelimit_count(rl), 1);
	CHECK(!ratelimit_peek(rl, "banned", &st));
	ratelimit_free(rl);
}

TEST(ratelimit_evicts_least_recent_when_full)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 60, 5, 0, 0, 3);
	struct ratelimit_state st;

	ratelimit_hit(rl, "a", NULL);
	ratelimit_hit(rl, "b", NULL);
	ratelimit_hit(rl, "c", NULL);
	ratelimit_hit(rl, "a", NULL);           /* a is now the most recent */
	ratelimit_hit(rl, "d", NULL);           /* b goes */
	CHECK_INT(ratelimit_count(rl), 3);
	CHECK(!ratelimit_peek(rl, "b", &st));
	CHECK(ratelimit_peek(rl, "a", &st));
	CHECK_INT(st.count, 2);
	CHECK(ratelimit_peek(rl, "c", &st));
	CHECK(ratelimit_peek(rl, "d", &st));
	ratelimit_free(rl);
}

struct list_seen {
	int n;
	char keys[4][32];
	time_t ban_until[4];
	unsigned count[4];
};

static int list_cb(void *arg, const char *key, const struct ratelimit_state *st)
{
	struct list_seen *s = arg;

	if (s->n < 4) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
		s->ban_until[s->n] = st->ban_until;
		s->count[s->n] = st->count;
	}
	s->n++;
	return s->n == 3;
}

TEST(ratelimit_foreach_lists_most_recent_first)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 60, 1, 10, 10, 100);
	struct list_seen s = { 0 };

	ratelimit_hit(rl, "ip:1", NULL);
	ratelimit_hit(rl, "ip:2", NULL);
	ratelimit_hit(rl, "ip:2", NULL);
	ratelimit_hit(rl, "ip:3", NULL);
	ratelimit_hit(rl, "ip:4", NULL);
	ratelimit_foreach(rl, list_cb, &s);
	CHECK_INT(s.n, 3);                      /* the callback stopped the walk */
	CHECK_STR(s.keys[0], "ip:4");
	CHECK_STR(s.keys[2], "ip:2");
	CHECK_INT(s.count[2], 2);
	CHECK_INT(s.ban_until[2], 1010);
	CHECK_INT(s.ban_until[0], 0);
	ratelimit_free(rl);
}

TEST(ratelimit_long_keys_compare_by_prefix)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 60, 5, 0, 0, 10);
	char a[RATELIMIT_KEY_MAX + 20], b[RATELIMIT_KEY_MAX + 20];
	struct ratelimit_state st;

	memset(a, 'x', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[RATELIMIT_KEY_MAX + 5] = 'y';
	ratelimit_hit(rl, a, NULL);
	ratelimit_hit(rl, b, &st);
	CHECK_INT(st.count, 2);
	CHECK_INT(ratelimit_count(rl), 1);
	ratelimit_free(rl);
}

TEST(ratelimit_100k_keys)
{
	time_t now = 1000;
	struct ratelimit *rl = rl_make(&now, 60, 3, 10, 100, 50000);
	struct ratelimit_state st;
	char key[64];
	int banned = 0;

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 100000; i++) {
			snprintf(key, sizeof(key), "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
			if (ratelimit_hit(rl, key, &st) != RATELIMIT_ALLOW)
				banned++;
		}
		now++;
	}
	CHECK_INT(ratelimit_count(rl), 50000);  /* bounded by max_keys */
	CHECK_INT(banned, 0);                   /* evicted before reaching the limit */
	ratelimit_free(rl);

	rl = rl_make(&now, 60, 3, 10, 100, 200000);
	for (int round = 0; round < 4; round++)
		for (int i = 0; i < 100000; i++) {
			snprintf(key, sizeof(key), "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
			ratelimit_hit(rl, key, &st);
		}
	CHECK_INT(ratelimit_count(rl), 100000);
	CHECK(ratelimit_peek(rl, "ip:10.0.0.7", &st));
	CHECK_INT(st.count, 4);
	CHECK_INT(st.ban_until, now + 10);
	now += 1000;
	ratelimit_expire(rl);
	CHECK_INT(ratelimit_count(rl), 0);
	ratelimit_free(rl);
}

TEST(ratelimit_conc_counts_uses)
{
	struct ratelimit_conc *c = ratelimit_conc_new(2, 100);
	unsigned cur = 99;

	CHECK(ratelimit_conc_acquire(c, "ip:a", &cur));
	CHECK_INT(cur, 1);
	CHECK(ratelimit_conc_acquire(c, "ip:a", &cur));
	CHECK_INT(cur, 2);
	CHECK(!ratelimit_conc_acquire(c, "ip:a", &cur));
	CHECK_INT(cur, 2);
	CHECK(ratelimit_conc_acquire(c, "ip:b", NULL));
	ratelimit_conc_release(c, "ip:a");
	CHECK_INT(ratelimit_conc_count(c, "ip:a"), 1);
	CHECK(ratelimit_conc_acquire(c, "ip:a", &cur));
	ratelimit_conc_release(c, "ip:a");
	ratelimit_conc_release(c, "ip:a");
	ratelimit_conc_release(c, "ip:b");
	CHECK_INT(ratelimit_conc_count(c, "ip:a"), 0);
	CHECK_INT(ratelimit_conc_count(c, "ip:unknown"), 0);
	ratelimit_conc_free(c);
}

TEST(ratelimit_conc_unlimited_and_bounded)
{
	struct ratelimit_conc *c = ratelimit_conc_new(0, 2);
	unsigned cur = 0;

	for (int i = 0; i < 500; i++)
		CHECK(ratelimit_conc_acquire(c, "ip:a", &cur));
	CHECK_INT(cur, 500);
	CHECK(ratelimit_conc_acquire(c, "ip:b", NULL));
	CHECK(!ratelimit_conc_acquire(c, "ip:c", &cur));   /* table full */
	CHECK_INT(cur, 0);
	ratelimit_conc_release(c, "ip:b");                  /* b forgotten: room again */
	CHECK(ratelimit_conc_acquire(c, "ip:c", NULL));
	ratelimit_conc_free(c);
}
