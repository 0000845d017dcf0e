#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content/engine.h"
#include "content/mime.h"
#include "content/pipeline.h"
#include "content/sender_history.h"
#include "store/history_store.h"

#define DAY 86400

static const char raw_message[] =
	"From: News <news@example.org>\r\n"
	"To: you@example.net\r\n"
	"Subject: This month's offers\r\n"
	"\r\n"
	"Hello, our monthly newsletter.\r\n";

static bool near(double a, double b)
{
	return fabs(a - b) < 1e-3;
}

static const struct sender_history_options test_options = {
	.min_messages = 10,
	.max_spam_percent = 5,
	.dampen_percent = 50,
	.half_life_seconds = 90 * DAY,
	.suspected_scl = 5,
	.spam_scl = 7,
};

static struct history_store *open_store(const char *name)
{
	char path[512], err[512] = "";
	struct history_store *s;

	snprintf(path, sizeof(path), "%s/%s", unit_tmpdir(), name);
	s = history_store_open_sqlite(path, err, sizeof(err));
	CHECK(s != NULL);
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	return s;
}

static void add_messages(struct history_store *s, const char *key, int ham, int spam, int64_t now)
{
	for (int i = 0; i < ham; i++)
		CHECK_INT(s->ops->add(s->be, key, 1, 0, now, test_options.half_life_seconds), 0);
	for (int i = 0; i < spam; i++)
		CHECK_INT(s->ops->add(s->be, key, 0, 1, now, test_options.half_life_seconds), 0);
}

static void add_result(struct engine_results *r, const char *engine, const char *symbol, double score,
		       enum content_category cat, enum content_action action, const char *reason)
{
	struct engine_result *e = engine_results_add(r, engine, symbol);

