/*
 * The content stage as the SMTP session sees it: hand a message to the
 * worker pool, get the pipeline's result back on the event loop. The
 * pipeline is built from one config and reference-counted, so a reload
 * never pulls it from under a scan in flight.
 */
#ifndef POSTERN_CONTENT_STAGE_H
#define POSTERN_CONTENT_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/content_spam.h"
#include "content/marks.h"
#include "content/pipeline.h"

struct postern;
struct config;
struct envelope;
struct content_stage;
struct content_job;

/*
 * Build the pipeline for cfg (NULL with err on a bad setting). Loads the
 * virus signatures into pt->virus the first time, and again into a new
 * engine when the directory changed in the config (pipelines built before
 * keep the old one until they are freed); otherwise a reload keeps them
 * and only updates the sampling. The [virus] action and [actions] belong
 * to the pipeline built, so a reload changes them for new scans.
 */
struct content_stage *content_stage_new(struct postern *pt, struct config *cfg, char *err, size_t errlen);
void content_stage_unref(struct content_stage *cs);
/*
 * Watch the signature directory of pt->virus, whichever engine that is at
 * each look, every [virus] reload_check (after privileges are dropped;
 * again after a reload, which may change the interval).
 */
void content_stage_watch_signatures(struct postern *pt);
/* Free pt->virus and its watcher (at shutdown). */
void content_stage_shutdown(struct postern *pt);

/* The marks of a stage: [actions] header names with the subject tag of each level. */
struct content_marks {
	struct marks_options spam;        /* tagged mail: [actions] subject_tag */
	struct marks_options suspected;   /* suspected spam: [scoring] suspected_subject_tag */
	const char *junk_header;          /* [scoring] store_header, "yes" at the store threshold */
};

/*
 * r and marks are valid during the call only. r's verdict has its level
 * and the gateway threshold applied (content/scoring.h) and its action
 * mapped through [actions] by category.
 */
typedef void (*content_done_cb)(void *arg, const struct content_result *r,
				const struct content_marks *marks);

/*
 * Scan len bytes of fd (which the job closes) in the worker pool; cb runs
 * on the loop unless the job was detached first.
 */
struct content_job *content_stage_scan(struct postern *pt, int fd, uint64_t len,
				       content_done_cb cb, void *arg);
/*
 * The same with what the session knows of the message (copied here): the
 * SPF result for DMARC and Authentication-Results, the policy symbols and
 * the queue id for autolearn. r->auth_results then holds the field to add.
 */
struct content_job *content_stage_scan_facts(struct postern *pt, int fd, uint64_t len,
					     const struct content_scan_facts *facts, content_done_cb cb, void *arg);
/*
 * Offline (`postern scan`): the stage's verdict on raw, on this thread,
 * without session facts (so nothing is learned). Free out with
 * content_result_free.
 */
void content_stage_run(struct content_stage *cs, const unsigned char *raw, size_t len, struct content_result *out);
/* The session went away: drop the result when it comes. */
void content_job_detach(struct content_job *job);

/*
 * The version of the signatures the virus engine scanned r with ("skipped"
 * when the message was sampled out); false when the virus engine did not run.
 */
bool content_result_virus_version(const struct content_result *r, char *buf, size_t len);

/* The SMTP reply for a refusing verdict ("554 5.7.0 ..."), bounded, no CR/LF. */
void content_verdict_reply(const struct content_verdict *v, char *buf, size_t len);

#endif
