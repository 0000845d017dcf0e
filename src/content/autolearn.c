/*
 * Autolearn (see autolearn.h). Only decisive evidence from elsewhere
 * teaches the filter: a virus, a deny-list or DNSBL hit, or a total
 * score from the other engines beyond the configured thresholds.
 */
#define LOG_MODULE "bayes"
#include "content/autolearn.h"

#include <stdio.h>
#include <string.h>

#include "content/scoring.h"
#include "core/log.h"

static bool autolearn_listed_symbol(const char *symbol)
{
	return strcmp(symbol, "IPLIST_DENY") == 0 || strncmp(symbol, "DNSBL_", 6) == 0 ||
	       strncmp(symbol, "RHSBL_", 6) == 0;
}

/* The connection and protocol stages' first deny-list or DNSBL/RHSBL hit, or NULL. */
static const char *autolearn_listed(const struct content_result *r)
{
	for (size_t i = 0; i < r->results.count; i++) {
		const struct engine_result *res = &r->results.items[i];

		if (strcmp(res->engine, "policy") == 0 && autolearn_listed_symbol(res->symbol))
			return res->symbol;
	}
	return NULL;
}

/*
 * Engines whose scores come from what was learned: counting them would
 * teach the filter its own opinions (and fuzzy's and the history's). The
 * policy stages' symbols are among the results and do count.
 */
static const char *const autolearn_learned_engines[] = { "bayes", "fuzzy", "history", NULL };

/* The first virus an engine acted on, or NULL. */
static const char *autolearn_virus(const struct content_result *r)
{
	for (size_t i = 0; i < r->results.count; i++) {
		const struct engine_result *res = &r->results.items[i];

		if (res->category == CATEGORY_VIRUS && res->action != CONTENT_NONE)
			return res->symbol;
	}
	return NULL;
}

/* true with the class and reason when the evidence is clear enough to learn from. */
static bool autolearn_decide(const struct autolearn_options *o, const struct content_result *r,
			     bool *is_spam, char *reason, size_t len)
{
	const char *virus = autolearn_virus(r), *listed = autolearn_listed(r);
	double score = scoring_total_without(&r->results, autolearn_learned_engines);

	*is_spam = true;
	if (virus != NULL) {
		snprintf(reason, len, "virus %s", virus);
		return true;
	}
	if (listed != NULL) {
		snprintf(reason, len, "listed %s", listed);
		return true;
	}
	if (score >= o->spam_score) {
		snprintf(reason, len, "score %.1f >= %.1f", score, o->spam_score);
		return true;
	}
	*is_spam = false;
	if (score <= o->ham_score && r->verdict.action == CONTENT_NONE) {
		snprintf(reason, len, "score %.1f <= %.1f", score, o->ham_score);
		return true;
	}
	snprintf(reason, len, "score %.1f between %.1f and %.1f", score, o->ham_score, o->spam_score);
	return false;
}

void content_autolearn(struct bayes *b, const struct autolearn_options *o, const struct content_message *m,
		       const struct content_result *r, const char *queue_id)
{
	char reason[160];
	const char *cls;
	bool is_spam;

	if (m->mime == NULL)
		return;
	if (!autolearn_decide(o, r, &is_spam, reason, sizeof(reason))) {
		log_debug("autolearn queue_id=%s skipped: %s", queue_id, reason);
		return;
	}
	cls = is_spam ? "spam" : "ham";
	if (bayes_learned_before(b, m->raw, m->raw_len)) {
		log_info("autolearn queue_id=%s class=%s reason=\"%s\" not learned: duplicate", queue_id, cls, reason);
		return;
	}
	switch (bayes_autolearn(b, m, is_spam, reason)) {
	case BAYES_LEARNED:
		log_info("autolearn queue_id=%s class=%s reason=\"%s\"", queue_id, cls, reason);
		break;
	case BAYES_REFUSED:
		log_info("autolearn queue_id=%s class=%s reason=\"%s\" not learned: rate guard", queue_id, cls,
			 reason);
		break;
	default:
		log_warn("autolearn queue_id=%s class=%s reason=\"%s\" not learned: store error", queue_id, cls,
			 reason);
		break;
	}
}
