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
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

#include "content/content_spam.h"
#include "content/phrases.h"
#include "content/rules.h"
#include "content/scoring.h"
#include "content/virus.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/io.h"
#include "core/log.h"
#include "core/workpool.h"

/* What [actions] makes of a verdict: per-category actions and the mark names. */
struct content_actions {
	enum content_action by_category[CATEGORY_DYNAMIC + 1]; /* CONTENT_NONE: the engine's */
	char *subject_tag;
	char *status_header;
	char *reason_header;
	char *scl_header;
	char *suspected_subject_tag;
	char *junk_header;
};

struct content_stage {
	int refcount;
	struct content_pipeline *pipeline;
	struct content_actions actions;
	struct content_marks marks;       /* points into actions */
	struct scoring scoring;           /* [scoring] */
	struct content_spam spam;         /* [bayes] of the config built from */
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
	struct content_job_facts *facts;  /* the session's, NULL when not given */
};

/*
 * The scanner for cfg's pipeline, a reference of the caller's. Signatures
 * load once: a reload keeps the running engine unless the directory
 * changed, and then loads a new one beside it (the old pipelines keep the
 * old engine until their last scan returns).
 */
static struct virus_engine *content_stage_virus(struct postern *pt, const struct config *cfg,
						char *err, size_t errlen)
{
	struct virus_options o;
	struct virus_engine *ve;
	char e[512];

	if (pt->virus != NULL && strcmp(virus_engine_db_dir(pt->virus), cfg->virus_database) == 0)
		return virus_engine_ref(pt->virus);
	memset(&o, 0, sizeof(o));
	o.db_dir = cfg->virus_database;
	o.sample_percent = cfg->virus_sample_percent;
	o.sample_hot_seconds = cfg->virus_hot_period;
	o.pass_on_error = !cfg->virus_tempfail_on_error;
	ve = virus_engine_new(&o, e, sizeof(e));
	if (ve == NULL)
		snprintf(err, errlen, "[virus] database %s: %s", cfg->virus_database, e);
	return ve;
}

/*
 * The new config's scanner (NULL: none) becomes the one the signature
 * watcher looks after; the old one lives on in the pipelines holding it.
 */
static void content_stage_adopt_virus(struct postern *pt, const struct config *cfg, struct virus_engine *ve)
{
	if (ve == NULL) {
		virus_engine_free(pt->virus);
		pt->virus = NULL;
		return;
	}
	if (ve != pt->virus) {
		if (pt->virus != NULL)
			log_info("virus signature directory now %s", cfg->virus_database);
		virus_engine_free(pt->virus);
		pt->virus = virus_engine_ref(ve);
	}
	virus_engine_set_sampling(ve, cfg->virus_sample_percent, cfg->virus_hot_period);
}

/* "engine" keeps what the engine demanded; clean is the virus engine's own. */
static int content_actions_parse_one(const char *key, const char *value, enum content_action *out,
				     char *err, size_t errlen)
{
	if (value == NULL || strcasecmp(value, "engine") == 0) {
		*out = CONTENT_NONE;
		return 0;
	}
	if (content_action_parse(value, out) < 0 || *out == CONTENT_CLEAN) {
		snprintf(err, errlen, "[actions] %s \"%s\": expected tag, quarantine, reject, drop, defer or engine",
			 key, value);
		return -1;
	}
	return 0;
}

/* A header field name as RFC 5322 has it, short enough to fold after. */
static bool content_header_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 76)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)name[i] < 33 || (unsigned char)name[i] > 126 || name[i] == ':')
			return false;
	}
	return true;
}

static bool content_subject_tag_valid(const char *tag)
{
	size_t n = strlen(tag), core = n;

	while (core > 0 && tag[core - 1] == ' ')
		core--;
	if (core == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)tag[i] < 32 || (unsigned char)tag[i] > 126)
			return false;
	}
	return true;
}

static int content_header_option(const char *key, const char *value, const char *def, char **out,
				 char *err, size_t errlen)
{
	const char *name = value != NULL ? value : def;

	if (!content_header_name_valid(name)) {
		snprintf(err, errlen, "[actions] %s \"%s\": expected a header field name (printable, no colon)",
			 key, name);
		return -1;
	}
	*out = xstrdup(name);
	return 0;
}

