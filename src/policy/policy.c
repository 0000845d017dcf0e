/*
 * The policy runner: builds the engine list from a config and walks it for
 * one stage, synchronously while engines answer at once and from the event
 * loop once one of them has to wait for the network.
 */
#define LOG_MODULE "policy"
#include "policy/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/context.h"
#include "core/log.h"
#include "policy/policy_engine.h"

struct policy {
	int refcount;
	struct config *cfg;
	struct policy_engine *engines;
	size_t nengines;
};

struct policy_run {
	struct policy *p;
	enum policy_stage stage;
	struct policy_facts *f;
	size_t next;                 /* the engine to look at next */
	const struct policy_engine *waiting;
	void *handle;
	struct policy_result res;    /* what the stage says so far */
	policy_done_cb done;
	void *arg;
};

/* Pipeline order: cheap and decisive first. */
static int (*const policy_constructors[])(struct policy_build *) = {
	policy_iplist_build,
	policy_connlimit_build,
	policy_dnsbl_build,
	policy_perimeter_build,
	policy_helo_build,
	policy_rdns_build,
	policy_sender_build,
	policy_spf_build,
	policy_rate_build,
	policy_recipients_build,
	policy_greylist_build,
};

static const char *const stage_names[] = { "connect", "helo", "mail", "rcpt", "data" };

struct policy_state *policy_state_new(struct postern *pt)
{
	struct policy_state *st = xcalloc(1, sizeof(*st));

	st->pt = pt;
	return st;
}

void policy_state_free(struct policy_state *st)
{
	if (st == NULL)
		return;
	policy_state_free_rates(st);
	policy_state_free_dnsbl(st);
	policy_state_free_recipients(st);
	policy_state_free_greylist(st);
	free(st);
}

void policy_build_add(struct policy_build *b, const struct policy_engine *e)
{
	struct policy *p = b->policy;

	p->engines = xreallocarray(p->engines, p->nengines + 1, sizeof(*p->engines));
	p->engines[p->nengines++] = *e;
}

struct policy *policy_new(struct postern *pt, struct config *cfg, char *err, size_t errlen)
{
	struct policy *p = xcalloc(1, sizeof(*p));
	struct policy_build b = {
		.pt = pt, .cfg = cfg, .state = pt->policy_state, .policy = p, .err = err, .errlen = errlen,
	};

	p->refcount = 1;
	p->cfg = config_ref(cfg);
	for (size_t i = 0; i < sizeof(policy_constructors) / sizeof(policy_constructors[0]); i++) {
		if (policy_constructors[i](&b) < 0) {
			policy_unref(p);
			return NULL;
		}
	}
	return p;
}

struct policy *policy_ref(struct policy *p)
{
	p->refcount++;
	return p;
}

void policy_unref(struct policy *p)
{
	if (p == NULL || --p->refcount > 0)
		return;
	for (size_t i = 0; i < p->nengines; i++) {
		if (p->engines[i].free)
			p->engines[i].free(p->engines[i].state);
	}
	free(p->engines);
	config_unref(p->cfg);
	free(p);
}

bool policy_sender_listed(char *const *list, size_t n, const char *sender)
{
	const char *at = strrchr(sender, '@');
	const char *domain = at ? at + 1 : "";

	for (size_t i = 0; i < n; i++) {
		const char *e = list[i];
		if (strchr(e, '@') != NULL && e[0] != '@') {
			if (strcasecmp(e, sender) == 0)
				return true;
		} else if (*domain && strcasecmp(e[0] == '@' ? e + 1 : e, domain) == 0) {
			return true;
		}
	}
	return false;
}

void policy_result_reply(struct policy_result *res, enum policy_action action, const char *engine,
			 const char *fmt, ...)
{
	char text[POLICY_REPLY_MAX - 16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(res->engine, sizeof(res->engine), "%s", engine);
	switch (action) {
	case POLICY_ACTION_REJECT:
		res->verdict = POLICY_REJECT;
		snprintf(res->reply, sizeof(res->reply), "554 5.7.1 %s", text);
		break;
	case POLICY_ACTION_DEFER:
		res->verdict = POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "451 4.7.1 %s", text);
		break;
	case POLICY_ACTION_TAG:
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "%s", text);
		break;
	case POLICY_ACTION_IGNORE:
		res->verdict = POLICY_PASS;
		snprintf(res->reply, sizeof(res->reply), "%s", text);
		break;
	}
}

unsigned policy_tarpit_delay_ms(const struct config *cfg, unsigned rcpts_unknown)
{
	unsigned long long d;

	if (!cfg->recipients.enabled || cfg->tarpit_after == 0 || rcpts_unknown <= cfg->tarpit_after)
		return 0;
	d = (unsigned long long)cfg->tarpit_delay_ms * (rcpts_unknown - cfg->tarpit_after);
	/* Progressive, but never past a command timeout's worth of waiting. */
	return d > 60000 ? 60000 : (unsigned)d;
}

