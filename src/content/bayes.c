/*
 * The Bayesian content filter (see bayes.h for the method and the score
 * table). Classification only reads the store, so any number of workers
 * classify at once; learning holds `learn_lock` so that "was this message
 * learned before?" and the counting that follows are one step.
 */
#include "content/bayes.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "content/mime.h"
#include "content/tokenize.h"
#include "core/alloc.h"
#include "queue/envelope.h"

#define LOG_MODULE "bayes"
#include "core/log.h"

#define AUTOLEARN_SLOTS 1024          /* sender domains tracked per hour (power of two) */
#define AUTOLEARN_PROBE 16
#define MESSAGE_ID_MAX 998

struct autolearn_slot {
	uint64_t domain;               /* hash of the domain; 0: free */
	uint32_t hour;
	uint32_t count;
};

struct bayes {
	struct bayes_store *store;
	struct bayes_options opt;
	pthread_mutex_t learn_lock;
	struct autolearn_slot autolearn[AUTOLEARN_SLOTS];
};

struct clue {
	double f;
	double deviation;
};

void bayes_options_default(struct bayes_options *o)
{
	o->max_tokens = TOKENIZE_MAX_TOKENS_DEFAULT;
	o->min_learned = BAYES_MIN_LEARNED;
	o->autolearn_per_domain_hour = BAYES_AUTOLEARN_PER_DOMAIN_HOUR;
}

struct bayes *bayes_new(struct bayes_store *store, const struct bayes_options *o)
{
	struct bayes *b = xcalloc(1, sizeof(*b));

	if (sodium_init() < 0)
		panic("libsodium cannot be initialised");
	b->store = store;
	if (o != NULL)
		b->opt = *o;
	else
		bayes_options_default(&b->opt);
	pthread_mutex_init(&b->learn_lock, NULL);
	return b;
}

void bayes_free(struct bayes *b)
{
	if (b == NULL)
		return;
	bayes_store_close(b->store);
	pthread_mutex_destroy(&b->learn_lock);
	free(b);
}

struct bayes_store *bayes_store_of(struct bayes *b)
{
	return b->store;
}

double bayes_token_prob(uint32_t spam, uint32_t ham, uint64_t nspam, uint64_t nham)
{
	double n = (double)spam + (double)ham;
	double sr = nspam > 0 ? (double)spam / (double)nspam : 0.0;
	double hr = nham > 0 ? (double)ham / (double)nham : 0.0;
	double p;

	if (n == 0 || sr + hr == 0)
		return BAYES_ROBINSON_X;
	p = sr / (sr + hr);
	return (BAYES_ROBINSON_S * BAYES_ROBINSON_X + n * p) / (BAYES_ROBINSON_S + n);
}

double bayes_chi2q(double x2, unsigned v)
{
	double m = x2 / 2.0, term, sum;

	if (x2 <= 0)
		return 1.0;
	term = sum = exp(-m);
	for (unsigned i = 1; i < v / 2; i++) {
		term *= m / i;
		sum += term;
	}
	return sum < 1.0 ? sum : 1.0;
}

double bayes_combine(const double *f, size_t n)
{
	double ln_f = 0, ln_g = 0, qh, qs;

	if (n == 0)
		return 0.5;
	for (size_t i = 0; i < n; i++) {
		ln_f += log(f[i]);
		ln_g += log(1.0 - f[i]);
	}
	qh = bayes_chi2q(-2.0 * ln_f, 2 * (unsigned)n);
	qs = bayes_chi2q(-2.0 * ln_g, 2 * (unsigned)n);
	return (1.0 + qh - qs) / 2.0;
}

