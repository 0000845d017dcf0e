#include "unit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content/engine.h"
#include "content/fuzzy.h"
#include "content/mime.h"
#include "store/fuzzy_store.h"

#define CORPUS "/work/shared/corpus/mail/"

/* About 150 words of a typical spam run; %s is the greeting name, %d an order number. */
static const char spam_body[] =
	"Dear %s,\r\n\r\n"
	"We are pleased to inform you that your email address has been selected as one of the lucky winners "
	"of our international online lottery programme held this month in Amsterdam. Your ticket number %d "
	"drew the winning combination and you are therefore entitled to a lump sum payout in cash.\r\n\r\n"
	"To begin the claim process please contact our fiduciary agent with your full name, address, "
	"telephone number and a copy of your passport. All winnings must be claimed within fourteen days "
	"of this notice, after which unclaimed funds will be returned to the treasury of the foundation.\r\n\r\n"
	"Due to mix ups of some numbers and names we ask that you keep this award strictly confidential "
	"until your claim has been processed and the money remitted to your nominated bank account. This "
	"is part of our security protocol to avoid double claiming and unwarranted abuse of the programme "
	"by some participants.\r\n\r\n"
	"Congratulations once again from all members of our staff and thank you for being part of our "
	"promotional programme.\r\n%s"
	"Yours faithfully,\r\nMrs Maria van der Berg\r\nLottery Coordinator\r\n";

static struct mime_message *parse_raw(const char *raw, size_t len)
{
	struct mime_limits l;

	mime_global_init();
	mime_limits_default(&l);
	return mime_parse((const unsigned char *)raw, len, &l, NULL);
}

static struct mime_message *parse(const char *raw)
{
	return parse_raw(raw, strlen(raw));
}

/* The lottery spam with this name, order number and extra line. */
static struct mime_message *lottery(const char *name, int number, const char *extra)
{
	char body[4096], raw[4600];
	struct mime_message *m;

	snprintf(body, sizeof(body), spam_body, name, number, extra);
	snprintf(raw, sizeof(raw), "From: lottery@example.net\r\nSubject: Winning notification\r\n\r\n%s", body);
	m = parse(raw);
	CHECK(m != NULL);
	return m;
}

static bool signature_of(struct mime_message *m, struct fuzzy_signature *sig)
{
	bool ok = fuzzy_signature_of(m, 20, sig);

	mime_message_free(m);
	return ok;
}

static bool signature_of_raw(const char *raw, struct fuzzy_signature *sig)
{
	return signature_of(parse(raw), sig);
}

static bool signature_of_file(const char *path, struct fuzzy_signature *sig)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;
	bool ok;

	if (f == NULL)
		return false;
	buf = malloc(1 << 20);
	n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	ok = signature_of(parse_raw(buf, n), sig);
	free(buf);
	return ok;
}

static void options_default(struct fuzzy_options *o)
{
	o->threshold_percent = 60;
	o->score = 10.0;
	o->min_words = 20;
	o->learn_scl = 8;
	o->expire_seconds = 30 * 86400;
}

static char *db_path(void)
{
	char *path;

	if (asprintf(&path, "%s/fuzzy.db", unit_tmpdir()) < 0)
		abort();
	return path;
}

static struct fuzzy_store *open_store(void)
{
	char *path = db_path(), err[512] = "";
	struct fuzzy_store *s = fuzzy_store_open_sqlite(path, err, sizeof(err));

	if (s == NULL)
		fprintf(stderr, "%s\n", err);
	CHECK(s != NULL);
	free(path);
	return s;
}

static long store_count(const struct fuzzy_store *s)
{
	return s->ops->count(s->be);
}

/* Run the engine over m; the number of results, the first copied to *r. */
static size_t run_engine(struct fuzzy *f, struct mime_message *m, struct engine_result *r)
{
	struct content_engine *e = fuzzy_content_engine(f);
	struct engine_results out = { 0 };
	struct content_message msg = { 0 };
	size_t n;

	msg.mime = m;
	e->check(e->state, &msg, &out);
	n = out.count;
	if (n > 0)
		*r = out.items[0];
	engine_results_free(&out);
	CHECK(e->free == NULL);
	free(e);
	return n;
}