	e->score = score;
	e->category = cat;
	e->action = action;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

/* A message from `sender` at client `addr`, SPF as given; m->mime parsed from raw_message. */
static void make_message(struct content_message *m, struct content_auth *a, const char *sender, const char *spf,
			 const char *addr)
{
	struct mime_limits l;

	memset(a, 0, sizeof(*a));
	a->mailfrom = sender;
	a->received_spf = spf;
	a->client_addr = addr;
	a->helo = "mail.example.org";
	mime_global_init();
	mime_limits_default(&l);
	memset(m, 0, sizeof(*m));
	m->raw = (const unsigned char *)raw_message;
	m->raw_len = strlen(raw_message);
	m->mime = mime_parse(m->raw, m->raw_len, &l, NULL);
	CHECK(m->mime != NULL);
	m->auth = a;
}

/*
 * Run the history engine over a message from sender/addr/spf whose other
 * engines scored `score` (plus `extra`, when given); the HISTORY_CLEAN
 * score, or 0 when the engine added nothing.
 */
static double run_engine(struct sender_history *h, const char *sender, const char *spf, const char *addr,
			 double score, const struct engine_result *extra)
{
	struct content_engine *e = sender_history_content_engine(h);
	struct content_message m;
	struct content_auth a;
	struct engine_results out = { 0 };
	double got = 0;
	size_t before;

	make_message(&m, &a, sender, spf, addr);
	add_result(&out, "rules", "RULE_NEWSLETTER_SPAMMY", score, CATEGORY_RULE, CONTENT_NONE, "spammy subject");
	add_result(&out, "dkim", "DKIM_INVALID", -0.5, CATEGORY_SPAM, CONTENT_NONE, "negative, not summed");
	if (extra != NULL) {
		struct engine_result *x = engine_results_add(&out, extra->engine, extra->symbol);

		*x = *extra;
	}
	before = out.count;
	e->check(e->state, &m, &out);
	CHECK(out.count == before || out.count == before + 1);
	if (out.count == before + 1) {
		const struct engine_result *r = &out.items[before];

		CHECK_STR(r->engine, "history");
		CHECK_STR(r->symbol, "HISTORY_CLEAN");
		CHECK_INT(r->category, CATEGORY_SPAM);
		CHECK_INT(r->action, CONTENT_NONE);
		CHECK(strstr(r->reason, "clean history") != NULL);
		got = r->score;
	}
	engine_results_free(&out);
	mime_message_free(m.mime);
	free(e);
	return got;
}

TEST(history_key_forms)
{
	char key[SENDER_HISTORY_KEY_MAX], big[SENDER_HISTORY_KEY_MAX + 10];

	CHECK(sender_history_key("News@Example.ORG", true, "192.0.2.77", key, sizeof(key)));
	CHECK_STR(key, "news@example.org");
	CHECK(sender_history_key("News@Example.ORG", true, NULL, key, sizeof(key)));
	CHECK_STR(key, "news@example.org");
	CHECK(sender_history_key("News@Example.ORG", false, "192.0.2.77", key, sizeof(key)));
	CHECK_STR(key, "news@example.org[192.0.2.0/24]");
	CHECK(sender_history_key("a@b.example", false, "2001:db8:abcd:12::1", key, sizeof(key)));
	CHECK_STR(key, "a@b.example[2001:db8:abcd::/48]");
	CHECK(sender_history_key("a@b.example", false, "::ffff:198.51.100.9", key, sizeof(key)));
	CHECK_STR(key, "a@b.example[198.51.100.0/24]");

	/* The null sender has no history; an unauthenticated one needs a network. */
	CHECK(!sender_history_key("", true, "192.0.2.1", key, sizeof(key)));
	CHECK(!sender_history_key(NULL, true, "192.0.2.1", key, sizeof(key)));
	CHECK(!sender_history_key("a@b.example", false, NULL, key, sizeof(key)));
	CHECK(!sender_history_key("a@b.example", false, "not-an-address", key, sizeof(key)));
	CHECK(!sender_history_key("a b@example.org", true, NULL, key, sizeof(key)));

	/* Too long for the key, or for the caller's buffer. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "a@", 2);
	CHECK(!sender_history_key(big, true, NULL, key, sizeof(key)));
	big[SENDER_HISTORY_KEY_MAX - 1] = '\0';
	CHECK(sender_history_key(big, true, NULL, key, sizeof(key)));
	CHECK(!sender_history_key(big, false, "192.0.2.1", key, sizeof(key)));
	CHECK(!sender_history_key("news@example.org", true, NULL, key, 10));
	CHECK(!sender_history_key("news@example.org", false, "192.0.2.1", key, 20));
}

TEST(history_decay_maths)
{
	struct history_counts c = { .ham = 8, .spam = 4, .as_of = 1000 };

	history_counts_decay(&c, 1000 + 100, 100);
	CHECK(near(c.ham, 4) && near(c.spam, 2));
	CHECK_INT(c.as_of, 1100);
	history_counts_decay(&c, 1100 + 200, 100);
	CHECK(near(c.ham, 1) && near(c.spam, 0.5));
	history_counts_decay(&c, 1300 + 50, 100);
	CHECK(near(c.ham, 1 / sqrt(2)));
	CHECK_INT(c.as_of, 1350);

	/* A clock that went back changes nothing. */
	history_counts_decay(&c, 1000, 100);
	CHECK(near(c.ham, 1 / sqrt(2)));
	CHECK_INT(c.as_of, 1350);

	/* Unknown counts just move to now. */
	c = (struct history_counts){ 0 };
	history_counts_decay(&c, 5000, 100);
	CHECK(c.ham == 0 && c.spam == 0);
	CHECK_INT(c.as_of, 5000);
}

TEST(history_store_round_trip)
{
	struct history_store *s = open_store("history.db");
	struct history_counts c;
	int64_t now = 1700000000;
	uint32_t hl = test_options.half_life_seconds;

	CHECK_INT(s->ops->get(s->be, "nobody@example.org", &c), 0);
	CHECK(c.ham == 0 && c.spam == 0 && c.as_of == 0);
	add_messages(s, "news@example.org", 3, 1, now);
	add_messages(s, "other@example.org[192.0.2.0/24]", 0, 2, now);
	CHECK_INT(s->ops->get(s->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 3) && near(c.spam, 1));
	CHECK_INT(c.as_of, now);
	history_store_close(s);

	s = open_store("history.db");
	CHECK_INT(s->ops->get(s->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 3) && near(c.spam, 1));
	CHECK_INT(c.as_of, now);
	/* One half-life later the old counts weigh half. */
	CHECK_INT(s->ops->add(s->be, "news@example.org", 1, 0, now + hl, hl), 0);
	CHECK_INT(s->ops->get(s->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 2.5) && near(c.spam, 0.5));
	CHECK_INT(c.as_of, now + hl);
	CHECK_INT(s->ops->get(s->be, "other@example.org[192.0.2.0/24]", &c), 0);
	CHECK(near(c.spam, 2));
	history_store_close(s);

	s = open_store("history.db");
	CHECK_INT(s->ops->get(s->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 2.5) && near(c.spam, 0.5));
	/* Keys not updated since before go, from the file and the cache. */
	CHECK_INT(s->ops->expire(s->be, now + 1), 1);
	CHECK_INT(s->ops->get(s->be, "other@example.org[192.0.2.0/24]", &c), 0);
	CHECK(c.ham == 0 && c.spam == 0 && c.as_of == 0);
	CHECK_INT(s->ops->get(s->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 2.5));
	history_store_close(s);
}

TEST(history_store_expires_on_add)
{
	struct history_store *s = open_store("history.db");
	struct history_counts c;
	int64_t now = 1700000000;
	uint32_t hl = 1000;

	CHECK_INT(s->ops->add(s->be, "old@example.org", 1, 0, now, hl), 0);
	CHECK_INT(s->ops->add(s->be, "new@example.org", 1, 0, now + 4 * hl - 10, hl), 0);
	/* Within the hour since the last expiry: nothing goes yet. */
	CHECK_INT(s->ops->add(s->be, "new@example.org", 1, 0, now + 4 * hl + 1, hl), 0);
	CHECK_INT(s->ops->get(s->be, "old@example.org", &c), 0);
	CHECK(near(c.ham, 1));
	/* An hour later, the key not updated for 4 half-lives has gone. */
	CHECK_INT(s->ops->add(s->be, "new@example.org", 1, 0, now + 3600, hl), 0);
	CHECK_INT(s->ops->add(s->be, "new@example.org", 1, 0, now + 3600 + 4 * hl + 1, hl), 0);
	CHECK_INT(s->ops->get(s->be, "old@example.org", &c), 0);
	CHECK(c.ham == 0 && c.as_of == 0);
	history_store_close(s);
	s = open_store("history.db");
	CHECK_INT(s->ops->get(s->be, "old@example.org", &c), 0);
	CHECK(c.ham == 0 && c.as_of == 0);
	CHECK_INT(s->ops->get(s->be, "new@example.org", &c), 0);
	CHECK(c.ham > 1);
	history_store_close(s);
}

TEST(history_store_two_writers_add_up)
{
	struct history_store *a = open_store("history.db"), *b = open_store("history.db");
	struct history_counts c;
	int64_t now = 1700000000;

	add_messages(a, "news@example.org", 2, 0, now);
	add_messages(b, "news@example.org", 1, 1, now);
	history_store_close(a);
	history_store_close(b);
	a = open_store("history.db");
	CHECK_INT(a->ops->get(a->be, "news@example.org", &c), 0);
	CHECK(near(c.ham, 3) && near(c.spam, 1));
	history_store_close(a);
}

TEST(history_engine_dampens_clean_sender)
{
	struct history_store *s = open_store("history.db");
	struct sender_history *h = sender_history_new(s, &test_options);
	int64_t now = (int64_t)time(NULL);
	const char *spf = "Received-SPF: pass (mx.example.net: domain of news@example.org designates 192.0.2.1 as permitted sender)";

	add_messages(s, "news@example.org", 20, 0, now);
	add_messages(s, "young@example.org", 3, 0, now);
	add_messages(s, "mixed@example.org", 10, 10, now);
	add_messages(s, "veteran@example.org", 100, 2, now);

	/* 20 ham of the 40 for full weight: half of dampen_percent, of the positive total only. */
	CHECK(near(run_engine(h, "news@example.org", spf, "192.0.2.1", 6, NULL), -6 * 0.5 * 0.5));
	CHECK(near(run_engine(h, "News@EXAMPLE.org", "received-spf: PASS", "203.0.113.5", 6, NULL), -1.5));
	/* Too young, too much spam. */
	CHECK(run_engine(h, "young@example.org", spf, "192.0.2.1", 6, NULL) == 0);
	CHECK(run_engine(h, "mixed@example.org", spf, "192.0.2.1", 6, NULL) == 0);
	/* 2% spam is within 5%: a little less than half off. */
	CHECK(near(run_engine(h, "veteran@example.org", spf, "192.0.2.1", 10, NULL), -10 * 0.5 * 100.0 / 102.0));
	/* Nothing to dampen. */
	CHECK(run_engine(h, "news@example.org", spf, "192.0.2.1", 0, NULL) == 0);

	sender_history_free(h);
}

TEST(history_engine_never_dampens_virus_or_action)
{
	struct history_store *s = open_store("history.db");
	struct sender_history *h = sender_history_new(s, &test_options);
	const char *spf = "Received-SPF: pass (test)";
	struct engine_result virus = { .engine = "virus", .symbol = "VIRUS_FOUND", .score = 100,
				       .category = CATEGORY_VIRUS, .action = CONTENT_REJECT, .part_index = 1 };
	struct engine_result quarantine = { .engine = "rules", .symbol = "RULE_Q", .score = 1,
					    .category = CATEGORY_RULE, .action = CONTENT_QUARANTINE, .part_index = -1 };
	struct engine_result tag = { .engine = "rules", .symbol = "RULE_T", .score = 2,
				     .category = CATEGORY_RULE, .action = CONTENT_TAG, .part_index = -1 };

	add_messages(s, "news@example.org", 40, 0, (int64_t)time(NULL));
	CHECK(near(run_engine(h, "news@example.org", spf, "192.0.2.1", 6, NULL), -3));
	CHECK(run_engine(h, "news@example.org", spf, "192.0.2.1", 6, &virus) == 0);
	CHECK(run_engine(h, "news@example.org", spf, "192.0.2.1", 6, &quarantine) == 0);
	CHECK(near(run_engine(h, "news@example.org", spf, "192.0.2.1", 6, &tag), -4));
	sender_history_free(h);
}

TEST(history_engine_forger_does_not_inherit)
{
	struct history_store *s = open_store("history.db");
	struct sender_history *h = sender_history_new(s, &test_options);
	struct engine_result dkim_parent = { .engine = "dkim", .symbol = "DKIM_VALID", .score = -1,
					     .category = CATEGORY_SPAM, .part_index = -1,
					     .reason = "DKIM pass for Example.org (s=sel1)" };
	struct engine_result dkim_other = { .engine = "dkim", .symbol = "DKIM_VALID", .score = -1,
					    .category = CATEGORY_SPAM, .part_index = -1,
					    .reason = "DKIM pass for ample.org (s=sel1)" };
	int64_t now = (int64_t)time(NULL);

	add_messages(s, "news@example.org", 40, 0, now);
	add_messages(s, "news@mail.example.org", 40, 0, now);
	add_messages(s, "local@example.org[192.0.2.0/24]", 40, 0, now);

	/* Neither SPF pass nor DKIM: keyed with the client network. */
	CHECK(run_engine(h, "news@example.org", "Received-SPF: softfail (test)", "198.51.100.7", 6, NULL) == 0);
	CHECK(run_engine(h, "news@example.org", NULL, "198.51.100.7", 6, NULL) == 0);
	CHECK(run_engine(h, "news@example.org", "Received-SPF: passive", "198.51.100.7", 6, NULL) == 0);
	CHECK(near(run_engine(h, "local@example.org", NULL, "192.0.2.200", 6, NULL), -3));
	CHECK(run_engine(h, "local@example.org", NULL, "192.0.3.200", 6, NULL) == 0);
	/* A DKIM signature of the sender's domain or a parent of it proves the sender. */
	CHECK(near(run_engine(h, "news@mail.example.org", NULL, "198.51.100.7", 6, &dkim_parent), -3));
	CHECK(near(run_engine(h, "news@example.org", NULL, "198.51.100.7", 6, &dkim_parent), -3));
	CHECK(run_engine(h, "news@example.org", NULL, "198.51.100.7", 6, &dkim_other) == 0);
	/* No session (postern scan): nothing. */
	{
		struct content_engine *e = sender_history_content_engine(h);
		struct content_message m;
		struct content_auth a;
		struct engine_results out = { 0 };

		make_message(&m, &a, "news@example.org", "Received-SPF: pass", "192.0.2.1");
		m.auth = NULL;
		add_result(&out, "rules", "R", 6, CATEGORY_RULE, CONTENT_NONE, "r");
		e->check(e->state, &m, &out);
		CHECK_INT(out.count, 1);
		engine_results_free(&out);
		mime_message_free(m.mime);
		free(e);
	}
	sender_history_free(h);
}

/* The lowest score (in halves) the pipeline maps to scl, whatever its table. */
static double score_for_scl(int scl)
{
	for (double score = 0; score <= 100; score += 0.5)
		if (content_scl(score) == scl)
			return score;
	abort();
}

/* Count one message scored `score` (and HISTORY_CLEAN `dampened`, when not 0) for sender. */
static void count_verdict(struct sender_history *h, const char *sender, double score, double dampened,
			  enum content_category cat, enum content_action action)
{
	struct content_message m;
	struct content_auth a;
	struct engine_results results = { 0 };