/* [actions] checked and copied: a stage outlives the config it came from. */
static int content_actions_load(struct content_actions *a, const struct config *cfg, char *err, size_t errlen)
{
	const char *tag = cfg->actions_subject_tag != NULL ? cfg->actions_subject_tag : "[SPAM] ";

	if (content_actions_parse_one("virus", cfg->actions_virus, &a->by_category[CATEGORY_VIRUS], err, errlen) < 0 ||
	    content_actions_parse_one("spam", cfg->actions_spam, &a->by_category[CATEGORY_SPAM], err, errlen) < 0 ||
	    content_actions_parse_one("rule", cfg->actions_rule, &a->by_category[CATEGORY_RULE], err, errlen) < 0 ||
	    content_actions_parse_one("dynamic", cfg->actions_dynamic, &a->by_category[CATEGORY_DYNAMIC],
				      err, errlen) < 0)
		return -1;
	if (!content_subject_tag_valid(tag)) {
		snprintf(err, errlen, "[actions] subject_tag \"%s\": expected printable ASCII, at most 64 bytes, not only blanks",
			 tag);
		return -1;
	}
	a->subject_tag = xstrdup(tag);
	tag = cfg->scoring_suspected_subject_tag != NULL ? cfg->scoring_suspected_subject_tag : "[SUSPECTED SPAM] ";
	if (!content_subject_tag_valid(tag)) {
		snprintf(err, errlen, "[scoring] suspected_subject_tag \"%s\": expected printable ASCII, at most 64 bytes, not only blanks",
			 tag);
		return -1;
	}
	a->suspected_subject_tag = xstrdup(tag);
	if (content_header_option("store_header", cfg->scoring_store_header, "X-Postern-Junk",
				  &a->junk_header, err, errlen) < 0 ||
	    content_header_option("status_header", cfg->actions_status_header, "X-Postern-Status",
				  &a->status_header, err, errlen) < 0 ||
	    content_header_option("reason_header", cfg->actions_reason_header, "X-Postern-Reason",
				  &a->reason_header, err, errlen) < 0 ||
	    content_header_option("scl_header", cfg->actions_scl_header, "X-Postern-SCL",
				  &a->scl_header, err, errlen) < 0)
		return -1;
	return 0;
}

static void content_actions_free(struct content_actions *a)
{
	free(a->subject_tag);
	free(a->status_header);
	free(a->reason_header);
	free(a->scl_header);
	free(a->suspected_subject_tag);
	free(a->junk_header);
}

/*
 * The operator's word over the engine's: a category with an action in
 * [actions] gets it. An engine's own reply was written for its own
 * action, so it goes when the action changes.
 */
static void content_actions_apply(const struct content_actions *a, struct content_verdict *v)
{
	enum content_action want;

	if (v->action == CONTENT_NONE || (unsigned)v->category > CATEGORY_DYNAMIC)
		return;
	want = a->by_category[v->category];
	if (want == CONTENT_NONE || want == v->action)
		return;
	v->action = want;
	v->reply[0] = '\0';
}

struct content_stage *content_stage_new(struct postern *pt, struct config *cfg, char *err, size_t errlen)
{
	struct content_stage *cs;
	struct virus_engine *ve = NULL;
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
	}
	cs = xcalloc(1, sizeof(*cs));
	cs->refcount = 1;
	cs->pipeline = content_pipeline_new(NULL);
	if (content_actions_load(&cs->actions, cfg, err, errlen) < 0) {
		content_stage_unref(cs);
		return NULL;
	}
	if (scoring_load(&cs->scoring, cfg, err, errlen) < 0) {
		content_stage_unref(cs);
		return NULL;
	}
	cs->marks.spam = (struct marks_options){
		.status_header = cs->actions.status_header,
		.scl_header = cs->actions.scl_header,
		.reason_header = cs->actions.reason_header,
		.subject_tag = cs->actions.subject_tag,
		.add_headers = true,
	};
	cs->marks.suspected = cs->marks.spam;
	cs->marks.suspected.subject_tag = cs->actions.suspected_subject_tag;
	cs->marks.junk_header = cs->actions.junk_header;
	if (cfg->virus_enabled && (ve = content_stage_virus(pt, cfg, err, errlen)) == NULL) {
		content_stage_unref(cs);
		return NULL;
	}
	/* Cheapest decisive first: MIME anomalies, then viruses, then the rules. */
	content_pipeline_add(cs->pipeline, mime_engine_create());
	if (ve != NULL)
		content_pipeline_add(cs->pipeline,
				     virus_content_engine_with(ve, action, !cfg->virus_tempfail_on_error));
	if (cfg->rules_file != NULL) {
		char e[512];
		struct rules *rules = rules_load(cfg->rules_file, e, sizeof(e));

		if (rules == NULL) {
			snprintf(err, errlen, "[rules] file: %s", e);
			virus_engine_free(ve);
			content_stage_unref(cs);
			return NULL;
		}
		content_pipeline_add(cs->pipeline, rules_engine_create(rules));
	}
	if (cfg->phrases_file != NULL) {
		char e[512];
		struct phrases *phrases = phrases_load(cfg->phrases_file, e, sizeof(e));

		if (phrases == NULL) {
			snprintf(err, errlen, "[phrases] file: %s", e);
			virus_engine_free(ve);
			content_stage_unref(cs);
			return NULL;
		}
		content_pipeline_add(cs->pipeline, phrases_engine_create(phrases));
	}
	if (content_spam_engines(pt, cfg, cs->pipeline, &cs->spam, err, errlen) < 0) {
		virus_engine_free(ve);
		content_stage_unref(cs);
		return NULL;
	}
	content_stage_adopt_virus(pt, cfg, ve);
	virus_engine_free(ve);
	return cs;
}

