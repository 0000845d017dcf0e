/*
 * The spam engines of the content stage (see content_spam.h): assembly
 * from the config, and the per-message run that feeds the session's SPF
 * result to DMARC and teaches Bayes from the verdict.
 */
#define LOG_MODULE "content"
#include "content/content_spam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "content/bayes.h"
#include "content/dkim_engine.h"
#include "content/fuzzy.h"
#include "content/phishing.h"
#include "content/scoring.h"
#include "content/sender_history.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/log.h"
#include "core/workpool.h"
#include "queue/envelope.h"
#include "store/bayes_store.h"
#include "store/fuzzy_store.h"
#include "store/history_store.h"

struct content_job_facts {
	char queue_id[QUEUE_ID_LEN + 1];
	char *sender;
	char *helo;
	char *received_spf;
	char *client_addr;
	struct engine_results policy_results;
};

/* The token store opens once: a reload keeps it, and with it autolearn's rate guard. */
static int content_spam_open_bayes(struct postern *pt, const struct config *cfg, char *err, size_t errlen)
{
	struct bayes_store *store;
	char *path, e[256];

	if (pt->bayes != NULL)
		return 0;
	path = config_store_path(cfg, cfg->bayes_database, "bayes.db");
	store = bayes_store_open_sqlite(path, e, sizeof(e));
	if (store == NULL) {
		snprintf(err, errlen, "[bayes] database %s: %s", path, e);
		free(path);
		return -1;
	}
	log_info("bayes database %s open", path);
	free(path);
	pt->bayes = bayes_new(store, NULL);
	return 0;
}