	make_message(&m, &a, sender, "Received-SPF: pass (test)", "192.0.2.1");
	add_result(&results, "rules", "R", score, cat, action, "r");
	if (dampened != 0)
		add_result(&results, "history", "HISTORY_CLEAN", dampened, CATEGORY_SPAM, CONTENT_NONE, "h");
	sender_history_after_verdict(h, &m, &results, "Q1");
	engine_results_free(&results);
	mime_message_free(m.mime);
}

TEST(history_after_verdict_counts)
{
	struct history_store *s = open_store("history.db");
	struct sender_history *h = sender_history_new(s, &test_options);
	struct history_counts c;

	/* Below suspected_scl 5: ham; from spam_scl 7: spam; between: nothing. */
	count_verdict(h, "a@example.org", score_for_scl(4), 0, CATEGORY_RULE, CONTENT_NONE);
	count_verdict(h, "a@example.org", -3, 0, CATEGORY_RULE, CONTENT_NONE);
	count_verdict(h, "a@example.org", score_for_scl(6), 0, CATEGORY_RULE, CONTENT_NONE);
	count_verdict(h, "a@example.org", score_for_scl(7), 0, CATEGORY_RULE, CONTENT_NONE);
	/* Dampened below the spam SCL: still spam, the other engines decide. */
	count_verdict(h, "a@example.org", score_for_scl(9), -score_for_scl(9), CATEGORY_RULE, CONTENT_NONE);
	/* A virus, a reject: spam whatever the score; a deferred message comes back: nothing. */
	count_verdict(h, "a@example.org", 0, 0, CATEGORY_VIRUS, CONTENT_CLEAN);
	count_verdict(h, "a@example.org", 0, 0, CATEGORY_RULE, CONTENT_REJECT);
	count_verdict(h, "a@example.org", 0, 0, CATEGORY_RULE, CONTENT_DEFER);
	CHECK_INT(s->ops->get(s->be, "a@example.org", &c), 0);
	CHECK(near(c.ham, 2));
	CHECK(near(c.spam, 4));

	/* The null sender is not counted. */
	count_verdict(h, "", 0, 0, CATEGORY_RULE, CONTENT_NONE);
	CHECK_INT(s->ops->get(s->be, "", &c), 0);
	CHECK(c.ham == 0 && c.spam == 0);

	/* Options take effect at once. */
	{
		struct sender_history_options o = test_options;

		o.suspected_scl = 7;
		sender_history_set_options(h, &o);
		count_verdict(h, "a@example.org", score_for_scl(6), 0, CATEGORY_RULE, CONTENT_NONE);
		CHECK_INT(s->ops->get(s->be, "a@example.org", &c), 0);
		CHECK(near(c.ham, 3));
	}
	sender_history_free(h);

	s = open_store("history.db");
	CHECK_INT(s->ops->get(s->be, "a@example.org", &c), 0);
	CHECK(near(c.ham, 3) && near(c.spam, 4));
	history_store_close(s);
}

TEST(history_store_cache_eviction_keeps_counts)
{
	struct history_store *s = open_store("history.db");
	struct history_counts c;
	int64_t now = (int64_t)time(NULL);
	char key[64];

	/* More keys than the cache holds: counted ones survive eviction, in the file. */
	add_messages(s, "first@example.org", 2, 1, now);
	for (int i = 0; i < 210000; i++) {
		snprintf(key, sizeof(key), "sender%d@example.org", i);
		if (i % 1000 == 0)
			CHECK_INT(s->ops->add(s->be, key, 1, 0, now, test_options.half_life_seconds), 0);
		else
			CHECK_INT(s->ops->get(s->be, key, &c), 0);
	}
	CHECK_INT(s->ops->get(s->be, "first@example.org", &c), 0);
	CHECK(near(c.ham, 2) && near(c.spam, 1));
	CHECK_INT(s->ops->get(s->be, "sender1000@example.org", &c), 0);
	CHECK(near(c.ham, 1));
	history_store_close(s);
}