TEST(fuzzy_identical_texts)
{
	struct fuzzy_signature a, b;

	CHECK(signature_of(lottery("John", 1234, ""), &a));
	CHECK(signature_of(lottery("John", 1234, ""), &b));
	CHECK(fuzzy_similarity(&a, &b) == 1.0);
	CHECK(a.nwords > 100);

	/* Case, punctuation, invisible characters and markup do not matter. */
	CHECK(signature_of_raw("Subject: Hello\r\n\r\none two three four five six seven eight nine ten eleven twelve "
			       "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty\r\n", &a));
	CHECK(signature_of_raw("Subject: HELLO!\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
			       "<p>One, two -- three; <b>four</b> five six seven eight nine ten\r\n"
			       "<i>elev\xc2\xad""en</i> twe\xe2\x80\x8blve thirteen fourteen fifteen sixteen seventeen "
			       "eighteen nineteen twenty.</p>\r\n", &b));
	CHECK(fuzzy_similarity(&a, &b) == 1.0);
}

TEST(fuzzy_near_duplicates)
{
	struct fuzzy_signature a, b;

	CHECK(signature_of(lottery("John", 1234, ""), &a));
	CHECK(signature_of(lottery("Alexandra", 1234, ""), &b));
	CHECK(fuzzy_similarity(&a, &b) >= 0.6);
	CHECK(signature_of(lottery("John", 987654, ""), &b));
	CHECK(fuzzy_similarity(&a, &b) == 1.0);
	CHECK(signature_of(lottery("John", 1234, "Call us today on our free hotline, lines are open around the clock.\r\n"),
			   &b));
	CHECK(fuzzy_similarity(&a, &b) >= 0.6);
	CHECK(signature_of(lottery("Petra", 55, "Reference: claim desk four, batch seven.\r\n"), &b));
	CHECK(fuzzy_similarity(&a, &b) >= 0.6);
}

#define LIST_FOOTER \
	"\r\n-------------------------------------------------------\r\n" \
	"This sf.net email is sponsored by: OSDN - Tired of that same old\r\n" \
	"cell phone?  Get a new here for FREE!\r\n" \
	"https://www.inphonic.com/r.asp?r=sourceforge1&refcode1=vs3390\r\n" \
	"_______________________________________________\r\n" \
	"Spamassassin-talk mailing list\r\n" \
	"Spamassassin-talk@lists.sourceforge.net\r\n" \
	"https://lists.sourceforge.net/lists/listinfo/spamassassin-talk\r\n"

TEST(fuzzy_list_footers_ignored)
{
	struct fuzzy_signature a, b;
	struct mime_message *m;

	/* Two short, unrelated messages to one list share only its (stacked) footers. */
	CHECK(signature_of_raw("Subject: re: rules\r\n\r\nsorry for the dupe, I thought the com address would bounce "
			       "so I sent it twice, my bad\r\n" LIST_FOOTER, &a));
	CHECK(signature_of_raw("Subject: GREEN CARD\r\n\r\nwin a green card in the official lottery, apply online with "
			       "our agency and start a new life in the united states of america today before the "
			       "deadline passes\r\n" LIST_FOOTER, &b));
	CHECK(fuzzy_similarity(&a, &b) < 0.3);
	CHECK(signature_of_raw("Subject: GREEN CARD\r\n\r\nwin a green card in the official lottery, apply online with "
			       "our agency and start a new life in the united states of america today before the "
			       "deadline passes\r\n", &a));
	CHECK(fuzzy_similarity(&a, &b) == 1.0);

	/* A ruler far from the end is text, not a footer. */
	m = lottery("John", 1234, "______________________________\r\n");
	CHECK(fuzzy_signature_of(m, 20, &a));
	CHECK(a.nwords > 100);
	mime_message_free(m);
}