/* The table of bayes.h: the first row whose bound P reaches gives the score. */
double bayes_score_of(double p, const char **symbol)
{
	static const struct { double at_least; double score; } spam[] = {
		{ 0.95, 5.0 }, { 0.90, 4.5 }, { 0.80, 3.0 }, { BAYES_SPAM_THRESHOLD, 2.0 },
	};
	static const struct { double at_most; double score; } ham[] = {
		{ 0.01, -3.0 }, { 0.05, -2.0 }, { BAYES_HAM_THRESHOLD, -1.0 },
	};

	*symbol = NULL;
	for (size_t i = 0; i < sizeof(spam) / sizeof(spam[0]); i++) {
		if (p >= spam[i].at_least) {
			*symbol = "BAYES_SPAM";
			return spam[i].score;
		}
	}
	for (size_t i = 0; i < sizeof(ham) / sizeof(ham[0]); i++) {
		if (p <= ham[i].at_most) {
			*symbol = "BAYES_HAM";
			return ham[i].score;
		}
	}
	return 0.0;
}

static int cmp_clue(const void *a, const void *b)
{
	double x = ((const struct clue *)a)->deviation, y = ((const struct clue *)b)->deviation;

	return x > y ? -1 : x < y;
}

void bayes_classify(struct bayes *b, const struct mime_message *m, const unsigned char *raw, size_t raw_len,
		    struct bayes_verdict *out)
{
	struct token_set set;
	struct bayes_counts *counts;
	struct bayes_totals totals;
	struct clue *clues;
	double *f;
	size_t nclues = 0;

	memset(out, 0, sizeof(*out));
	out->prob = 0.5;
	tokenize_message(m, raw, raw_len, b->opt.max_tokens, &set);
	out->ntokens = set.count;
	counts = xcalloc(set.count > 0 ? set.count : 1, sizeof(*counts));
	b->store->ops->lookup(b->store->be, set.hashes, set.count, counts, &totals);
	if (totals.spam < b->opt.min_learned || totals.ham < b->opt.min_learned)
		goto done;
	out->trained = true;
	clues = xcalloc(set.count > 0 ? set.count : 1, sizeof(*clues));
	for (size_t i = 0; i < set.count; i++) {
		double fw, dev;

		if (counts[i].spam == 0 && counts[i].ham == 0)
			continue;
		fw = bayes_token_prob(counts[i].spam, counts[i].ham, totals.spam, totals.ham);
		dev = fabs(fw - 0.5);
		if (dev + 1e-12 < BAYES_MIN_DEVIATION)
			continue;
		clues[nclues].f = fw;
		clues[nclues].deviation = dev;
		nclues++;
	}
	qsort(clues, nclues, sizeof(*clues), cmp_clue);
	if (nclues > BAYES_MAX_CLUES)
		nclues = BAYES_MAX_CLUES;
	f = xcalloc(nclues > 0 ? nclues : 1, sizeof(*f));
	for (size_t i = 0; i < nclues; i++)
		f[i] = clues[i].f;
	out->nclues = nclues;
	out->prob = bayes_combine(f, nclues);
	free(f);
	free(clues);
done:
	free(counts);
	token_set_free(&set);
}

