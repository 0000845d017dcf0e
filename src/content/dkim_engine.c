/*
 * The "dkim" content engine (see dkim_engine.h). The verifier and DMARC
 * take a TXT look-up function; this engine hands them one that counts
 * look-ups and spends a single per-message time budget, so a message
 * with many signatures or a slow DNS cannot pin a worker thread.
 */
#define LOG_MODULE "dkim"
#include "content/dkim_engine.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content/auth_results.h"
#include "content/dmarc.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "queue/envelope.h"

#define DKIM_ENGINE_HEADER_MAX 8192

struct dkim_engine {
	struct dkim_engine_options o;
	char *authserv_id;
	char *dns_servers;
};

/* Look-ups left and the time they must end by, for one message. */
struct dkim_budget {
	const struct dkim_engine *e;
	unsigned left;
	struct timespec deadline;
};

static void dkim_budget_start(struct dkim_budget *b, const struct dkim_engine *e)
{
	b->e = e;
	b->left = DKIM_ENGINE_MAX_LOOKUPS;
	clock_gettime(CLOCK_MONOTONIC, &b->deadline);
	b->deadline.tv_sec += e->o.timeout_ms / 1000;
	b->deadline.tv_nsec += (long)(e->o.timeout_ms % 1000) * 1000000L;
	if (b->deadline.tv_nsec >= 1000000000L) {
		b->deadline.tv_sec++;
		b->deadline.tv_nsec -= 1000000000L;
	}
}

static long dkim_budget_ms_left(const struct dkim_budget *b)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(b->deadline.tv_sec - now.tv_sec) * 1000L + (b->deadline.tv_nsec - now.tv_nsec) / 1000000L;
}

/* A spent budget answers like a DNS timeout: the result is a temperror, never a fail. */
static void dkim_budget_lookup(void *arg, const char *name, struct dkim_txt *out)
{
	struct dkim_budget *b = arg;
	long ms = dkim_budget_ms_left(b);
	struct dkim_dns_sync sync;

	if (b->left == 0 || ms <= 0) {
		out->status = DNS_TEMPFAIL;
		out->n = 0;
		snprintf(out->error, sizeof(out->error), "look-up budget of the message spent");
		return;
	}
	b->left--;
	if (b->e->o.lookup != NULL) {
		b->e->o.lookup(b->e->o.lookup_arg, name, out);
		return;
	}
	sync.servers = b->e->dns_servers;
	sync.timeout_ms = (unsigned)ms;
	sync.tries = 1;
	dkim_dns_sync_lookup(&sync, name, out);
}

void dkim_engine_spf_result(const char *received_spf, char *out, size_t outlen)
{
	const char *p = strchr(received_spf, ':');
	size_t n = 0;

	out[0] = '\0';
	if (p == NULL || outlen == 0)
		return;
	for (p++; *p == ' ' || *p == '\t'; p++)
		;
	while (isalpha((unsigned char)p[n]) && n + 1 < outlen) {
		out[n] = (char)tolower((unsigned char)p[n]);
		n++;
	}
	out[n] = '\0';
	if (isalpha((unsigned char)p[n]))
		out[0] = '\0';
}

static void dkim_add_symbols(struct engine_results *out, const struct dkim_verdict *v, size_t n)
{
	const struct dkim_verdict *valid = NULL, *invalid = NULL;
	struct engine_result *r;

	for (size_t i = 0; i < n; i++) {
		if (valid == NULL && dkim_verdict_trusted(&v[i]))
			valid = &v[i];
		if (invalid == NULL && (v[i].result == DKIM_FAIL || v[i].result == DKIM_PERMERROR))
			invalid = &v[i];
	}
	if (valid != NULL) {
		r = engine_results_add(out, "dkim", "DKIM_VALID");
		r->score = DKIM_ENGINE_VALID_SCORE;
		r->category = CATEGORY_SPAM;
		snprintf(r->reason, sizeof(r->reason), "DKIM pass for %.120s (s=%.60s)", valid->domain, valid->selector);
	}
	if (invalid != NULL) {
		r = engine_results_add(out, "dkim", "DKIM_INVALID");
		r->score = DKIM_ENGINE_INVALID_SCORE;
		r->category = CATEGORY_SPAM;
		snprintf(r->reason, sizeof(r->reason), "DKIM %s for %.100s: %.120s", dkim_result_str(invalid->result),
			 invalid->domain[0] ? invalid->domain : "?", invalid->reason);
	}
}

/* The SPF identity DMARC aligns: the MAIL FROM domain, or the HELO name for <>. */
static const char *dkim_spf_domain(const struct content_auth *auth)
{
	const char *d;

	if (auth == NULL || auth->mailfrom == NULL)
		return NULL;
	d = address_domain(auth->mailfrom);
	if (d[0] != '\0')
		return d;
	return auth->helo;
}

static void dkim_dmarc(const struct content_message *m, const char *spf, const struct dkim_verdict *v,
		       size_t n, struct dkim_budget *budget, struct dmarc_outcome *dm)
{
	char from[DKIM_DOMAIN_MAX + 1];
	struct dmarc_input in;

	memset(&in, 0, sizeof(in));
	if (dmarc_from_domain(m->raw, m->raw_len, from, sizeof(from)) == 0)
		in.from_domain = from;
	in.spf_pass = strcmp(spf, "pass") == 0;
	in.spf_domain = dkim_spf_domain(m->auth);
	in.dkim = v;
	in.ndkim = n;
	in.pct_roll = arc4random_uniform(100);
	dmarc_evaluate(&in, dkim_budget_lookup, budget, dm);
}

