/*
 * The content stage between the SMTP session and the pipeline: engine
 * assembly from the config, the hand-off to the worker pool (high
 * priority: a client is waiting for its reply), and the signature watch.
 */
#define LOG_MODULE "content"
#include "content/content_stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/event.h>

#include "content/rules.h"
#include "content/virus.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/log.h"
#include "core/workpool.h"

struct content_stage {
	int refcount;
	struct content_pipeline *pipeline;
};

struct content_job {
	struct content_stage *cs;
	int fd;
	uint64_t len;
	struct content_result result;
	bool scanned;
	bool detached;
	content_done_cb cb;
	void *arg;
};

/* Signatures load once; a config reload only rebuilds them when the directory changed. */
static int content_stage_virus(struct postern *pt, const struct config *cfg, enum content_action action,
			       char *err, size_t errlen)
{
	struct virus_options o;
	char e[512];

	if (pt->virus != NULL)
		return 0;
	memset(&o, 0, sizeof(o));
	o.db_dir = cfg->virus_database;
	o.action = action;
	o.sample_percent = cfg->virus_sample_percent;
	o.sample_hot_seconds = cfg->virus_hot_period;
	o.pass_on_error = !cfg->virus_tempfail_on_error;
	pt->virus = virus_engine_new(&o, e, sizeof(e));
	if (pt->virus == NULL) {
		snprintf(err, errlen, "[virus] database %s: %s", cfg->virus_database, e);
		return -1;
	}
	return 0;
}

struct content_stage *content_stage_new(struct postern *pt, struct config *cfg, char *err, size_t errlen)
{
	struct content_stage *cs;
	enum content_action action = CONTENT_REJECT;

	if (!cfg->content_enabled)
		return NULL;
	if (cfg->virus_enabled) {
		if (cfg->virus_database == NULL) {
			snprintf(err, errlen, "[virus] enabled needs a database directory");
			return NULL;
		}
		if (cfg->virus_action && content_action_parse(cfg->virus_action, &action) < 0) {
			snprintf(err, errlen, "[virus] action \"%s\": expected reject, drop, quarantine, tag or clean",
				 cfg->virus_action);
			return NULL;
		}
		if (content_stage_virus(pt, cfg, action, err, errlen) < 0)
			return NULL;
	}
	cs = xcalloc(1, sizeof(*cs));
	cs->refcount = 1;
	cs->pipeline = content_pipeline_new(NULL);
	/* Cheapest decisive first: MIME anomalies, then viruses, then the rules. */
	content_pipeline_add(cs->pipeline, mime_engine_create());
	if (cfg->virus_enabled)
		content_pipeline_add(cs->pipeline, virus_content_engine(pt->virus));
	if (cfg->rules_file != NULL) {
		char e[512];
		struct rules *rules = rules_load(cfg->rules_file, e, sizeof(e));

		if (rules == NULL) {
			snprintf(err, errlen, "[rules] file: %s", e);
			content_stage_unref(cs);
			return NULL;
		}
		content_pipeline_add(cs->pipeline, rules_engine_create(rules));
	}
	return cs;
}

void content_stage_unref(struct content_stage *cs)
{
	if (cs == NULL || --cs->refcount > 0)
		return;
	content_pipeline_free(cs->pipeline);
	free(cs);
}

static void content_signature_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct postern *pt = arg;
	char version[128];

	if (pt->virus != NULL && virus_engine_check_reload(pt->virus)) {
		virus_engine_version(pt->virus, version, sizeof(version));
		log_info("virus signatures reloading in the background (was %s)", version);
	}
}

void content_stage_watch_signatures(struct postern *pt)
{
	unsigned every = pt->cfg->virus_reload_check ? pt->cfg->virus_reload_check : 60;

	if (pt->virus == NULL || pt->virus_reload != NULL)
		return;
	pt->virus_reload = event_new(pt->base, -1, EV_PERSIST, content_signature_check_cb, pt);
	event_add(pt->virus_reload, &(struct timeval){ every, 0 });
}

void content_stage_shutdown(struct postern *pt)
{
	if (pt->virus_reload != NULL)
		event_free(pt->virus_reload);
	pt->virus_reload = NULL;
	if (pt->virus != NULL)
		virus_engine_free(pt->virus);
	pt->virus = NULL;
}

