#include "unit.h"

#include <string.h>

#include "content/scoring.h"
#include "core/config.h"

static void scored(struct engine_results *r, const char *engine, const char *symbol, double score,
		   enum content_action action, enum content_category category)
{
	struct engine_result *res = engine_results_add(r, engine, symbol);

	res->score = score;
	res->action = action;
	res->category = category;
}

static void verdict_of(const struct scoring *s, struct engine_results *r, struct content_verdict *v)
{
	content_verdict_compute(r, v);
	scoring_apply(s, r, v);
	scoring_tag_suspected(r, v);
}

TEST(scoring_levels_and_thresholds)
{
	struct scoring s;
	struct engine_results r = { 0 };
	struct content_verdict v;

	scoring_default(&s);
	scored(&r, "bayes", "BAYES_SPAM", 3.5, CONTENT_NONE, CATEGORY_SPAM);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.scl, 3);
	CHECK_INT(v.level, SPAM_LEVEL_HAM);
	CHECK_INT(v.action, CONTENT_NONE);
	CHECK(!v.junk);

	scored(&r, "phishing", "PHISH_IP_LINK", 2.0, CONTENT_NONE, CATEGORY_SPAM);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.scl, 5);
	CHECK_INT(v.level, SPAM_LEVEL_SUSPECTED);
	CHECK_INT(v.action, CONTENT_TAG);
	CHECK_INT(v.category, CATEGORY_SPAM);
	CHECK(v.junk);
	CHECK_STR(v.reasons, "SCL 5 (score 5.5): BAYES_SPAM 3.5, PHISH_IP_LINK 2.0");

	scored(&r, "fuzzy", "FUZZY_SPAM", 3.0, CONTENT_NONE, CATEGORY_SPAM);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.level, SPAM_LEVEL_SPAM);
	CHECK_INT(v.action, CONTENT_TAG);
	CHECK_STR(v.reasons, "SCL 7 (score 8.5): BAYES_SPAM 3.5, FUZZY_SPAM 3.0, PHISH_IP_LINK 2.0");

	scored(&r, "rules", "BIG", 5.0, CONTENT_NONE, CATEGORY_RULE);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.scl, 9);
	CHECK_INT(v.action, CONTENT_REJECT);
	CHECK_INT(v.category, CATEGORY_SPAM);
	engine_results_free(&r);
}

TEST(scoring_gateway_threshold_leaves_engine_actions)
{
	struct scoring s;
	struct engine_results r = { 0 };
	struct content_verdict v;

	scoring_default(&s);
	s.gateway_action = CONTENT_QUARANTINE;
	/* A virus the operator wants dropped stays dropped, however high the score. */
	scored(&r, "virus", "VIRUS_FOUND", 20.0, CONTENT_DROP, CATEGORY_VIRUS);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.scl, 9);
	CHECK_INT(v.action, CONTENT_DROP);
	CHECK_INT(v.category, CATEGORY_VIRUS);
	engine_results_free(&r);
	/* Nor does a virus the operator wants only tagged become spam. */
	scored(&r, "virus", "VIRUS_FOUND", 20.0, CONTENT_TAG, CATEGORY_VIRUS);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.action, CONTENT_TAG);
	CHECK_INT(v.category, CATEGORY_VIRUS);
	engine_results_free(&r);
	/* A rule's tag is not an action of its own: the threshold applies. */
	scored(&r, "rules", "R", 14.0, CONTENT_TAG, CATEGORY_RULE);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.action, CONTENT_QUARANTINE);
	CHECK_INT(v.category, CATEGORY_SPAM);
	engine_results_free(&r);
	/* Negative scores bring a message back below every threshold. */
	scored(&r, "rules", "R", 14.0, CONTENT_NONE, CATEGORY_SPAM);
	scored(&r, "history", "HISTORY_CLEAN", -10.0, CONTENT_NONE, CATEGORY_SPAM);
	verdict_of(&s, &r, &v);
	CHECK_INT(v.scl, 4);
	CHECK_INT(v.action, CONTENT_NONE);
	static const char *const learned[] = { "history", NULL };
	CHECK_INT(content_scl(scoring_total_without(&r, learned)), 9);
	engine_results_free(&r);
}

TEST(scoring_config)
{
	struct config *cfg = config_new();
	struct config_error err;
	struct scoring s;
	char why[256], e[256];

	CHECK(config_finish(cfg, &err) == 0);
	CHECK(scoring_load(&s, cfg, e, sizeof(e)) == 0);
	CHECK_INT(s.suspected_scl, 5);
	CHECK_INT(s.spam_scl, 7);
	CHECK_INT(s.gateway_scl, 9);
	CHECK_INT(s.gateway_action, CONTENT_REJECT);
	CHECK_INT(s.store_scl, 5);
	CHECK(config_set(cfg, "scoring", "gateway_action", "defer", why, sizeof(why)) == 0);
	CHECK(scoring_load(&s, cfg, e, sizeof(e)) < 0);
	CHECK(strstr(e, "gateway_action \"defer\"") != NULL);
	CHECK(config_set(cfg, "scoring", "gateway_action", "drop", why, sizeof(why)) == 0);
	CHECK(config_set(cfg, "scoring", "suspected_scl", "8", why, sizeof(why)) == 0);
	CHECK(scoring_load(&s, cfg, e, sizeof(e)) < 0);
	CHECK_STR(e, "[scoring] suspected_scl 8 is above spam_scl 7");
	CHECK(config_set(cfg, "scoring", "spam_scl", "8", why, sizeof(why)) == 0);
	CHECK(scoring_load(&s, cfg, e, sizeof(e)) == 0);
	CHECK_INT(scoring_level(&s, 7), SPAM_LEVEL_HAM);
	CHECK_INT(scoring_level(&s, 8), SPAM_LEVEL_SPAM);
	CHECK_INT(s.gateway_action, CONTENT_DROP);
	CHECK_STR(spam_level_name(SPAM_LEVEL_SUSPECTED), "suspected");
	config_unref(cfg);
}
