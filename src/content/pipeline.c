/*
 * The content pipeline: one MIME parse shared by every engine, then the
 * verdict. The pipeline itself is read-only while running, so one
 * pipeline serves every worker thread.
 */
#include "content/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define LOG_MODULE "content"
#include "core/log.h"

struct content_pipeline {
	struct content_engine **engines;
	size_t nengines;
	struct mime_limits limits;
	struct mime_magic *magic;       /* NULL: libmagic unavailable, parts untyped */
};

struct content_pipeline *content_pipeline_new(const struct mime_limits *limits)
{
	struct content_pipeline *p = xcalloc(1, sizeof(*p));

	if (limits != NULL)
		p->limits = *limits;
	else
		mime_limits_default(&p->limits);
	if ((p->magic = mime_magic_open()) == NULL)
		log_warn("attachments will not be typed by content");
	return p;
}

void content_pipeline_add(struct content_pipeline *p, struct content_engine *engine)
{
	p->engines = xreallocarray(p->engines, p->nengines + 1, sizeof(*p->engines));
	p->engines[p->nengines++] = engine;
}

size_t content_pipeline_count(const struct content_pipeline *p)
{
	return p->nengines;
}

void content_pipeline_free(struct content_pipeline *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nengines; i++) {
		if (p->engines[i]->free != NULL)
			p->engines[i]->free(p->engines[i]->state);
		free(p->engines[i]);
	}
	free(p->engines);
	mime_magic_close(p->magic);
	free(p);
}

int content_action_rank(enum content_action a)
{
	switch (a) {
	case CONTENT_NONE: return 0;
	case CONTENT_TAG: return 1;
	case CONTENT_CLEAN: return 2;
	case CONTENT_DROP: return 3;
	case CONTENT_QUARANTINE: return 4;
	case CONTENT_DEFER: return 5;
	case CONTENT_REJECT: return 6;
	}
	return 0;
}

const char *content_action_name(enum content_action a)
{
	switch (a) {
	case CONTENT_NONE: return "none";
	case CONTENT_TAG: return "tag";
	case CONTENT_QUARANTINE: return "quarantine";
	case CONTENT_REJECT: return "reject";
	case CONTENT_DROP: return "drop";
	case CONTENT_DEFER: return "defer";
	case CONTENT_CLEAN: return "clean";
	}
	return "?";
}

int content_action_parse(const char *name, enum content_action *out)
{
	static const struct { const char *name; enum content_action action; } names[] = {
		{ "reject", CONTENT_REJECT }, { "drop", CONTENT_DROP },
		{ "quarantine", CONTENT_QUARANTINE }, { "tag", CONTENT_TAG },
		{ "clean", CONTENT_CLEAN }, { "defer", CONTENT_DEFER },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*out = names[i].action;
			return 0;
		}
	}
	return -1;
}

const char *content_category_name(enum content_category c)
{
	switch (c) {
	case CATEGORY_NONE: return "none";
	case CATEGORY_VIRUS: return "virus";
	case CATEGORY_SPAM: return "spam";
	case CATEGORY_RULE: return "rule";
	case CATEGORY_DYNAMIC: return "dynamic";
	}
	return "?";
}

int content_scl(double score)
{
	/* Lower bounds of SCL 1..9; the table of content/scoring.h. */
	static const double floor_of[9] = { 1, 2, 3, 4, 5, 6, 8, 10, 13 };
	int scl = 0;

	if (isnan(score))
		return 0;
	while (scl < 9 && score >= floor_of[scl])
		scl++;
	return scl;
}

static void reasons_append(struct content_verdict *v, const char *reason)
{
	size_t used = strlen(v->reasons);

	if (reason[0] == '\0')
		return;
	snprintf(v->reasons + used, sizeof(v->reasons) - used, "%s%s", used ? "; " : "", reason);
}

/*
 * The first result demanding the strongest action gives the category;
 * every result demanding that same action adds its reason, and the first
 * of them with a reply of its own (a rule's) gives the reply.
 */
void content_verdict_compute(const struct engine_results *r, struct content_verdict *v)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < r->count; i++) {
		const struct engine_result *res = &r->items[i];

		v->score += res->score;
		if (content_action_rank(res->action) > content_action_rank(v->action)) {
			v->action = res->action;
			v->category = res->category;
		}
	}
	for (size_t i = 0; i < r->count && v->action != CONTENT_NONE; i++) {
		if (r->items[i].action != v->action)
			continue;
		reasons_append(v, r->items[i].reason);
		if (v->reply[0] == '\0' && r->items[i].reply[0] != '\0')
			snprintf(v->reply, sizeof(v->reply), "%s", r->items[i].reply);
	}
	v->scl = content_scl(v->score);
}

void content_pipeline_run(struct content_pipeline *p, const unsigned char *raw, size_t len,
			  const struct envelope *env, struct content_result *out)
{
	content_pipeline_run_auth(p, raw, len, env, NULL, out);
}

void content_pipeline_run_auth(struct content_pipeline *p, const unsigned char *raw, size_t len,
			       const struct envelope *env, struct content_auth *auth, struct content_result *out)
{
	struct content_message msg;

	memset(out, 0, sizeof(*out));
	out->mime = mime_parse(raw, len, &p->limits, p->magic);
	msg.env = env;
	msg.raw = raw;
	msg.raw_len = len;
	msg.mime = out->mime;
	msg.auth = auth;
	/* The earlier stages' symbols count in the total, and the last engines (history) see them. */
	if (auth != NULL)
		engine_results_append_all(&out->results, auth->policy);
	for (size_t i = 0; i < p->nengines; i++)
		p->engines[i]->check(p->engines[i]->state, &msg, &out->results);
	content_verdict_compute(&out->results, &out->verdict);
	if (auth != NULL) {
		out->auth_results = auth->auth_results;
		auth->auth_results = NULL;
	}
}

void content_result_free(struct content_result *r)
{
	mime_message_free(r->mime);
	engine_results_free(&r->results);
	free(r->auth_results);
	memset(r, 0, sizeof(*r));
}
