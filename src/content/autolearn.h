/*
 * The gateway's Bayes autolearn: after the verdict, a message the other
 * engines found clearly spam (or clearly ham) teaches the Bayes filter,
 * and every decision — learned, or why not — is logged with the queue id.
 */
#ifndef POSTERN_CONTENT_AUTOLEARN_H
#define POSTERN_CONTENT_AUTOLEARN_H

#include <stdbool.h>

#include "content/bayes.h"
#include "content/pipeline.h"

struct autolearn_options {
	double spam_score;             /* other engines' total at least this: spam */
	double ham_score;              /* at most this, nothing demanded: ham */
};

/*
 * Decide, learn and log "autolearn queue_id=... class=... reason=..." (or
 * why not). m is the scanned message, r its result; the learning
 * engines' own scores (bayes, fuzzy, history) never count toward learning
 * (the filter would teach itself); the policy symbols among r's results
 * do, and a deny-list or DNSBL/RHSBL hit among them is spam by itself.
 */
void content_autolearn(struct bayes *b, const struct autolearn_options *o, const struct content_message *m,
		       const struct content_result *r, const char *queue_id);

#endif
