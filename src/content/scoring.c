/*
 * Scoring (see scoring.h): levels and thresholds over the SCL of a
 * verdict. The SCL table itself is content_scl() in pipeline.c, beside the
 * sum it maps.
 */
#include "content/scoring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/config.h"

void scoring_default(struct scoring *s)
{
	s->suspected_scl = 5;
	s->spam_scl = 7;
	s->gateway_scl = 9;
	s->gateway_action = CONTENT_REJECT;
	s->store_scl = 5;
}

int scoring_load(struct scoring *s, const struct config *cfg, char *err, size_t errlen)
{
	scoring_default(s);
	s->suspected_scl = cfg->scoring_suspected_scl;
	s->spam_scl = cfg->scoring_spam_scl;
	s->gateway_scl = cfg->scoring_gateway_scl;
	s->store_scl = cfg->scoring_store_scl;
	if (s->suspected_scl > s->spam_scl) {
		snprintf(err, errlen, "[scoring] suspected_scl %u is above spam_scl %u", s->suspected_scl,
			 s->spam_scl);
		return -1;
	}
	if (cfg->scoring_gateway_action != NULL &&
	    (content_action_parse(cfg->scoring_gateway_action, &s->gateway_action) < 0 ||
	     s->gateway_action == CONTENT_CLEAN || s->gateway_action == CONTENT_DEFER)) {
		snprintf(err, errlen, "[scoring] gateway_action \"%s\": expected reject, drop, quarantine or tag",
			 cfg->scoring_gateway_action);
		return -1;
	}
	return 0;
}

enum spam_level scoring_level(const struct scoring *s, int scl)
{
	if (scl >= (int)s->spam_scl)
		return SPAM_LEVEL_SPAM;
	if (scl >= (int)s->suspected_scl)
		return SPAM_LEVEL_SUSPECTED;
	return SPAM_LEVEL_HAM;
}

const char *spam_level_name(enum spam_level level)
{
	switch (level) {
	case SPAM_LEVEL_HAM: return "ham";
	case SPAM_LEVEL_SUSPECTED: return "suspected";
	case SPAM_LEVEL_SPAM: return "spam";
	}
	return "?";
}

static int scoring_by_score_desc(const void *a, const void *b)
{
	const struct engine_result *x = *(const struct engine_result *const *)a;
	const struct engine_result *y = *(const struct engine_result *const *)b;

	return (x->score < y->score) - (x->score > y->score);
}

/* "score 9.5: BAYES_SPAM 5.0, PHISH_LOOKALIKE 6.0, ..." — the symbols that pushed it up, highest first. */
static void scoring_reasons(const struct engine_results *r, const struct content_verdict *v, char *out,
			    size_t outlen)
{
	const struct engine_result **scored = xcalloc(r->count ? r->count : 1, sizeof(*scored));
	size_t n = 0, used;

	used = (size_t)snprintf(out, outlen, "SCL %d (score %.1f)", v->scl, v->score);
	for (size_t i = 0; i < r->count; i++)
		if (r->items[i].score > 0)
			scored[n++] = &r->items[i];
	qsort(scored, n, sizeof(*scored), scoring_by_score_desc);
	for (size_t i = 0; i < n && used + 1 < outlen; i++)
		used += (size_t)snprintf(out + used, outlen - used, "%s%s %.1f", i ? ", " : ": ",
					 scored[i]->symbol, scored[i]->score);
	free(scored);
}

/* The verdict becomes the scoring's own: its action, category spam, its reasons, no engine reply. */
static void scoring_take_over(const struct engine_results *r, struct content_verdict *v, enum content_action a)
{
	v->action = a;
	v->category = CATEGORY_SPAM;
	v->reply[0] = '\0';
	scoring_reasons(r, v, v->reasons, sizeof(v->reasons));
}

void scoring_apply(const struct scoring *s, const struct engine_results *r, struct content_verdict *v)
{
	v->level = scoring_level(s, v->scl);
	v->junk = v->scl >= (int)s->store_scl;
	/* What an engine demanded beyond a tag (a virus, a rule) is the operator's [actions] business. */
	if (v->scl >= (int)s->gateway_scl && v->category != CATEGORY_VIRUS &&
	    (v->action == CONTENT_NONE || v->action == CONTENT_TAG) &&
	    content_action_rank(s->gateway_action) > content_action_rank(v->action))
		scoring_take_over(r, v, s->gateway_action);
	else if (v->level == SPAM_LEVEL_SPAM && v->action == CONTENT_NONE)
		scoring_take_over(r, v, CONTENT_TAG);
}

void scoring_tag_suspected(const struct engine_results *r, struct content_verdict *v)
{
	if (v->level == SPAM_LEVEL_SUSPECTED && v->action == CONTENT_NONE)
		scoring_take_over(r, v, CONTENT_TAG);
}

double scoring_total_without(const struct engine_results *r, const char *const *engines)
{
	double total = 0.0;

	for (size_t i = 0; i < r->count; i++) {
		bool skip = false;

		for (size_t j = 0; engines != NULL && engines[j] != NULL && !skip; j++)
			skip = strcmp(r->items[i].engine, engines[j]) == 0;
		if (!skip)
			total += r->items[i].score;
	}
	return total;
}