static void dkim_add_dmarc(struct engine_results *out, const struct dmarc_outcome *dm)
{
	struct engine_result *r;

	if (dm->result != DMARC_FAIL)
		return;
	r = engine_results_add(out, "dkim", "DMARC_FAIL");
	r->category = CATEGORY_SPAM;
	snprintf(r->reason, sizeof(r->reason), "DMARC fail for %.80s (policy %s of %.80s): %.60s", dm->from_domain,
		 dmarc_policy_str(dm->policy), dm->policy_domain, dm->reason);
	switch (dm->disposition) {
	case DMARC_POLICY_REJECT:
		r->action = CONTENT_REJECT;
		snprintf(r->reply, sizeof(r->reply), "550 5.7.1 DMARC policy of %.200s: reject", dm->from_domain);
		break;
	case DMARC_POLICY_QUARANTINE:
		r->action = CONTENT_QUARANTINE;
		break;
	case DMARC_POLICY_NONE:
		r->score = DKIM_ENGINE_DMARC_NONE_SCORE;
		break;
	}
}

static void dkim_write_header(const struct dkim_engine *e, const struct content_message *m, const char *spf,
			      const struct dkim_verdict *v, size_t n, const struct dmarc_outcome *dm)
{
	struct auth_results_in in;
	struct strbuf sb;

	memset(&in, 0, sizeof(in));
	in.authserv_id = e->authserv_id;
	in.spf_result = spf[0] != '\0' ? spf : NULL;
	if (m->auth->mailfrom != NULL && m->auth->mailfrom[0] != '\0')
		in.spf_mailfrom = m->auth->mailfrom;
	in.spf_helo = m->auth->helo;
	in.dkim_checked = true;
	in.dkim = v;
	in.ndkim = n;
	in.dmarc = dm;
	strbuf_init(&sb, DKIM_ENGINE_HEADER_MAX);
	if (auth_results_header(&in, &sb) < 0) {
		log_warn("Authentication-Results too long, not added");
		strbuf_free(&sb);
		return;
	}
	free(m->auth->auth_results);
	m->auth->auth_results = strbuf_detach(&sb, NULL);
}

/*
 * Unsigned mail whose From domain publishes no DMARC policy (or that has
 * no usable From) has nothing to add: Received-SPF already tells SPF, and
 * such mail stays exactly as sent.
 */
static bool dkim_worth_a_header(size_t nsigs, const struct dmarc_outcome *dm)
{
	if (nsigs > 0)
		return true;
	return dm != NULL && dm->result != DMARC_NONE && dm->result != DMARC_PERMERROR;
}

static void dkim_engine_check(void *state, const struct content_message *m, struct engine_results *out)
{
	const struct dkim_engine *e = state;
	struct dkim_verdict *v = xcalloc(DKIM_ENGINE_MAX_SIGS, sizeof(*v));
	struct dmarc_outcome *dm = NULL;
	struct dkim_verify_opts vo;
	struct dkim_budget budget;
	char spf[16] = "";
	size_t n;

	dkim_budget_start(&budget, e);
	memset(&vo, 0, sizeof(vo));
	vo.lookup = dkim_budget_lookup;
	vo.lookup_arg = &budget;
	vo.max_sigs = DKIM_ENGINE_MAX_SIGS;
	n = dkim_verify(m->raw, m->raw_len, &vo, v, DKIM_ENGINE_MAX_SIGS);
	dkim_add_symbols(out, v, n);
	if (m->auth != NULL && m->auth->received_spf != NULL)
		dkim_engine_spf_result(m->auth->received_spf, spf, sizeof(spf));
	if (e->o.dmarc) {
		dm = xcalloc(1, sizeof(*dm));
		dkim_dmarc(m, spf, v, n, &budget, dm);
		dkim_add_dmarc(out, dm);
	}
	if (e->o.auth_results && m->auth != NULL && dkim_worth_a_header(n, dm))
		dkim_write_header(e, m, spf, v, n, dm);
	free(dm);
	free(v);
}

static void dkim_engine_free(void *state)
{
	struct dkim_engine *e = state;

	free(e->authserv_id);
	free(e->dns_servers);
	free(e);
}

struct content_engine *dkim_content_engine(const struct dkim_engine_options *o)
{
	struct dkim_engine *e = xcalloc(1, sizeof(*e));
	struct content_engine *ce = xcalloc(1, sizeof(*ce));

	e->o = *o;
	e->authserv_id = xstrdup(o->authserv_id != NULL ? o->authserv_id : "localhost");
	e->dns_servers = xstrdup_or_null(o->dns_servers);
	e->o.authserv_id = e->authserv_id;
	e->o.dns_servers = e->dns_servers;
	if (e->o.timeout_ms == 0)
		e->o.timeout_ms = 5000;
	ce->name = "dkim";
	ce->state = e;
	ce->check = dkim_engine_check;
	ce->free = dkim_engine_free;
	return ce;
}
