/*
 * The content stage's spam engines: Bayes (with autolearn after the
 * verdict) and DKIM/DMARC (with the Authentication-Results field), built
 * from [bayes] and [dkim], and the session facts they need carried to the
 * worker thread.
 */
#ifndef POSTERN_CONTENT_SPAM_H
#define POSTERN_CONTENT_SPAM_H

#include <stdbool.h>
#include <stddef.h>

#include "content/autolearn.h"
#include "content/pipeline.h"

struct postern;
struct config;

/* What the session knows of a message, for content_stage_scan_facts; copied at the call. */
struct content_scan_facts {
	const char *queue_id;
	const char *sender;                   /* envelope sender, "" for <> */
	const char *helo;                     /* NULL when none */
	const char *received_spf;             /* our "Received-SPF: ..." field, NULL: SPF not checked */
	const char *client_addr;              /* NULL when not known */
	const struct engine_results *policy;  /* the connection and protocol stages' symbols, or NULL */
};

/* A pipeline's share of [bayes], [fuzzy] and [history]; the stores are pt's. */
struct content_spam {
	struct bayes *bayes;                  /* borrowed; NULL: Bayes off */
	bool autolearn;
	struct autolearn_options al;
	struct fuzzy *fuzzy;                  /* borrowed; NULL: fuzzy checksums off */
	struct sender_history *history;       /* borrowed; NULL: noise reduction off */
};

/* The worker thread's own copy of the facts. */
struct content_job_facts;

/*
 * Append the bayes, dkim, phishing, fuzzy and history engines cfg asks
 * for to p, history last (it dampens what the others said). Opens
 * pt->bayes, pt->fuzzy and pt->history the first time (kept across
 * reloads, which update their options). -1 with err when a store cannot
 * open.
 */
int content_spam_engines(struct postern *pt, const struct config *cfg, struct content_pipeline *p,
			 struct content_spam *out, char *err, size_t errlen);
/*
 * Look for learning done by other processes into pt->bayes' and
 * pt->fuzzy's databases every [bayes] reload_check (after privileges are
 * dropped; again after a reload, which may change the interval).
 */
void content_spam_watch(struct postern *pt);
/* Close pt->bayes, pt->fuzzy and pt->history (at shutdown, after the worker pool). */
void content_spam_shutdown(struct postern *pt);

struct content_job_facts *content_job_facts_new(const struct content_scan_facts *f);
void content_job_facts_free(struct content_job_facts *jf);

/*
 * Worker thread: run p over raw with the facts (NULL: none, as for
 * `postern scan`), then learn from the verdict: Bayes autolearn, fuzzy
 * signatures of spam, the sender's history (only with facts).
 */
void content_spam_run(struct content_pipeline *p, const struct content_spam *sp,
		      const struct content_job_facts *jf, const unsigned char *raw, size_t len,
		      struct content_result *out);

#endif