bool policy_harvest_limit_reached(const struct config *cfg, unsigned rcpts_unknown)
{
	return cfg->recipients.enabled && cfg->max_unknown_rcpts > 0 &&
	       rcpts_unknown >= cfg->max_unknown_rcpts;
}

/* Whether this engine looks at this session at all. */
static bool policy_engine_applies(const struct policy_engine *e, const struct policy_facts *f)
{
	const struct policy_common *c = e->common;

	if (e->legitimacy && f->allowlisted)
		return false;
	if (c == NULL)
		return true;
	if (!c->enabled || (c->direction & f->direction) == 0)
		return false;
	if (c->whitelist.count > 0 && cidr_list_contains(&c->whitelist, (const struct sockaddr *)&f->client))
		return false;
	if (f->sender != NULL && c->nwhitelist_senders > 0 &&
	    policy_sender_listed(c->whitelist_senders, c->nwhitelist_senders, f->sender))
		return false;
	return true;
}

/* Fold one engine's answer in; true when the stage is decided. */
static bool policy_run_absorb(struct policy_run *run, const struct policy_engine *e,
			      const struct policy_result *r)
{
	if (r->delay_ms > run->res.delay_ms)
		run->res.delay_ms = r->delay_ms;
	switch (r->verdict) {
	case POLICY_PASS:
		return false;
	case POLICY_TAG:
		log_info("tag stage=%s engine=%s client=%s reason=\"%s\"", stage_names[run->stage],
			 e->name, run->f->client_addr, r->reply);
		return false;
	case POLICY_ACCEPT:
		run->f->allowlisted = true;
		log_info("allow stage=%s engine=%s client=%s", stage_names[run->stage], e->name,
			 run->f->client_addr);
		return false;
	case POLICY_DEFER:
	case POLICY_REJECT:
		run->res.verdict = r->verdict;
		run->res.disconnect = r->disconnect;
		snprintf(run->res.reply, sizeof(run->res.reply), "%s", r->reply);
		snprintf(run->res.engine, sizeof(run->res.engine), "%s", e->name);
		log_info("%s stage=%s engine=%s client=%s helo=%s from=<%s> to=<%s> reply=\"%s\"",
			 r->verdict == POLICY_REJECT ? "reject" : "defer", stage_names[run->stage], e->name,
			 run->f->client_addr, run->f->helo ? run->f->helo : "-",
			 run->f->sender ? run->f->sender : "-", run->f->rcpt ? run->f->rcpt : "-", r->reply);
		return true;
	}
	return false;
}

static void policy_engine_done(void *arg, const struct policy_result *r);

/* Walk the engines from run->next; 1 when one of them is now waiting. */
static int policy_run_continue(struct policy_run *run)
{
	struct policy *p = run->p;

	while (run->next < p->nengines) {
		const struct policy_engine *e = &p->engines[run->next++];
		struct policy_result r;
		void *handle = NULL;

		if (e->stage != run->stage || !policy_engine_applies(e, run->f))
			continue;
		memset(&r, 0, sizeof(r));
		if (e->check(e->state, run->f, &r, policy_engine_done, run, &handle) == 1) {
			run->waiting = e;
			run->handle = handle;
			return 1;
		}
		if (policy_run_absorb(run, e, &r))
			break;
	}
	return 0;
}

static void policy_run_free(struct policy_run *run)
{
	policy_unref(run->p);
	free(run);
}

static void policy_engine_done(void *arg, const struct policy_result *r)
{
	struct policy_run *run = arg;
	const struct policy_engine *e = run->waiting;
	struct policy_result final;

	run->waiting = NULL;
	run->handle = NULL;
	if (!policy_run_absorb(run, e, r) && policy_run_continue(run) == 1)
		return;
	final = run->res;
	run->done(run->arg, &final);
	policy_run_free(run);
}

int policy_run(struct policy *p, enum policy_stage stage, struct policy_facts *f,
	       struct policy_result *res, policy_done_cb done, void *arg, struct policy_run **out)
{
	struct policy_run *run = xcalloc(1, sizeof(*run));

	run->p = policy_ref(p);
	run->stage = stage;
	run->f = f;
	run->done = done;
	run->arg = arg;
	if (policy_run_continue(run) == 1) {
		*out = run;
		return 1;
	}
	*res = run->res;
	*out = NULL;
	policy_run_free(run);
	return 0;
}

void policy_run_cancel(struct policy_run *run)
{
	if (run == NULL)
		return;
	if (run->waiting != NULL && run->waiting->cancel != NULL)
		run->waiting->cancel(run->waiting->state, run->handle);
	policy_run_free(run);
}

void policy_session_end(struct policy *p, struct policy_facts *f)
{
	for (size_t i = 0; i < p->nengines; i++) {
		if (p->engines[i].session_end != NULL)
			p->engines[i].session_end(p->engines[i].state, f);
	}
}

void policy_facts_free(struct policy_facts *f)
{
	free(f->ptr_name);
	free(f->received_spf);
	free(f->hop_helo);
	f->ptr_name = NULL;
	f->received_spf = NULL;
	f->hop_helo = NULL;
}
