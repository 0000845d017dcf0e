/*
 * The Bayesian filter: Robinson's f(w) and the Fisher combination against
 * hand-computed values, the score table, the SQLite store's round trip
 * and expiry, taking in another writer's learning (refresh), learning,
 * moving, forgetting, the duplicate guard, autolearn's per-domain limit
 * and the engine's result.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/bayes.h"
#include "content/mime.h"
#include "content/tokenize.h"
#include "store/bayes_store.h"
#include "unit.h"

#define CHECK_NEAR(a, b) CHECK(fabs((a) - (b)) < 1e-6)

static char *db_path(void)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/bayes.db", unit_tmpdir());
	return path;
}

static struct bayes_store *open_store(void)
{
	char err[256];
	struct bayes_store *s = bayes_store_open_sqlite(db_path(), err, sizeof(err));

	if (s == NULL)
		unit_fail(__FILE__, __LINE__, "open: %s", err);
	return s;
}

struct msg {
	char raw[2048];
	struct mime_message *mime;
};

static void msg_make(struct msg *m, const char *from, const char *subject, const char *body, int n)
{
	struct mime_limits limits;

	mime_global_init();
	mime_limits_default(&limits);
	snprintf(m->raw, sizeof(m->raw), "From: %s\r\nTo: u@example.com\r\nSubject: %s\r\n"
		 "Message-ID: <%d.%s>\r\n\r\n%s variant%d\r\n", from, subject, n, subject, body, n);
	m->mime = mime_parse((const unsigned char *)m->raw, strlen(m->raw), &limits, NULL);
}

static void msg_free(struct msg *m)
{
	mime_message_free(m->mime);
}

static enum bayes_learn_result learn(struct bayes *b, struct msg *m, bool spam, bool forget)
{
	return bayes_learn(b, m->mime, (const unsigned char *)m->raw, strlen(m->raw), spam, forget, 19000);
}

static const char *spam_body = "cheap viagra pills online pharmacy order now limited offer";
static const char *ham_body = "the meeting agenda for the project review is attached please comment";

/* Variants from..to-1 of a spam and a ham message of the two vocabularies. */
static void train_corpus(struct bayes *b, int from, int to)
{
	struct msg m;

	for (int i = from; i < to; i++) {
		msg_make(&m, "deals@spam.example", "cheap pills", spam_body, i);
		CHECK_INT(learn(b, &m, true, false), BAYES_LEARNED);
		msg_free(&m);
		msg_make(&m, "bob@work.example", "project review", ham_body, i);
		CHECK_INT(learn(b, &m, false, false), BAYES_LEARNED);
		msg_free(&m);
	}
}

TEST(bayes_robinson_token_probability)
{
	/* p = (3/10) / (3/10 + 1/10) = 0.75, n = 4: f = (0.5 + 4 * 0.75) / 5 = 0.7 */
	CHECK_NEAR(bayes_token_prob(3, 1, 10, 10), 0.7);
	/* p = 1, n = 1: f = (0.5 + 1) / 2 = 0.75 */
	CHECK_NEAR(bayes_token_prob(1, 0, 5, 5), 0.75);
	/* p = (2/20) / (2/20 + 2/5) = 0.2, n = 4: f = (0.5 + 0.8) / 5 = 0.26 */
	CHECK_NEAR(bayes_token_prob(2, 2, 20, 5), 0.26);
	CHECK_NEAR(bayes_token_prob(0, 0, 5, 5), 0.5);
}

TEST(bayes_fisher_combination)
{
	double one[] = { 0.9 }, two[] = { 0.9, 0.9 }, three[] = { 0.9, 0.2, 0.7 };

	/* C⁻¹(x, 2) = e^(−x/2); C⁻¹(4, 4) = e^−2 (1 + 2) */
	CHECK_NEAR(bayes_chi2q(2.0, 2), exp(-1.0));
	CHECK_NEAR(bayes_chi2q(4.0, 4), 0.4060058497);
	CHECK_NEAR(bayes_chi2q(0.0, 10), 1.0);
	/* One clue: Qh = 0.9, Qs = 0.1, P = (1 + 0.9 − 0.1) / 2 = 0.9 */
	CHECK_NEAR(bayes_combine(one, 1), 0.9);
	/* Qh = 0.81 (1 − ln 0.81), Qs = 0.01 (1 − ln 0.01): P = 0.9623161668 */
	CHECK_NEAR(bayes_combine(two, 2), 0.9623161668);
	CHECK_NEAR(bayes_combine(three, 3), 0.6884489285);
	CHECK_NEAR(bayes_combine(NULL, 0), 0.5);
}

