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

#include "content/bayes.h"
#include "content/dkim_engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/log.h"
#include "queue/envelope.h"
#include "store/bayes_store.h"

struct content_job_facts {
	char queue_id[QUEUE_ID_LEN + 1];
	char *sender;
	char *helo;
	char *received_spf;
	struct autolearn_facts policy;
};

/* The token store opens once: a reload keeps it, and with it autolearn's rate guard. */
static int content_spam_open_bayes(struct postern *pt, const struct config *cfg, char *err, size_t errlen)
{
	struct bayes_store *store;
	char *path, e[256];

	if (pt->bayes != NULL)
		return 0;
	if (cfg->bayes_database != NULL)
		path = xstrdup(cfg->bayes_database);
	else
		path = xasprintf("%s/bayes.db", cfg->data_dir);
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
	return 0;
}

void content_spam_shutdown(struct postern *pt)
{
	bayes_free(pt->bayes);
	pt->bayes = NULL;
}

struct content_job_facts *content_job_facts_new(const struct content_scan_facts *f)
{
	struct content_job_facts *jf = xcalloc(1, sizeof(*jf));

	snprintf(jf->queue_id, sizeof(jf->queue_id), "%s", f->queue_id != NULL ? f->queue_id : "-");
	jf->sender = xstrdup(f->sender != NULL ? f->sender : "");
	jf->helo = f->helo != NULL ? xstrdup(f->helo) : NULL;
	jf->received_spf = f->received_spf != NULL ? xstrdup(f->received_spf) : NULL;
	autolearn_facts_from(&jf->policy, f->policy);
	return jf;
}

void content_job_facts_free(struct content_job_facts *jf)
{
	if (jf == NULL)
		return;
	free(jf->sender);
	free(jf->helo);
	free(jf->received_spf);
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
	content_pipeline_run_auth(p, raw, len, NULL, &auth, out);
	if (sp->bayes == NULL || !sp->autolearn)
		return;
	/* Only the sender, for autolearn's per-domain guard: the session's envelope is not ours to read here. */
	memset(&env, 0, sizeof(env));
	snprintf(env.id, sizeof(env.id), "%s", jf->queue_id);
	env.sender = jf->sender;
	memset(&m, 0, sizeof(m));
	m.env = &env;
	m.raw = raw;
	m.raw_len = len;
	m.mime = out->mime;
	content_autolearn(sp->bayes, &sp->al, &m, out, &jf->policy, jf->queue_id);
}