/* The fuzzy store opens once; a reload only changes the options. */
static int content_spam_open_fuzzy(struct postern *pt, const struct config *cfg, char *err, size_t errlen)
{
	struct fuzzy_options o;
	struct fuzzy_store *store;
	char *path, e[256];

	fuzzy_options_from_config(cfg, &o);
	if (pt->fuzzy != NULL) {
		fuzzy_set_options(pt->fuzzy, &o);
		return 0;
	}
	path = config_store_path(cfg, cfg->fuzzy_database, "fuzzy.db");
	if ((store = fuzzy_store_open_sqlite(path, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "[fuzzy] database %s: %s", path, e);
		free(path);
		return -1;
	}
	log_info("fuzzy database %s open (%ld signatures)", path, store->ops->count(store->be));
	free(path);
	pt->fuzzy = fuzzy_new(store, &o);
	return 0;
}

static int content_spam_open_history(struct postern *pt, const struct config *cfg, char *err, size_t errlen)
{
	struct sender_history_options o = {
		.min_messages = cfg->history_min_messages,
		.max_spam_percent = cfg->history_max_spam_percent,
		.dampen_percent = cfg->history_dampen_percent,
		.half_life_seconds = cfg->history_half_life,
		.suspected_scl = cfg->scoring_suspected_scl,
		.spam_scl = cfg->scoring_spam_scl,
	};
	struct history_store *store;
	char *path, e[256];

	if (pt->history != NULL) {
		sender_history_set_options(pt->history, &o);
		return 0;
	}
	path = config_store_path(cfg, cfg->history_database, "history.db");
	if ((store = history_store_open_sqlite(path, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "[history] database %s: %s", path, e);
		free(path);
		return -1;
	}
	log_info("sender history database %s open", path);
	free(path);
	pt->history = sender_history_new(store, &o);
	return 0;
}

/* The brand and shortener lists as the engine wants them: NULL for the built-in ones. */
static struct content_engine *content_spam_phishing(const struct config *cfg)
{
	struct phishing_options o;

	memset(&o, 0, sizeof(o));
	if (cfg->nphishing_brands > 0) {
		o.brands = (const char *const *)cfg->phishing_brands;
		o.nbrands = cfg->nphishing_brands;
	}
	if (cfg->nphishing_shorteners > 0) {
		o.shorteners = (const char *const *)cfg->phishing_shorteners;
		o.nshorteners = cfg->nphishing_shorteners;
	}
	return phishing_engine_create(&o);
}

int content_spam_engines(struct postern *pt, const struct config *cfg, struct content_pipeline *p,
			 struct content_spam *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (cfg->bayes_enabled) {
		if (content_spam_open_bayes(pt, cfg, err, errlen) < 0)
			return -1;
		out->bayes = pt->bayes;
		out->autolearn = cfg->bayes_autolearn;
		out->al.spam_score = cfg->bayes_autolearn_spam_score;
		out->al.ham_score = cfg->bayes_autolearn_ham_score;
		content_pipeline_add(p, bayes_content_engine(pt->bayes));
	}
	if (cfg->dkim_verify) {
		struct dkim_engine_options o = {
			.authserv_id = cfg->hostname,
			.dmarc = cfg->dkim_dmarc,
			.auth_results = cfg->dkim_authentication_results,
			.dns_servers = cfg->dns_servers,
			.timeout_ms = cfg->dkim_dns_timeout_ms,
		};

		content_pipeline_add(p, dkim_content_engine(&o));
	}
	if (cfg->phishing_enabled)
		content_pipeline_add(p, content_spam_phishing(cfg));
	if (cfg->fuzzy_enabled) {
		if (content_spam_open_fuzzy(pt, cfg, err, errlen) < 0)
			return -1;
		out->fuzzy = pt->fuzzy;
		content_pipeline_add(p, fuzzy_content_engine(pt->fuzzy));
	}
	if (cfg->history_enabled) {
		if (content_spam_open_history(pt, cfg, err, errlen) < 0)
			return -1;
		out->history = pt->history;
		content_pipeline_add(p, sender_history_content_engine(pt->history));
	}
	return 0;
}

static void content_spam_refresh_run(void *arg)
{
	struct postern *pt = arg;

	if (pt->bayes != NULL)
		bayes_refresh(pt->bayes);
	if (pt->fuzzy != NULL)
		fuzzy_refresh(pt->fuzzy);
}

static void content_spam_refresh_done(void *arg)
{
	struct postern *pt = arg;

	pt->bayes_refreshing = false;
}

/* One refresh at a time, at low priority: a client waiting for its reply goes first. */
static void content_spam_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	struct postern *pt = arg;

	if ((pt->bayes == NULL && pt->fuzzy == NULL) || pt->bayes_refreshing || pt->workers == NULL)
		return;
	pt->bayes_refreshing = true;
	workpool_submit(pt->workers, WORK_LOW, content_spam_refresh_run, content_spam_refresh_done, pt);
}

void content_spam_watch(struct postern *pt)
{
	unsigned every = pt->cfg->bayes_reload_check ? pt->cfg->bayes_reload_check : 10;

	/* Even without Bayes now: a reload may bring it. Again on a reload: the interval may have changed. */
	if (pt->bayes_refresh == NULL)
		pt->bayes_refresh = event_new(pt->base, -1, EV_PERSIST, content_spam_refresh_cb, pt);
	event_add(pt->bayes_refresh, &(struct timeval){ every, 0 });
}

void content_spam_shutdown(struct postern *pt)
{
	if (pt->bayes_refresh != NULL)
		event_free(pt->bayes_refresh);
	pt->bayes_refresh = NULL;
	bayes_free(pt->bayes);
	pt->bayes = NULL;
	fuzzy_free(pt->fuzzy);
	pt->fuzzy = NULL;
	sender_history_free(pt->history);
	pt->history = NULL;
}

struct content_job_facts *content_job_facts_new(const struct content_scan_facts *f)
{
	struct content_job_facts *jf = xcalloc(1, sizeof(*jf));

	snprintf(jf->queue_id, sizeof(jf->queue_id), "%s", f->queue_id != NULL ? f->queue_id : "-");
	jf->sender = xstrdup(f->sender != NULL ? f->sender : "");
	jf->helo = xstrdup_or_null(f->helo);
	jf->received_spf = xstrdup_or_null(f->received_spf);
	jf->client_addr = xstrdup_or_null(f->client_addr);
	engine_results_append_all(&jf->policy_results, f->policy);
	return jf;
}

void content_job_facts_free(struct content_job_facts *jf)
{
	if (jf == NULL)
		return;
	free(jf->sender);
	free(jf->helo);
	free(jf->received_spf);
	free(jf->client_addr);
	engine_results_free(&jf->policy_results);
	free(jf);
}

void content_spam_run(struct content_pipeline *p, const struct content_spam *sp,
		      const struct content_job_facts *jf, const unsigned char *raw, size_t len,
		      struct content_result *out)
{
	struct content_auth auth;
	struct content_message m;
	struct envelope env;

	if (jf == NULL) {
		content_pipeline_run(p, raw, len, NULL, out);
		return;
	}
	memset(&auth, 0, sizeof(auth));
	auth.received_spf = jf->received_spf;
	auth.mailfrom = jf->sender;
	auth.helo = jf->helo;
	auth.client_addr = jf->client_addr;
	auth.policy = &jf->policy_results;
	content_pipeline_run_auth(p, raw, len, NULL, &auth, out);
	memset(&m, 0, sizeof(m));
	m.raw = raw;
	m.raw_len = len;
	m.mime = out->mime;
	m.auth = &auth;
	if (sp->fuzzy != NULL && out->mime != NULL)
		fuzzy_after_verdict(sp->fuzzy, out->mime, &out->results, jf->queue_id);
	if (sp->history != NULL)
		sender_history_after_verdict(sp->history, &m, &out->results, jf->queue_id);
	if (sp->bayes == NULL || !sp->autolearn)
		return;
	/* Only the sender, for autolearn's per-domain guard: the session's envelope is not ours to read here. */
	memset(&env, 0, sizeof(env));
	snprintf(env.id, sizeof(env.id), "%s", jf->queue_id);
	env.sender = jf->sender;
	m.env = &env;
	content_autolearn(sp->bayes, &sp->al, &m, out, jf->queue_id);
}