TEST(bayes_score_table)
{
	const char *sym;

	CHECK_NEAR(bayes_score_of(0.999, &sym), 5.0);
	CHECK_STR(sym, "BAYES_SPAM");
	CHECK_NEAR(bayes_score_of(0.96, &sym), 5.0);
	CHECK_NEAR(bayes_score_of(0.90, &sym), 4.5);
	CHECK_NEAR(bayes_score_of(0.85, &sym), 3.0);
	CHECK_NEAR(bayes_score_of(0.70, &sym), 2.0);
	CHECK_STR(sym, "BAYES_SPAM");
	CHECK_NEAR(bayes_score_of(0.69, &sym), 0.0);
	CHECK_NEAR(bayes_score_of(0.5, &sym), 0.0);
	CHECK(sym == NULL);
	CHECK_NEAR(bayes_score_of(0.10, &sym), -1.0);
	CHECK_STR(sym, "BAYES_HAM");
	CHECK_NEAR(bayes_score_of(0.03, &sym), -2.0);
	CHECK_NEAR(bayes_score_of(0.0, &sym), -3.0);
}

TEST(bayes_store_sqlite_round_trip)
{
	struct bayes_store *s = open_store();
	uint64_t spam_tokens[] = { 11, 22, 33 }, ham_tokens[] = { 22, 33, 44 }, all[] = { 11, 22, 33, 44, 55 };
	unsigned char digest[BAYES_DIGEST_LEN] = { 1, 2, 3 };
	struct bayes_counts c[5];
	struct bayes_totals t;
	enum bayes_class cls;

	CHECK_INT(s->ops->train(s->be, spam_tokens, 3, BAYES_CLASS_SPAM, 1, 100), 0);
	CHECK_INT(s->ops->train(s->be, spam_tokens, 3, BAYES_CLASS_SPAM, 1, 100), 0);
	CHECK_INT(s->ops->train(s->be, ham_tokens, 3, BAYES_CLASS_HAM, 1, 101), 0);
	CHECK_INT(s->ops->seen_set(s->be, digest, BAYES_CLASS_SPAM), 0);
	bayes_store_close(s);

	s = open_store();
	s->ops->lookup(s->be, all, 5, c, &t);
	CHECK_INT(t.spam, 2);
	CHECK_INT(t.ham, 1);
	CHECK_INT(t.tokens, 4);
	CHECK_INT(c[0].spam, 2);
	CHECK_INT(c[0].ham, 0);
	CHECK_INT(c[1].spam, 2);
	CHECK_INT(c[1].ham, 1);
	CHECK_INT(c[3].spam, 0);
	CHECK_INT(c[3].ham, 1);
	CHECK_INT(c[4].spam + c[4].ham, 0);
	CHECK_INT(s->ops->seen_get(s->be, digest, &cls), 0);
	CHECK_INT(cls, BAYES_CLASS_SPAM);
	digest[0] = 9;
	CHECK_INT(s->ops->seen_get(s->be, digest, &cls), 0);
	CHECK_INT(cls, BAYES_CLASS_NONE);

	/* Unlearning below zero stays at zero; an emptied token disappears from the file. */
	CHECK_INT(s->ops->train(s->be, ham_tokens, 3, BAYES_CLASS_HAM, -1, 102), 0);
	CHECK_INT(s->ops->train(s->be, ham_tokens, 3, BAYES_CLASS_HAM, -1, 102), 0);
	bayes_store_close(s);
	s = open_store();
	s->ops->lookup(s->be, all, 5, c, &t);
	CHECK_INT(t.ham, 0);
	CHECK_INT(t.tokens, 3);
	CHECK_INT(c[1].ham, 0);
	CHECK_INT(c[3].spam + c[3].ham, 0);
	bayes_store_close(s);
}

