/*
 * Scoring: what the total of the engines' scores means. The total maps to
 * a spam confidence level (SCL) 0-9 by a fixed table, so that a level
 * means the same on every installation and the thresholds are what an
 * administrator tunes:
 *
 *   score  < 1    SCL 0        score  5 - 6   SCL 5
 *          1 - 2  SCL 1               6 - 8   SCL 6
 *          2 - 3  SCL 2               8 - 10  SCL 7
 *          3 - 4  SCL 3              10 - 13  SCL 8
 *          4 - 5  SCL 4              13 and up SCL 9
 *
 * (lower bounds inclusive). [scoring] names three levels — ham, suspected
 * spam (SCL >= suspected_scl) and spam (SCL >= spam_scl) — each with its
 * own marks, and two thresholds as in Exchange: the gateway threshold
 * (SCL >= gateway_scl: reject, drop, quarantine or tag at the gateway) and
 * the store threshold (SCL >= store_scl: the Junk folder of local users,
 * and a yes in store_header for downstream servers).
 */
#ifndef POSTERN_CONTENT_SCORING_H
#define POSTERN_CONTENT_SCORING_H

#include <stddef.h>

#include "content/pipeline.h"

struct config;

#define SCORING_NEVER 10               /* a threshold no SCL reaches */

struct scoring {
	unsigned suspected_scl;
	unsigned spam_scl;
	unsigned gateway_scl;
	enum content_action gateway_action; /* reject, drop, quarantine or tag */
	unsigned store_scl;
};

/* [scoring] of cfg, checked; -1 with err on a bad combination. */
int scoring_load(struct scoring *s, const struct config *cfg, char *err, size_t errlen);
/* The defaults, as with an empty [scoring]. */
void scoring_default(struct scoring *s);

enum spam_level scoring_level(const struct scoring *s, int scl);
const char *spam_level_name(enum spam_level level);

/*
 * Give v its level and junk flag and apply the gateway threshold: at
 * gateway_scl a message gets gateway_action unless it carries a virus
 * or an engine demanded more than a tag (a rule's own action): [actions]
 * decides those; at spam level a message nothing acted on is tagged as
 * spam (category spam, which [actions] spam may turn into another
 * action). Score-based verdicts get their reasons from r: the symbols that
 * scored, highest first.
 */
void scoring_apply(const struct scoring *s, const struct engine_results *r, struct content_verdict *v);
/*
 * After [actions]: suspected spam nothing acted on is tagged (always tag:
 * [actions] spam is for spam).
 */
void scoring_tag_suspected(const struct engine_results *r, struct content_verdict *v);

/*
 * The results' total without the results of the named engines
 * (NULL-terminated): what the learning engines judge a verdict by, so
 * that none of them learns from its own opinion.
 */
double scoring_total_without(const struct engine_results *r, const char *const *engines);

#endif
