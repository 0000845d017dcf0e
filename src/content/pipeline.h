/*
 * The content pipeline: parse a message once, run every engine over it in
 * order, and reduce their results to a verdict — total score, SCL and the
 * strongest action any engine demanded, with its category and reasons.
 */
#ifndef POSTERN_CONTENT_PIPELINE_H
#define POSTERN_CONTENT_PIPELINE_H

#include "content/engine.h"
#include "content/mime.h"

#define CONTENT_VERDICT_REASON_MAX 1024

/* What the SCL says of a message (content/scoring.h sets it from [scoring]). */
enum spam_level {
	SPAM_LEVEL_HAM = 0,
	SPAM_LEVEL_SUSPECTED,
	SPAM_LEVEL_SPAM,
};

struct content_verdict {
	double score;                          /* sum of every result's score */
	int scl;                               /* 0-9 */
	enum content_action action;            /* strongest demanded, CONTENT_NONE if none */
	enum content_category category;        /* of the result that demanded it */
	char reasons[CONTENT_VERDICT_REASON_MAX]; /* "; "-joined reasons demanding `action` */
	char reply[ENGINE_REPLY_MAX];          /* the first such result's own reply; "": the default */
	enum spam_level level;                 /* from the SCL and [scoring]; ham until scoring_apply */
	bool junk;                             /* SCL at or above the store threshold */
};

/* Everything one run produced; the caller frees it with content_result_free. */
struct content_result {
	struct mime_message *mime;
	struct engine_results results;
	struct content_verdict verdict;
	char *auth_results;                    /* the "dkim" engine's Authentication-Results, or NULL */
};

struct content_pipeline;

/* limits NULL: mime_limits_default. Loads libmagic once for all runs. */
struct content_pipeline *content_pipeline_new(const struct mime_limits *limits);
/* Appends an engine; the pipeline owns it from now on. */
void content_pipeline_add(struct content_pipeline *p, struct content_engine *engine);
size_t content_pipeline_count(const struct content_pipeline *p);
void content_pipeline_free(struct content_pipeline *p);

/* Thread-safe as long as every engine's check() is. env may be NULL. */
void content_pipeline_run(struct content_pipeline *p, const unsigned char *raw, size_t len,
			  const struct envelope *env, struct content_result *out);
/* The same with the session's authentication facts; out->auth_results takes auth's field. */
void content_pipeline_run_auth(struct content_pipeline *p, const unsigned char *raw, size_t len,
			       const struct envelope *env, struct content_auth *auth, struct content_result *out);
void content_result_free(struct content_result *r);

/* The reduction content_pipeline_run ends with, usable on its own. */
void content_verdict_compute(const struct engine_results *r, struct content_verdict *v);
/* SCL (spam confidence level, 0-9) of a total score: the table in content/scoring.h. */
int content_scl(double score);
/* reject > defer > quarantine > drop > clean > tag > none */
int content_action_rank(enum content_action a);
const char *content_action_name(enum content_action a);
/* "reject", "defer", "quarantine", "drop", "clean", "tag" (any case); -1 for anything else. */
int content_action_parse(const char *name, enum content_action *out);
const char *content_category_name(enum content_category c);

/* The "mime" engine: symbols for parser anomalies and dangerous attachments. */
struct content_engine *mime_engine_create(void);

#endif