TEST(bayes_store_deltas_from_two_writers_add_up)
{
	struct bayes_store *a = open_store(), *b = open_store();
	uint64_t tok[] = { 7 };
	struct bayes_counts c;
	struct bayes_totals t;

	a->ops->train(a->be, tok, 1, BAYES_CLASS_SPAM, 1, 100);
	b->ops->train(b->be, tok, 1, BAYES_CLASS_SPAM, 1, 100);
	CHECK_INT(a->ops->flush(a->be), 0);
	CHECK_INT(b->ops->flush(b->be), 0);
	bayes_store_close(a);
	bayes_store_close(b);
	a = open_store();
	a->ops->lookup(a->be, tok, 1, &c, &t);
	CHECK_INT(c.spam, 2);
	CHECK_INT(t.spam, 2);
	bayes_store_close(a);
}

/* Two stores on one file stand for the gateway and `postern learn`. */
TEST(bayes_store_refresh_sees_other_writer)
{
	struct bayes_store *gw = open_store(), *cli = open_store();
	uint64_t tok[] = { 5, 6 }, all[] = { 5, 6, 7 };
	unsigned char digest[BAYES_DIGEST_LEN] = { 7, 7 };
	struct bayes_counts c[3];
	struct bayes_totals t;
	enum bayes_class cls;

	CHECK_INT(gw->ops->refresh(gw->be), 0);
	CHECK_INT(cli->ops->train(cli->be, tok, 2, BAYES_CLASS_SPAM, 1, 100), 0);
	CHECK_INT(cli->ops->seen_set(cli->be, digest, BAYES_CLASS_SPAM), 0);
	/* Not committed yet: nothing to see. */
	CHECK_INT(gw->ops->refresh(gw->be), 0);
	CHECK_INT(cli->ops->flush(cli->be), 0);
	gw->ops->lookup(gw->be, all, 3, c, &t);
	CHECK_INT(t.spam, 0);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	gw->ops->lookup(gw->be, all, 3, c, &t);
	CHECK_INT(t.spam, 1);
	CHECK_INT(t.ham, 0);
	CHECK_INT(t.tokens, 2);
	CHECK_INT(c[0].spam, 1);
	CHECK_INT(c[1].spam, 1);
	CHECK_INT(c[2].spam + c[2].ham, 0);
	CHECK_INT(gw->ops->seen_get(gw->be, digest, &cls), 0);
	CHECK_INT(cls, BAYES_CLASS_SPAM);
	CHECK_INT(gw->ops->refresh(gw->be), 0);

	/* Our own commits do not call for a reload. */
	CHECK_INT(gw->ops->train(gw->be, all + 2, 1, BAYES_CLASS_HAM, 1, 100), 0);
	CHECK_INT(gw->ops->flush(gw->be), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 0);
	gw->ops->lookup(gw->be, all, 3, c, &t);
	CHECK_INT(c[2].ham, 1);
	CHECK_INT(t.ham, 1);

	/* Another process's expiry (here: unlearning to nothing) removes tokens from memory too. */
	CHECK_INT(cli->ops->train(cli->be, tok, 2, BAYES_CLASS_SPAM, -1, 100), 0);
	CHECK_INT(cli->ops->flush(cli->be), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	gw->ops->lookup(gw->be, all, 3, c, &t);
	CHECK_INT(c[0].spam + c[1].spam, 0);
	CHECK_INT(t.spam, 0);
	CHECK_INT(t.tokens, 1);
	bayes_store_close(cli);
	bayes_store_close(gw);
}

TEST(bayes_store_refresh_keeps_pending_changes)
{
	struct bayes_store *gw = open_store(), *cli = open_store();
	uint64_t tok[] = { 5 };
	struct bayes_counts c;
	struct bayes_totals t;

	/* Unwritten in the gateway, committed by the other: both count, once. */
	CHECK_INT(gw->ops->train(gw->be, tok, 1, BAYES_CLASS_HAM, 1, 100), 0);
	CHECK_INT(cli->ops->train(cli->be, tok, 1, BAYES_CLASS_SPAM, 1, 100), 0);
	CHECK_INT(cli->ops->flush(cli->be), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	gw->ops->lookup(gw->be, tok, 1, &c, &t);
	CHECK_INT(c.spam, 1);
	CHECK_INT(c.ham, 1);
	CHECK_INT(t.spam, 1);
	CHECK_INT(t.ham, 1);
	CHECK_INT(gw->ops->refresh(gw->be), 0);
	bayes_store_close(gw);
	bayes_store_close(cli);

	gw = open_store();
	gw->ops->lookup(gw->be, tok, 1, &c, &t);
	CHECK_INT(c.spam, 1);
	CHECK_INT(c.ham, 1);
	CHECK_INT(t.spam, 1);
	CHECK_INT(t.ham, 1);
	bayes_store_close(gw);
}

#define STRESS_GW_TRAINS 1500
#define STRESS_CLI_TRAINS 300

struct stress_writer {
	struct bayes_store *s;
	int trains;
	int flush_every;
	enum bayes_class cls;
	atomic_int *running;
};

/* Learn into one store, flushing now and then (also while the other thread reloads). */
static void *stress_train(void *arg)
{
	struct stress_writer *w = arg;
	uint64_t tok[8];

	for (int i = 0; i < w->trains; i++) {
		for (int k = 0; k < 8; k++)
			tok[k] = 1 + (uint64_t)((i * 7 + k * 13) % 64);
		w->s->ops->train(w->s->be, tok, 8, w->cls, 1, 100);
		if (i % w->flush_every == 0)
			w->s->ops->flush(w->s->be);
	}
	atomic_fetch_sub(w->running, 1);
	return NULL;
}

/*
 * Reloads racing with learning on both sides: once everyone has written,
 * the gateway's memory equals a fresh read of the file, and its own
 * commits do not call for a reload any more.
 */
TEST(bayes_store_refresh_races_with_learning)
{
	struct bayes_store *gw = open_store(), *cli = open_store(), *fresh;
	atomic_int running = 2;
	struct stress_writer wg = { gw, STRESS_GW_TRAINS, 97, BAYES_CLASS_SPAM, &running };
	struct stress_writer wc = { cli, STRESS_CLI_TRAINS, 10, BAYES_CLASS_HAM, &running };
	uint64_t all[64];
	struct bayes_counts a[64], b[64];
	struct bayes_totals ta, tb;
	pthread_t tg, tc;
	int reloads = 0;

	for (int k = 0; k < 64; k++)
		all[k] = 1 + (uint64_t)k;
	CHECK_INT(pthread_create(&tg, NULL, stress_train, &wg), 0);
	CHECK_INT(pthread_create(&tc, NULL, stress_train, &wc), 0);
	while (atomic_load(&running) > 0) {
		int rc = gw->ops->refresh(gw->be);

		CHECK(rc >= 0);
		reloads += rc;
	}
	pthread_join(tg, NULL);
	pthread_join(tc, NULL);
	/* The writers may finish before the first look: the last writes still call for one reload. */
	CHECK_INT(cli->ops->flush(cli->be), 0);
	reloads += gw->ops->refresh(gw->be);
	CHECK(reloads > 0);
	CHECK_INT(gw->ops->flush(gw->be), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 0);
	gw->ops->lookup(gw->be, all, 64, a, &ta);
	CHECK_INT(ta.spam, STRESS_GW_TRAINS);
	CHECK_INT(ta.ham, STRESS_CLI_TRAINS);
	fresh = open_store();
	fresh->ops->lookup(fresh->be, all, 64, b, &tb);
	CHECK_INT(tb.spam, STRESS_GW_TRAINS);
	CHECK_INT(tb.ham, STRESS_CLI_TRAINS);
	CHECK_INT(ta.tokens, tb.tokens);
	for (int k = 0; k < 64; k++) {
		CHECK_INT(a[k].spam, b[k].spam);
		CHECK_INT(a[k].ham, b[k].ham);
	}
	bayes_store_close(fresh);
	bayes_store_close(cli);
	bayes_store_close(gw);
}

TEST(bayes_refresh_classifies_with_other_learning)
{
	struct bayes *gw = bayes_new(open_store(), NULL), *cli = bayes_new(open_store(), NULL);
	struct bayes_verdict v;
	struct msg m;

	train_corpus(cli, 0, 6);
	CHECK_INT(bayes_store_of(cli)->ops->flush(bayes_store_of(cli)->be), 0);
	msg_make(&m, "deals@spam.example", "cheap pills", spam_body, 99);
	bayes_classify(gw, m.mime, (const unsigned char *)m.raw, strlen(m.raw), &v);
	CHECK(!v.trained);
	CHECK_INT(bayes_refresh(gw), 1);
	CHECK_INT(bayes_refresh(gw), 0);
	bayes_classify(gw, m.mime, (const unsigned char *)m.raw, strlen(m.raw), &v);
	CHECK(v.trained);
	CHECK(v.prob > 0.95);
	/* The digests another process learned guard against learning twice here. */
	CHECK_INT(learn(gw, &m, true, false), BAYES_LEARNED);
	msg_free(&m);
	msg_make(&m, "deals@spam.example", "cheap pills", spam_body, 0);
	CHECK_INT(learn(gw, &m, true, false), BAYES_ALREADY);
	msg_free(&m);
	bayes_free(cli);
	bayes_free(gw);
}

TEST(bayes_store_expiry)
{
	struct bayes_store *s = open_store();
	uint64_t old_rare[] = { 1 }, old_common[] = { 2 }, recent[] = { 3 }, all[] = { 1, 2, 3 };
	struct bayes_counts c[3];
	struct bayes_totals t;

	s->ops->train(s->be, old_rare, 1, BAYES_CLASS_SPAM, 1, 100);
	for (int i = 0; i < 5; i++)
		s->ops->train(s->be, old_common, 1, BAYES_CLASS_HAM, 1, 100);
	s->ops->train(s->be, recent, 1, BAYES_CLASS_SPAM, 1, 195);
	CHECK_INT(s->ops->expire(s->be, 200, 30, 2), 1);
	s->ops->lookup(s->be, all, 3, c, &t);
	CHECK_INT(c[0].spam, 0);
	CHECK_INT(c[1].ham, 5);
	CHECK_INT(c[2].spam, 1);
	CHECK_INT(t.tokens, 2);
	bayes_store_close(s);
	s = open_store();
	s->ops->lookup(s->be, all, 3, c, &t);
	CHECK_INT(c[0].spam, 0);
	CHECK_INT(c[1].ham, 5);
	CHECK_INT(t.tokens, 2);
	bayes_store_close(s);
}

TEST(bayes_learn_duplicate_move_and_forget)
{
	struct bayes *b = bayes_new(open_store(), NULL);
	struct bayes_store *s = bayes_store_of(b);
	struct bayes_totals t;
	struct msg m;

	msg_make(&m, "x@spam.example", "cheap pills", spam_body, 1);
	CHECK_INT(learn(b, &m, true, false), BAYES_LEARNED);
	CHECK_INT(learn(b, &m, true, false), BAYES_ALREADY);
	s->ops->lookup(s->be, NULL, 0, NULL, &t);
	CHECK_INT(t.spam, 1);
	CHECK_INT(learn(b, &m, false, false), BAYES_RELEARNED);
	s->ops->lookup(s->be, NULL, 0, NULL, &t);
	CHECK_INT(t.spam, 0);
	CHECK_INT(t.ham, 1);
	CHECK_INT(learn(b, &m, true, true), BAYES_NOT_LEARNED);
	CHECK_INT(learn(b, &m, false, true), BAYES_FORGOTTEN);
	CHECK_INT(learn(b, &m, false, true), BAYES_NOT_LEARNED);
	s->ops->lookup(s->be, NULL, 0, NULL, &t);
	CHECK_INT(t.spam + t.ham, 0);
	CHECK_INT(t.tokens, 0);
	/* Forgotten, it can be learned again. */
	CHECK_INT(learn(b, &m, true, false), BAYES_LEARNED);
	msg_free(&m);
	bayes_free(b);

	/* The guard survives a restart. */
	b = bayes_new(open_store(), NULL);
	msg_make(&m, "x@spam.example", "cheap pills", spam_body, 1);
	CHECK_INT(learn(b, &m, true, false), BAYES_ALREADY);
	msg_free(&m);
	bayes_free(b);
}

TEST(bayes_classifies_after_training)
{
	struct bayes *b = bayes_new(open_store(), NULL);
	struct bayes_verdict v;
	struct msg m;

	train_corpus(b, 0, 4);
	msg_make(&m, "deals@spam.example", "cheap pills", spam_body, 99);
	bayes_classify(b, m.mime, (const unsigned char *)m.raw, strlen(m.raw), &v);
	CHECK(!v.trained);                 /* 4 of each: below the minimum */
	CHECK_NEAR(v.prob, 0.5);
	msg_free(&m);

	train_corpus(b, 4, 6);
	msg_make(&m, "other@elsewhere.example", "pills offer", "order cheap viagra now from our pharmacy", 99);
	bayes_classify(b, m.mime, (const unsigned char *)m.raw, strlen(m.raw), &v);
	CHECK(v.trained);
	CHECK(v.prob > 0.95);
	CHECK(v.nclues > 0 && v.nclues <= BAYES_MAX_CLUES);
	msg_free(&m);
	msg_make(&m, "carol@work.example", "agenda", "please comment on the project meeting agenda", 99);
	bayes_classify(b, m.mime, (const unsigned char *)m.raw, strlen(m.raw), &v);
	CHECK(v.trained);
	CHECK(v.prob < 0.05);
	msg_free(&m);
	bayes_free(b);
}

TEST(bayes_engine_result)
{
	struct bayes *b = bayes_new(open_store(), NULL);
	struct content_engine *e = bayes_content_engine(b);
	struct engine_results res = { 0 };
	struct content_message cm = { 0 };
	struct msg m;

	train_corpus(b, 0, 6);
	msg_make(&m, "deals@spam.example", "cheap pills", spam_body, 99);
	cm.raw = (const unsigned char *)m.raw;
	cm.raw_len = strlen(m.raw);
	cm.mime = m.mime;
	e->check(e->state, &cm, &res);
	CHECK_INT(res.count, 1);
	CHECK_STR(res.items[0].engine, "bayes");
	CHECK_STR(res.items[0].symbol, "BAYES_SPAM");
	CHECK(res.items[0].score >= 2.0);
	CHECK(res.items[0].category == CATEGORY_SPAM);
	CHECK(strncmp(res.items[0].reason, "spam probability ", 17) == 0);
	CHECK(strtod(res.items[0].reason + 17, NULL) >= BAYES_SPAM_THRESHOLD);
	engine_results_free(&res);
	msg_free(&m);
	free(e);
	bayes_free(b);
}

TEST(bayes_autolearn_guards)
{
	struct bayes_options o;
	struct bayes *b;
	struct content_message cm = { 0 };
	struct msg m[4];
	struct bayes_totals t;

	bayes_options_default(&o);
	o.autolearn_per_domain_hour = 2;
	b = bayes_new(open_store(), &o);
	for (int i = 0; i < 4; i++)
		msg_make(&m[i], i < 3 ? "a@flood.example" : "b@other.example", "buy", spam_body, i);
	for (int i = 0; i < 4; i++) {
		cm.raw = (const unsigned char *)m[i].raw;
		cm.raw_len = strlen(m[i].raw);
		cm.mime = m[i].mime;
		CHECK_INT(bayes_autolearn(b, &cm, true, "test"), i == 2 ? BAYES_REFUSED : BAYES_LEARNED);
	}
	/* The same message never twice, whatever class is asked. */
	CHECK_INT(bayes_autolearn(b, &cm, false, "test"), BAYES_REFUSED);
	bayes_store_of(b)->ops->lookup(bayes_store_of(b)->be, NULL, 0, NULL, &t);
	CHECK_INT(t.spam, 3);
	CHECK_INT(t.ham, 0);
	for (int i = 0; i < 4; i++)
		msg_free(&m[i]);
	bayes_free(b);
}