/* Debug log: every symbol of the run, which the verdict line leaves out (sampling, scores). */
static void content_log_symbols(const struct content_result *r)
{
	char symbols[1024];
	size_t used = 0;

	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	symbols[0] = '\0';
	for (size_t i = 0; i < r->results.count && used + 1 < sizeof(symbols); i++) {
		int n = snprintf(symbols + used, sizeof(symbols) - used, "%s%s", used ? " " : "",
				 r->results.items[i].symbol);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	log_debug("content symbols=\"%s\" action=%s", symbols, content_action_name(r->verdict.action));
}

/*
 * Worker thread: map the message and run every engine over it. The
 * envelope is not handed to the engines: the session may free it while
 * the scan runs (the client went away).
 */
static void content_job_run(void *arg)
{
	struct content_job *job = arg;
	void *map;

	if (job->len == 0) {
		content_pipeline_run(job->cs->pipeline, (const unsigned char *)"", 0, NULL, &job->result);
		job->scanned = true;
		return;
	}
	map = mmap(NULL, job->len, PROT_READ, MAP_PRIVATE, job->fd, 0);
	if (map == MAP_FAILED) {
		log_error("content: cannot map the message: %s", strerror(errno));
		return;
	}
	content_pipeline_run(job->cs->pipeline, map, job->len, NULL, &job->result);
	munmap(map, job->len);
	job->scanned = true;
}

static void content_job_done(void *arg)
{
	struct content_job *job = arg;

	if (job->scanned)
		content_log_symbols(&job->result);
	if (!job->detached) {
		if (!job->scanned) {
			/* The scan itself failed: an engine error, which defers. */
			memset(&job->result, 0, sizeof(job->result));
			job->result.verdict.action = CONTENT_DEFER;
			snprintf(job->result.verdict.reasons, sizeof(job->result.verdict.reasons),
				 "content scan failed");
		}
		job->cb(job->arg, &job->result);
	}
	if (job->scanned)
		content_result_free(&job->result);
	close(job->fd);
	content_stage_unref(job->cs);
	free(job);
}

struct content_job *content_stage_scan(struct postern *pt, int fd, uint64_t len,
				       content_done_cb cb, void *arg)
{
	struct content_job *job = xcalloc(1, sizeof(*job));

	job->cs = pt->content;
	job->cs->refcount++;
	job->fd = fd;
	job->len = len;
	job->cb = cb;
	job->arg = arg;
	workpool_submit(pt->workers, WORK_HIGH, content_job_run, content_job_done, job);
	return job;
}

void content_job_detach(struct content_job *job)
{
	job->detached = true;
}

/* Printable text only: a reply is one SMTP line. */
static void content_reply_text(const char *in, char *out, size_t outlen)
{
	size_t j = 0;

	for (size_t i = 0; in[i] != '\0' && j + 1 < outlen; i++)
		out[j++] = (in[i] == '\r' || in[i] == '\n') ? ' ' : in[i];
	out[j] = '\0';
}

static bool content_reply_has_code(const char *reply)
{
	return reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' &&
	       reply[2] >= '0' && reply[2] <= '9' && (reply[3] == ' ' || reply[3] == '\0');
}

/* A rule's own reply wins; it may bring its code ("554 5.7.1 ...") or only the text. */
void content_verdict_reply(const struct content_verdict *v, char *buf, size_t len)
{
	char reasons[400];
	char own[ENGINE_REPLY_MAX];

	content_reply_text(v->reasons, reasons, sizeof(reasons));
	content_reply_text(v->reply, own, sizeof(own));
	if (own[0] != '\0' && content_reply_has_code(own))
		snprintf(buf, len, "%s", own);
	else if (own[0] != '\0')
		snprintf(buf, len, "%s %s", v->action == CONTENT_DEFER ? "451 4.7.1" : "554 5.7.1", own);
	else if (v->action == CONTENT_DEFER)
		snprintf(buf, len, "451 4.7.1 Message deferred: %s", reasons);
	else if (v->category == CATEGORY_VIRUS)
		snprintf(buf, len, "554 5.7.0 Message rejected: virus found: %s", reasons);
	else
		snprintf(buf, len, "554 5.7.1 Message rejected: %s", reasons);
}