TEST(fuzzy_unrelated_corpus_messages)
{
	static const char *const files[] = {
		CORPUS "ham/00001.7c53336b37003a9286aba55d2945844c",
		CORPUS "ham/00500.eb1460f32ec4693ed36e356f0401c8e1",
		CORPUS "ham/01000.bd0b18ad8256a7cb29f5508a20cd19ba",
		CORPUS "ham/02000.b361c999f4744dbbdcc4b63f9136c0ec",
		CORPUS "spam/00001.7848dde101aa985090474a91ec93fcf0",
		CORPUS "spam/00002.d94f1b97e48ed3b553b3508d116e6a09",
		CORPUS "spam/00100.81611d62ec1f172be947fda4af7caa2c",
		CORPUS "spam/00300.834f370a21ca4f1774d5724b5443411c",
	};
	/* Chosen to be unrelated: spam 00002 and 00003, for one, are copies of one run and agree 72 %. */
	struct fuzzy_signature sigs[sizeof(files) / sizeof(files[0])], lot;
	bool have[sizeof(files) / sizeof(files[0])];
	size_t n = sizeof(files) / sizeof(files[0]);

	CHECK(signature_of(lottery("John", 1234, ""), &lot));
	for (size_t i = 0; i < n; i++) {
		have[i] = signature_of_file(files[i], &sigs[i]);
		if (!have[i])
			fprintf(stderr, "skipped (missing or short): %s\n", files[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (!have[i])
			continue;
		CHECK(fuzzy_similarity(&sigs[i], &lot) < 0.3);
		for (size_t j = i + 1; j < n; j++) {
			if (have[j] && fuzzy_similarity(&sigs[i], &sigs[j]) >= 0.3)
				unit_fail(__FILE__, __LINE__, "%s and %s: similarity %.2f", files[i], files[j],
					  fuzzy_similarity(&sigs[i], &sigs[j]));
		}
	}
}

TEST(fuzzy_short_text_has_no_signature)
{
	struct fuzzy_signature sig;
	struct mime_message *m;

	/* 19 words count; numbers, over-long words and attachments do not. */
	m = parse("Subject: one two three\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		  "Content-Type: text/plain\r\n\r\nfour five 12345 six seven eight nine ten eleven twelve "
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa thirteen fourteen fifteen sixteen seventeen eighteen "
		  "nineteen 2024\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
		  "filename=a.txt\r\n\r\nmany more words in an attachment that are not part of the text\r\n--b--\r\n");
	CHECK(!fuzzy_signature_of(m, 20, &sig));
	CHECK_INT(sig.nwords, 19);
	CHECK(fuzzy_signature_of(m, 19, &sig));
	mime_message_free(m);
	m = parse("Subject: x\r\n\r\n\r\n");
	CHECK(!fuzzy_signature_of(m, 0, &sig));
	CHECK_INT(sig.nwords, 1);
	mime_message_free(m);
}

TEST(fuzzy_store_round_trip)
{
	struct fuzzy_store *s = open_store();
	struct fuzzy_signature a, b;
	struct fuzzy_match match;
	int64_t id_a, id_b;

	CHECK(signature_of(lottery("John", 1, ""), &a));
	CHECK(signature_of_raw("Subject: a different text altogether\r\n\r\nthe quick brown fox jumps over the lazy dog "
			       "while the cat watches from the warm windowsill of the old farmhouse kitchen\r\n", &b));
	CHECK_INT(s->ops->add(s->be, a.h, 1000, &id_a), 0);
	CHECK_INT(s->ops->add(s->be, b.h, 2000, &id_b), 0);
	CHECK(id_a > 0 && id_b > id_a);
	CHECK_INT(s->ops->touch(s->be, id_a, 3000), 0);
	CHECK_INT(store_count(s), 2);
	fuzzy_store_close(s);

	s = open_store();
	CHECK_INT(store_count(s), 2);
	CHECK_INT(s->ops->lookup(s->be, a.h, &match), 0);
	CHECK_INT(match.id, id_a);
	CHECK_INT(match.agree, FUZZY_HASHES);
	CHECK_INT(match.hits, 2);
	CHECK_INT(match.last_seen, 3000);
	CHECK_INT(s->ops->lookup(s->be, b.h, &match), 0);
	CHECK_INT(match.id, id_b);
	CHECK_INT(match.hits, 1);
	CHECK_INT(match.last_seen, 2000);
	CHECK_INT(s->ops->remove(s->be, id_b), 0);
	CHECK_INT(s->ops->lookup(s->be, b.h, &match), 0);
	CHECK_INT(match.id, 0);
	fuzzy_store_close(s);

	s = open_store();
	CHECK_INT(store_count(s), 1);
	fuzzy_store_close(s);
}

TEST(fuzzy_learn_then_engine_hit)
{
	struct fuzzy_options o;
	struct fuzzy_store *s = open_store();
	struct fuzzy *f;
	struct engine_result r;
	struct mime_message *m;
	struct fuzzy_match match;
	struct fuzzy_signature sig;

	options_default(&o);
	f = fuzzy_new(s, &o);
	m = lottery("John", 1234, "");
	CHECK_INT(run_engine(f, m, &r), 0);
	CHECK_INT(fuzzy_learn(f, m), 1);
	CHECK_INT(run_engine(f, m, &r), 1);
	CHECK_STR(r.engine, "fuzzy");
	CHECK_STR(r.symbol, "FUZZY_SPAM");
	CHECK_INT(r.category, CATEGORY_SPAM);
	CHECK(fabs(r.score - 10.0) < 1e-9);
	CHECK_STR(r.reason, "near-duplicate of known spam (agree 32/32, seen 1 times)");
	mime_message_free(m);

	/* A variant scores between half and all of the score, and learning it counts a sighting. */
	m = lottery("Alexandra", 77, "Call us today on our free hotline, lines are open around the clock.\r\n");
	CHECK_INT(run_engine(f, m, &r), 1);
	CHECK(r.score >= 5.0 && r.score < 10.0);
	CHECK_INT(fuzzy_learn(f, m), 1);
	CHECK(fuzzy_signature_of(m, 20, &sig));
	mime_message_free(m);
	CHECK_INT(s->ops->count(s->be), 1);
	m = lottery("John", 1234, "");
	CHECK_INT(run_engine(f, m, &r), 1);
	CHECK(strstr(r.reason, "seen 2 times") != NULL);
	mime_message_free(m);

	/* Unrelated and short texts: no result; a short text is not learned. */
	m = parse("Subject: lunch\r\n\r\nShall we meet for lunch on Thursday at the usual place near the office, "
		  "or would you rather try the new Thai restaurant across the street from the station?\r\n");
	CHECK_INT(run_engine(f, m, &r), 0);
	mime_message_free(m);
	m = parse("Subject: hi\r\n\r\nsee you soon\r\n");
	CHECK_INT(fuzzy_learn(f, m), 0);
	mime_message_free(m);

	/* A higher threshold stops the variant matching; the store is untouched by options. */
	o.threshold_percent = 100;
	fuzzy_set_options(f, &o);
	CHECK_INT(s->ops->lookup(s->be, sig.h, &match), 0);
	CHECK(match.agree < FUZZY_HASHES);
	m = lottery("Alexandra", 77, "Call us today on our free hotline, lines are open around the clock.\r\n");
	CHECK_INT(run_engine(f, m, &r), 0);
	mime_message_free(m);
	fuzzy_free(f);
}

TEST(fuzzy_forget_removes_matches)
{
	struct fuzzy_options o;
	struct fuzzy_store *s = open_store();
	struct fuzzy *f;
	struct engine_result r;
	struct mime_message *m;
	struct fuzzy_signature sig;
	int64_t id;

	options_default(&o);
	f = fuzzy_new(s, &o);
	m = lottery("John", 1234, "");
	CHECK_INT(fuzzy_learn(f, m), 1);
	/* A second, slightly different copy stored on its own also matches above the threshold. */
	CHECK(signature_of(lottery("Alexandra", 1234, ""), &sig));
	CHECK_INT(s->ops->add(s->be, sig.h, (int64_t)time(NULL), &id), 0);
	CHECK_INT(s->ops->count(s->be), 2);
	CHECK_INT(fuzzy_forget(f, m), 2);
	CHECK_INT(s->ops->count(s->be), 0);
	CHECK_INT(run_engine(f, m, &r), 0);
	CHECK_INT(fuzzy_forget(f, m), 0);
	mime_message_free(m);
	fuzzy_free(f);
}

TEST(fuzzy_expire_drops_old_entries)
{
	struct fuzzy_options o;
	struct fuzzy_store *s = open_store();
	struct fuzzy *f;
	struct fuzzy_signature old, recent;
	struct fuzzy_match match;
	struct mime_message *m;
	int64_t id, now = (int64_t)time(NULL);

	CHECK(signature_of(lottery("John", 1, ""), &old));
	CHECK(signature_of_raw("Subject: a different text altogether\r\n\r\nthe quick brown fox jumps over the lazy dog "
			       "while the cat watches from the warm windowsill of the old farmhouse kitchen\r\n",
			       &recent));
	CHECK_INT(s->ops->add(s->be, old.h, now - 100, &id), 0);
	CHECK_INT(s->ops->add(s->be, recent.h, now - 10, &id), 0);
	CHECK_INT(s->ops->expire(s->be, now - 50), 1);
	CHECK_INT(s->ops->lookup(s->be, old.h, &match), 0);
	CHECK_INT(match.id, 0);
	CHECK_INT(s->ops->lookup(s->be, recent.h, &match), 0);
	CHECK_INT(match.id, id);
	CHECK_INT(s->ops->add(s->be, old.h, now - 100, &id), 0);

	/* Learning runs the expiry (its first time at once): the entry last seen 100 s ago goes. */
	options_default(&o);
	o.expire_seconds = 50;
	f = fuzzy_new(s, &o);
	m = parse("Subject: something new\r\n\r\nan entirely new spam text about cheap watches and replica handbags "
		  "shipped worldwide with free delivery and a money back guarantee for every order\r\n");
	CHECK_INT(fuzzy_learn(f, m), 1);
	mime_message_free(m);
	CHECK_INT(s->ops->count(s->be), 2);
	CHECK_INT(s->ops->lookup(s->be, old.h, &match), 0);
	CHECK_INT(match.id, 0);
	fuzzy_free(f);

	s = open_store();
	CHECK_INT(store_count(s), 2);
	fuzzy_store_close(s);
}

TEST(fuzzy_after_verdict_learns_spam_only)
{
	struct fuzzy_options o;
	struct fuzzy_store *s = open_store();
	struct fuzzy *f;
	struct engine_results results = { 0 };
	struct mime_message *m = lottery("John", 1234, "");
	struct fuzzy_match match;
	struct fuzzy_signature sig;

	options_default(&o);
	f = fuzzy_new(s, &o);
	CHECK(fuzzy_signature_of(m, 20, &sig));

	/* Only its own score: not learned (it would feed on itself). */
	engine_results_add(&results, "fuzzy", "FUZZY_SPAM")->score = 100.0;
	engine_results_add(&results, "bayes", "BAYES_SPAM")->score = 3.0;
	fuzzy_after_verdict(f, m, &results, "Q1");
	CHECK_INT(s->ops->count(s->be), 0);

	engine_results_add(&results, "rules", "RULE_X")->score = 12.0;
	fuzzy_after_verdict(f, m, &results, "Q2");
	CHECK_INT(s->ops->count(s->be), 1);
	fuzzy_after_verdict(f, m, &results, "Q3");
	CHECK_INT(s->ops->count(s->be), 1);
	CHECK_INT(s->ops->lookup(s->be, sig.h, &match), 0);
	CHECK_INT(match.hits, 2);

	/* learn_scl 10 never learns. */
	o.learn_scl = 10;
	fuzzy_set_options(f, &o);
	engine_results_add(&results, "rules", "RULE_Y")->score = 100.0;
	fuzzy_after_verdict(f, m, &results, "Q4");
	CHECK_INT(s->ops->lookup(s->be, sig.h, &match), 0);
	CHECK_INT(match.hits, 2);
	engine_results_free(&results);
	mime_message_free(m);
	fuzzy_free(f);
}

static uint64_t xorshift(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

TEST(fuzzy_band_index_finds_near_duplicate)
{
	struct fuzzy_store *s = open_store();
	uint64_t rng = 0x1234567887654321ULL, h[FUZZY_HASHES], target[FUZZY_HASHES];
	struct fuzzy_match match;
	int64_t id, target_id = 0;

	for (int i = 0; i < 10000; i++) {
		for (unsigned j = 0; j < FUZZY_HASHES; j++)
			h[j] = xorshift(&rng);
		CHECK_INT(s->ops->add(s->be, h, 1000 + i, &id), 0);
		if (i == 5000) {
			memcpy(target, h, sizeof(h));
			target_id = id;
		}
	}
	CHECK_INT(store_count(s), 10000);
	/* 12 of 32 positions changed (bands 0-2), the other 5 bands intact: 20/32 = 62 %. */
	for (unsigned j = 0; j < 12; j++)
		target[j] = xorshift(&rng);
	CHECK_INT(s->ops->lookup(s->be, target, &match), 0);
	CHECK_INT(match.id, target_id);
	CHECK_INT(match.agree, 20);
	CHECK_INT(match.last_seen, 6000);

	/* A signature sharing no band finds nothing. */
	for (unsigned j = 0; j < FUZZY_HASHES; j++)
		h[j] = xorshift(&rng);
	CHECK_INT(s->ops->lookup(s->be, h, &match), 0);
	CHECK_INT(match.id, 0);

	/* Survives a reopen. */
	fuzzy_store_close(s);
	s = open_store();
	CHECK_INT(s->ops->lookup(s->be, target, &match), 0);
	CHECK_INT(match.id, target_id);
	fuzzy_store_close(s);
}

/* Random signatures: unrelated to each other, so each is found only by itself. */
static void random_signature(uint64_t *rng, uint64_t h[FUZZY_HASHES])
{
	for (unsigned j = 0; j < FUZZY_HASHES; j++)
		h[j] = xorshift(rng);
}

static int64_t lookup_id(struct fuzzy_store *s, const uint64_t h[FUZZY_HASHES], uint32_t *hits)
{
	struct fuzzy_match match;

	CHECK_INT(s->ops->lookup(s->be, h, &match), 0);
	if (hits != NULL)
		*hits = match.hits;
	return match.agree == FUZZY_HASHES ? match.id : 0;
}

TEST(fuzzy_refresh_sees_other_writers)
{
	struct fuzzy_store *gw = open_store(), *cli = open_store();
	uint64_t rng = 0x0badc0ffee0ddf00dULL, a[FUZZY_HASHES], b[FUZZY_HASHES], c[FUZZY_HASHES], d[FUZZY_HASHES];
	int64_t id_a, id_b, id_c, id_d;
	uint32_t hits;

	random_signature(&rng, a);
	random_signature(&rng, b);
	random_signature(&rng, c);
	random_signature(&rng, d);
	CHECK_INT(gw->ops->refresh(gw->be), 0);

	/* Our own writes never prompt a reload. */
	CHECK_INT(gw->ops->add(gw->be, a, 1000, &id_a), 0);
	CHECK_INT(gw->ops->touch(gw->be, id_a, 1500), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 0);

	/* Another connection's add is seen after a refresh, once. */
	CHECK_INT(cli->ops->add(cli->be, b, 2000, &id_b), 0);
	CHECK(id_b > id_a);
	CHECK_INT(lookup_id(gw, b, NULL), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	CHECK_INT(lookup_id(gw, b, NULL), id_b);
	CHECK_INT(lookup_id(gw, a, &hits), id_a);
	CHECK_INT(hits, 2);
	CHECK_INT(store_count(gw), 2);
	CHECK_INT(gw->ops->refresh(gw->be), 0);

	/* Its touch and its removal of entries it never had in memory. */
	CHECK_INT(cli->ops->touch(cli->be, id_a, 3000), 0);
	CHECK_INT(cli->ops->remove(cli->be, id_b), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	CHECK_INT(lookup_id(gw, a, &hits), id_a);
	CHECK_INT(hits, 3);
	CHECK_INT(lookup_id(gw, b, NULL), 0);
	CHECK_INT(store_count(gw), 1);

	/* Adds on both sides before a refresh: ours keeps working, theirs arrives, ids stay ordered. */
	CHECK_INT(cli->ops->add(cli->be, c, 4000, &id_c), 0);
	CHECK_INT(gw->ops->add(gw->be, d, 4000, &id_d), 0);
	CHECK(id_d > id_c);
	CHECK_INT(lookup_id(gw, d, NULL), id_d);
	CHECK_INT(gw->ops->refresh(gw->be), 1);
	CHECK_INT(lookup_id(gw, c, NULL), id_c);
	CHECK_INT(lookup_id(gw, d, NULL), id_d);
	CHECK_INT(store_count(gw), 3);
	CHECK_INT(gw->ops->remove(gw->be, id_d), 0);
	CHECK_INT(gw->ops->refresh(gw->be), 0);
	CHECK_INT(store_count(gw), 2);

	/* And the other side sees ours the same way. */
	CHECK_INT(cli->ops->refresh(cli->be), 1);
	CHECK_INT(lookup_id(cli, a, NULL), id_a);
	CHECK_INT(lookup_id(cli, d, NULL), 0);
	CHECK_INT(store_count(cli), 2);
	fuzzy_store_close(cli);
	fuzzy_store_close(gw);
}

TEST(fuzzy_refresh_through_filter)
{
	struct fuzzy_options o;
	struct fuzzy *gw, *cli;
	struct engine_result r;
	struct mime_message *m;

	options_default(&o);
	gw = fuzzy_new(open_store(), &o);
	cli = fuzzy_new(open_store(), &o);
	CHECK_INT(fuzzy_refresh(gw), 0);
	m = lottery("John", 1234, "");
	CHECK_INT(fuzzy_learn(cli, m), 1);
	CHECK_INT(run_engine(gw, m, &r), 0);
	CHECK_INT(fuzzy_refresh(gw), 1);
	CHECK_INT(run_engine(gw, m, &r), 1);
	CHECK_STR(r.symbol, "FUZZY_SPAM");
	CHECK_INT(fuzzy_refresh(gw), 0);

	/* `learn ham` drops it on the other side; after a refresh the gateway no longer matches. */
	CHECK_INT(fuzzy_forget(cli, m), 1);
	CHECK_INT(fuzzy_refresh(gw), 1);
	CHECK_INT(run_engine(gw, m, &r), 0);
	mime_message_free(m);
	fuzzy_free(cli);
	fuzzy_free(gw);
}

struct lookup_worker {
	struct fuzzy_store *s;
	uint64_t h[FUZZY_HASHES];
	int64_t id;
	atomic_bool stop;
	unsigned long misses;
};

/* Looks the one entry present throughout up until told to stop: a refresh must never hide it. */
static void *lookup_loop(void *arg)
{
	struct lookup_worker *w = arg;
	struct fuzzy_match match;

	while (!atomic_load(&w->stop)) {
		if (w->s->ops->lookup(w->s->be, w->h, &match) != 0 || match.id != w->id)
			w->misses++;
	}
	return NULL;
}

TEST(fuzzy_refresh_concurrent_with_lookups)
{
	struct fuzzy_store *gw = open_store(), *cli = open_store();
	struct lookup_worker w = { .s = gw };
	uint64_t rng = 0x5eed5eed5eed5eedULL, h[FUZZY_HASHES];
	pthread_t t;
	int64_t id;
	int reloads = 0;

	random_signature(&rng, w.h);
	CHECK_INT(gw->ops->add(gw->be, w.h, 1000, &w.id), 0);
	atomic_init(&w.stop, false);
	CHECK_INT(pthread_create(&t, NULL, lookup_loop, &w), 0);
	for (int i = 0; i < 200; i++) {
		random_signature(&rng, h);
		CHECK_INT(cli->ops->add(cli->be, h, 2000 + i, &id), 0);
		random_signature(&rng, h);
		CHECK_INT(gw->ops->add(gw->be, h, 2000 + i, &id), 0);
		reloads += gw->ops->refresh(gw->be);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	CHECK_INT(reloads, 200);
	CHECK_INT(w.misses, 0);
	CHECK_INT(store_count(gw), 401);
	fuzzy_store_close(cli);
	fuzzy_store_close(gw);
}