/* End of the header block: the body starts after the first empty line. */
static size_t body_offset(const unsigned char *raw, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (raw[i] != '\n')
			continue;
		if (raw[i + 1] == '\n')
			return i + 2;
		if (raw[i + 1] == '\r' && i + 2 < len && raw[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/*
 * What identifies a message across deliveries: its Message-ID and body,
 * not the trace headers that differ per copy.
 */
static void message_digest(const unsigned char *raw, size_t len, unsigned char out[BAYES_DIGEST_LEN])
{
	crypto_generichash_state st;
	char mid[MESSAGE_ID_MAX + 1];
	long n = tokenize_raw_header(raw, len, "Message-ID", mid, sizeof(mid));
	size_t body = body_offset(raw, len);

	crypto_generichash_init(&st, NULL, 0, BAYES_DIGEST_LEN);
	if (n > 0)
		crypto_generichash_update(&st, (const unsigned char *)mid, (unsigned long long)n);
	crypto_generichash_update(&st, (const unsigned char *)"\n", 1);
	crypto_generichash_update(&st, raw + body, len - body);
	crypto_generichash_final(&st, out, BAYES_DIGEST_LEN);
}

/* Count the tokens and record the digest; the caller holds learn_lock. */
static int train_locked(struct bayes *b, const struct token_set *set, const unsigned char *digest,
			enum bayes_class prev, enum bayes_class cls, bool forget, uint32_t day)
{
	const struct bayes_store_ops *ops = b->store->ops;
	void *be = b->store->be;

	if (forget) {
		if (ops->train(be, set->hashes, set->count, cls, -1, day) < 0)
			return -1;
		return ops->seen_set(be, digest, BAYES_CLASS_NONE);
	}
	if (prev != BAYES_CLASS_NONE && ops->train(be, set->hashes, set->count, prev, -1, day) < 0)
		return -1;
	if (ops->train(be, set->hashes, set->count, cls, 1, day) < 0)
		return -1;
	return ops->seen_set(be, digest, cls);
}

enum bayes_learn_result bayes_learn(struct bayes *b, const struct mime_message *m, const unsigned char *raw,
				    size_t raw_len, bool is_spam, bool forget, uint32_t day)
{
	enum bayes_class cls = is_spam ? BAYES_CLASS_SPAM : BAYES_CLASS_HAM, prev;
	unsigned char digest[BAYES_DIGEST_LEN];
	enum bayes_learn_result result;
	struct token_set set;

	message_digest(raw, raw_len, digest);
	tokenize_message(m, raw, raw_len, b->opt.max_tokens, &set);
	pthread_mutex_lock(&b->learn_lock);
	if (b->store->ops->seen_get(b->store->be, digest, &prev) < 0) {
		result = BAYES_ERROR;
	} else if (forget) {
		result = prev != cls ? BAYES_NOT_LEARNED : BAYES_FORGOTTEN;
	} else {
		result = prev == cls ? BAYES_ALREADY : prev == BAYES_CLASS_NONE ? BAYES_LEARNED : BAYES_RELEARNED;
	}
	if ((result == BAYES_FORGOTTEN || result == BAYES_LEARNED || result == BAYES_RELEARNED) &&
	    train_locked(b, &set, digest, prev, cls, forget, day) < 0)
		result = BAYES_ERROR;
	pthread_mutex_unlock(&b->learn_lock);
	token_set_free(&set);
	return result;
}

/* The sender domain autolearn is rated by: envelope sender, else header From; "" if none. */
static void sender_domain(const struct content_message *m, char *out, size_t size)
{
	const char *addr = NULL, *at, *end;
	size_t n = 0;

	if (m->env != NULL && m->env->sender != NULL && m->env->sender[0] != '\0')
		addr = m->env->sender;
	else if (m->mime != NULL && m->mime->from != NULL)
		addr = m->mime->from;
	out[0] = '\0';
	if (addr == NULL || (at = strrchr(addr, '@')) == NULL)
		return;
	for (end = at + 1; *end && *end != '>' && *end != ',' && *end != ' ' && n + 1 < size; end++)
		out[n++] = (char)((*end >= 'A' && *end <= 'Z') ? *end - 'A' + 'a' : *end);
	out[n] = '\0';
}

/* Take one autolearn from the domain's hourly allowance; the caller holds learn_lock. */
static bool autolearn_take(struct bayes *b, const char *domain, uint32_t hour)
{
	uint64_t key = token_hash(domain, strlen(domain));
	struct autolearn_slot *free_slot = NULL;

	if (b->opt.autolearn_per_domain_hour == 0)
		return false;
	for (size_t i = 0; i < AUTOLEARN_PROBE; i++) {
		struct autolearn_slot *s = &b->autolearn[(key + i) & (AUTOLEARN_SLOTS - 1)];

		if (s->domain == key && s->hour == hour) {
			if (s->count >= b->opt.autolearn_per_domain_hour)
				return false;
			s->count++;
			return true;
		}
		if (free_slot == NULL && (s->domain == 0 || s->hour != hour))
			free_slot = s;
	}
	/* Every nearby slot busy this hour: refusing is the safe side. */
	if (free_slot == NULL)
		return false;
	free_slot->domain = key;
	free_slot->hour = hour;
	free_slot->count = 1;
	return true;
}

enum bayes_learn_result bayes_autolearn(struct bayes *b, const struct content_message *m, bool is_spam,
					const char *reason)
{
	enum bayes_class cls = is_spam ? BAYES_CLASS_SPAM : BAYES_CLASS_HAM, prev;
	unsigned char digest[BAYES_DIGEST_LEN];
	enum bayes_learn_result result = BAYES_LEARNED;
	char domain[256];
	struct token_set set;
	time_t now = time(NULL);

	if (m->mime == NULL)
		return BAYES_REFUSED;
	sender_domain(m, domain, sizeof(domain));
	message_digest(m->raw, m->raw_len, digest);
	tokenize_message(m->mime, m->raw, m->raw_len, b->opt.max_tokens, &set);
	pthread_mutex_lock(&b->learn_lock);
	if (b->store->ops->seen_get(b->store->be, digest, &prev) < 0)
		result = BAYES_ERROR;
	else if (prev != BAYES_CLASS_NONE)
		result = BAYES_REFUSED;
	else if (!autolearn_take(b, domain, (uint32_t)(now / 3600)))
		result = BAYES_REFUSED;
	else if (train_locked(b, &set, digest, BAYES_CLASS_NONE, cls, false, (uint32_t)(now / 86400)) < 0)
		result = BAYES_ERROR;
	pthread_mutex_unlock(&b->learn_lock);
	token_set_free(&set);
	if (result == BAYES_LEARNED)
		log_info("autolearned as %s (sender domain \"%s\"): %s", is_spam ? "spam" : "ham", domain,
			 reason != NULL ? reason : "");
	else if (result == BAYES_REFUSED)
		log_debug("autolearn as %s refused (sender domain \"%s\"): %s", is_spam ? "spam" : "ham",
			  domain, prev != BAYES_CLASS_NONE ? "already learned" : "hourly limit");
	return result;
}

int bayes_refresh(struct bayes *b)
{
	struct bayes_totals t;
	int rc;

	if (b->store->ops->refresh == NULL)
		return 0;
	rc = b->store->ops->refresh(b->store->be);
	if (rc == 1) {
		b->store->ops->lookup(b->store->be, NULL, 0, NULL, &t);
		log_info("bayes tokens reloaded: %llu tokens, %llu spam / %llu ham learned",
			 (unsigned long long)t.tokens, (unsigned long long)t.spam, (unsigned long long)t.ham);
	}
	return rc;
}

bool bayes_learned_before(struct bayes *b, const unsigned char *raw, size_t raw_len)
{
	unsigned char digest[BAYES_DIGEST_LEN];
	enum bayes_class prev = BAYES_CLASS_NONE;
	int rc;

	message_digest(raw, raw_len, digest);
	pthread_mutex_lock(&b->learn_lock);
	rc = b->store->ops->seen_get(b->store->be, digest, &prev);
	pthread_mutex_unlock(&b->learn_lock);
	return rc == 0 && prev != BAYES_CLASS_NONE;
}

static void bayes_engine_check(void *state, const struct content_message *m, struct engine_results *out)
{
	struct bayes *b = state;
	struct bayes_verdict v;
	struct engine_result *r;
	const char *symbol;
	double score;

	if (m->mime == NULL)
		return;
	bayes_classify(b, m->mime, m->raw, m->raw_len, &v);
	if (!v.trained)
		return;
	score = bayes_score_of(v.prob, &symbol);
	if (symbol == NULL)
		return;
	r = engine_results_add(out, "bayes", symbol);
	r->score = score;
	r->category = CATEGORY_SPAM;
	snprintf(r->reason, sizeof(r->reason), "spam probability %.4f (%zu of %zu tokens significant)",
		 v.prob, v.nclues, v.ntokens);
}

struct content_engine *bayes_content_engine(struct bayes *b)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = "bayes";
	e->state = b;
	e->check = bayes_engine_check;
	e->free = NULL;
	return e;
}

const char *bayes_learn_result_name(enum bayes_learn_result r)
{
	switch (r) {
	case BAYES_LEARNED:
		return "learned";
	case BAYES_RELEARNED:
		return "moved";
	case BAYES_ALREADY:
		return "already learned";
	case BAYES_FORGOTTEN:
		return "forgotten";
	case BAYES_NOT_LEARNED:
		return "not learned";
	case BAYES_REFUSED:
		return "refused";
	case BAYES_ERROR:
		return "error";
	}
	return "?";
}