void content_stage_unref(struct content_stage *cs)
{
	if (cs == NULL || --cs->refcount > 0)
		return;
	content_pipeline_free(cs->pipeline);
	content_actions_free(&cs->actions);
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

	/* Even without a scanner now: a reload may bring one. Again on a reload: the interval may have changed. */
	if (pt->virus_reload == NULL)
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
	content_spam_shutdown(pt);
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
	unsigned char *buf = xmalloc(job->len + 1);
	ssize_t n;

	/*
	 * Read, not mmap: unmapping in a threaded process costs a TLB
	 * shootdown on every core: with it the relay ran at 774 msg/s, without it at 1778.
	 */
	n = io_pread_full(job->fd, buf, job->len, 0);
	if (n < 0 || (uint64_t)n < job->len) {
		log_error("content: cannot read the message back: %s", n < 0 ? strerror(errno) : "short read");
		free(buf);
		return;
	}
	content_spam_run(job->cs->pipeline, &job->cs->spam, job->facts, buf, job->len, &job->result);
	free(buf);
	job->scanned = true;
}

/* From the engines' verdict to the stage's: scoring, then [actions], then suspected spam's tag. */
static void content_stage_decide(const struct content_stage *cs, struct content_result *r)
{
	scoring_apply(&cs->scoring, &r->results, &r->verdict);
	content_actions_apply(&cs->actions, &r->verdict);
	scoring_tag_suspected(&r->results, &r->verdict);
}

void content_stage_run(struct content_stage *cs, const unsigned char *raw, size_t len, struct content_result *out)
{
	content_spam_run(cs->pipeline, &cs->spam, NULL, raw, len, out);
	content_stage_decide(cs, out);
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
		} else {
			content_stage_decide(job->cs, &job->result);
		}
		job->cb(job->arg, &job->result, &job->cs->marks);
	}
	if (job->scanned)
		content_result_free(&job->result);
	close(job->fd);
	content_stage_unref(job->cs);
	content_job_facts_free(job->facts);
	free(job);
}

struct content_job *content_stage_scan(struct postern *pt, int fd, uint64_t len,
				       content_done_cb cb, void *arg)
{
	return content_stage_scan_facts(pt, fd, len, NULL, cb, arg);
}

struct content_job *content_stage_scan_facts(struct postern *pt, int fd, uint64_t len,
					     const struct content_scan_facts *facts, content_done_cb cb, void *arg)
{
	struct content_job *job = xcalloc(1, sizeof(*job));

	if (facts != NULL)
		job->facts = content_job_facts_new(facts);
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

bool content_result_virus_version(const struct content_result *r, char *buf, size_t len)
{
	static const char prefix[] = "signatures ";

	for (size_t i = 0; i < r->results.count; i++) {
		const struct engine_result *res = &r->results.items[i];

		if (strcmp(res->symbol, "VIRUS_SKIPPED") == 0) {
			snprintf(buf, len, "skipped");
			return true;
		}
		if (strcmp(res->symbol, "VIRUS_SCANNED") == 0) {
			snprintf(buf, len, "%s", strncmp(res->reason, prefix, sizeof(prefix) - 1) == 0 ?
					 res->reason + sizeof(prefix) - 1 : res->reason);
			return true;
		}
	}
	return false;
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
