/*
 * The Bayesian content filter: tokens (content/tokenize.h) counted per
 * class in a token store (store/bayes_store.h), combined per message with
 * Gary Robinson's method:
 *
 *   f(w) = (s·x + n·p(w)) / (s + n),  p(w) = (spam(w)/Nspam) / (spam(w)/Nspam + ham(w)/Nham)
 *
 * with n = spam(w) + ham(w), s = 1, x = 0.5. Only tokens with
 * |f(w) − 0.5| ≥ 0.1 count, the 150 farthest from 0.5. Their f(w) are
 * combined with Fisher's chi-square method:
 *
 *   Qh = C⁻¹(−2 Σ ln f(w), 2k),  Qs = C⁻¹(−2 Σ ln(1 − f(w)), 2k)
 *   P = (1 + Qh − Qs) / 2
 *
 * where C⁻¹ is the chi-square survival function and k the number of
 * tokens used (Qs is small when the tokens are jointly spammy, Qh when
 * they are hammy): P near 1 is spam, near 0 ham, 0.5 no opinion or both.
 *
 * As an engine ("bayes"), P maps to a score; nothing is said until at
 * least 5 messages of each class have been learned:
 *
 *   P ≥ 0.95  BAYES_SPAM +5.0     P ≤ 0.01  BAYES_HAM −3.0
 *   P ≥ 0.90  BAYES_SPAM +4.5     P ≤ 0.05  BAYES_HAM −2.0
 *   P ≥ 0.80  BAYES_SPAM +3.0     P ≤ 0.10  BAYES_HAM −1.0
 *   P ≥ 0.70  BAYES_SPAM +2.0
 *
 * (between 0.10 and 0.70: no result). Bayes alone at 0.95 makes suspected
 * spam (SCL 5, content/scoring.h); below, it needs other engines to agree.
 * The table was chosen by two-fold cross-validation inside the training
 * half of the development corpus (bench/accuracy), never on its test half.
 */
#ifndef POSTERN_CONTENT_BAYES_H
#define POSTERN_CONTENT_BAYES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/engine.h"
#include "store/bayes_store.h"

struct mime_message;

#define BAYES_ROBINSON_S 1.0
#define BAYES_ROBINSON_X 0.5
#define BAYES_MIN_DEVIATION 0.1
#define BAYES_MAX_CLUES 150
#define BAYES_MIN_LEARNED 5
#define BAYES_SPAM_THRESHOLD 0.70
#define BAYES_HAM_THRESHOLD 0.10
#define BAYES_AUTOLEARN_PER_DOMAIN_HOUR 20

struct bayes_options {
	size_t max_tokens;                 /* per message; 0: TOKENIZE_MAX_TOKENS_DEFAULT */
	unsigned min_learned;              /* of each class before any verdict */
	unsigned autolearn_per_domain_hour;
};

void bayes_options_default(struct bayes_options *o);

/* What the classifier made of one message. */
struct bayes_verdict {
	bool trained;          /* enough learned to judge; when false the rest is 0.5/0 */
	double prob;           /* P in [0,1] */
	size_t ntokens;        /* distinct tokens of the message */
	size_t nclues;         /* tokens used in the combination */
};

enum bayes_learn_result {
	BAYES_LEARNED,         /* counted as the class asked */
	BAYES_RELEARNED,       /* had been learned as the other class: moved */
	BAYES_ALREADY,         /* had been learned as this class: nothing done */
	BAYES_FORGOTTEN,       /* --forget: uncounted */
	BAYES_NOT_LEARNED,     /* --forget of a message not learned as that class */
	BAYES_REFUSED,         /* autolearn: a guard said no */
	BAYES_ERROR,
};

struct bayes;

/* A filter over `store`, which it owns from now on (closed by bayes_free). */
struct bayes *bayes_new(struct bayes_store *store, const struct bayes_options *o);
void bayes_free(struct bayes *b);
struct bayes_store *bayes_store_of(struct bayes *b);

/* Thread-safe. raw is the whole message (for the few raw headers the tokeniser reads). */
void bayes_classify(struct bayes *b, const struct mime_message *m, const unsigned char *raw, size_t raw_len,
		    struct bayes_verdict *out);

/*
 * Learn (forget = false) or unlearn (forget = true) one message as spam or
 * ham. A message is known by a digest of its Message-ID and body, so
 * learning it again as the same class does nothing and as the other class
 * moves it. `day` is today in days since the epoch. Serialized internally.
 */
enum bayes_learn_result bayes_learn(struct bayes *b, const struct mime_message *m, const unsigned char *raw,
				    size_t raw_len, bool is_spam, bool forget, uint32_t day);

/*
 * For the gateway's autolearn, to call after the verdict of a message the
 * scoring decided is clearly spam or clearly ham. Guards against
 * poisoning: a message already learned (as either class) is never
 * learned again, and at most autolearn_per_domain_hour messages are
 * learned per sender domain (envelope sender, else header From) per
 * hour. `reason` (what made the verdict clear) is logged. Returns
 * BAYES_LEARNED, BAYES_REFUSED or BAYES_ERROR.
 */
enum bayes_learn_result bayes_autolearn(struct bayes *b, const struct content_message *m, bool is_spam,
					const char *reason);

/*
 * Take in what another process (`postern learn`) learned into the same
 * database since it was last read: 1 reloaded (logged at info with the
 * new totals), 0 nothing new, -1 error (logged; the counts held so far
 * stay). Classification goes on meanwhile; for a timer on a low-priority
 * worker, never concurrently with bayes_free.
 */
int bayes_refresh(struct bayes *b);

/* Whether this message was learned before (as either class): autolearn's duplicate guard, for its log. */
bool bayes_learned_before(struct bayes *b, const unsigned char *raw, size_t raw_len);

/*
 * The "bayes" content engine over b (borrowed: free b after the
 * pipeline). Adds BAYES_SPAM or BAYES_HAM with the probability in the
 * reason, or nothing.
 */
struct content_engine *bayes_content_engine(struct bayes *b);

/* The score of probability p per the table above; symbol NULL when p says nothing. */
double bayes_score_of(double p, const char **symbol);

/* The math, exposed for tests. */
double bayes_token_prob(uint32_t spam, uint32_t ham, uint64_t nspam, uint64_t nham);
/* The chi-square survival function for x2 with v (even) degrees of freedom. */
double bayes_chi2q(double x2, unsigned v);
/* Fisher-Robinson combination of n per-token probabilities (0.5 when n = 0). */
double bayes_combine(const double *f, size_t n);

const char *bayes_learn_result_name(enum bayes_learn_result r);

#endif
