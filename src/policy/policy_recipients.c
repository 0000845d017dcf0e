/*
 * Recipient validation at RCPT for the protected domains, and the tarpit
 * against directory harvesting.
 *
 * validation "list" checks the recipient against [recipients] list;
 * "callout" asks the domain's own server (policy/callout.h) and "ldap" a
 * directory (policy/ldap_lookup.h), both caching the answer in the policy
 * state, so it survives reloads. Local domains are left alone (the
 * session knows its users) and so are domains we do not protect. An
 * unknown recipient is refused with 550 5.1.1 and counted in the
 * session's facts; past tarpit_after unknown recipients every RCPT reply
 * of the session waits a little longer, and at max_unknown the session
 * is closed with 421: a harvester learns slowly and not much.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/context.h"
#include "policy/callout.h"
#include "policy/ldap_lookup.h"
#include "policy/policy_engine.h"
#include "smtp/smtp_client.h"

#define LOG_MODULE "policy"
#include "core/log.h"

#define RECIPIENTS_ENGINE "recipients"
/* A client waits 5 minutes for a RCPT reply (RFC 5321 4.5.3.2.3): a probe gets well under that. */
#define CALLOUT_DEADLINE_MS 30000
#define CALLOUT_CONNECT_MS 5000
#define CALLOUT_CACHE_MAX 100000       /* answers kept, about 100 bytes each */

enum rcpt_validation { VALIDATE_NONE, VALIDATE_LIST, VALIDATE_CALLOUT, VALIDATE_LDAP };

struct recipients {
	struct postern *pt;
	struct policy_state *st;
	const struct config *cfg;
	enum rcpt_validation validation;
	char **keys;                   /* "domain@local" (domain lower-cased), "domain@" for wildcards; sorted */
	size_t nkeys;
	struct ldap_lookup *ldap;      /* validation = ldap: the directory and its connections */
};

struct recipients_probe {
	struct recipients *r;
	struct policy_facts *f;
	struct callout *co;            /* one of co and lq is the probe in progress */
	struct ldap_query *lq;
	const char *method;            /* for the log: "callout" or "ldap look-up" */
	policy_done_cb done;
	void *arg;
	char rcpt[CALLOUT_ADDRESS_MAX];
};

/* "domain@local" with the domain lower-cased: the list's sort key. */
static char *recipients_key(const char *local, size_t locallen, const char *domain)
{
	size_t domainlen = strlen(domain);
	char *key = xmalloc(domainlen + 1 + locallen + 1);

	for (size_t i = 0; i < domainlen; i++)
		key[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + ('a' - 'A') : domain[i]);
	key[domainlen] = '@';
	memcpy(key + domainlen + 1, local, locallen);
	key[domainlen + 1 + locallen] = '\0';
	return key;
}

static int recipients_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The list as sorted keys: one binary search finds an exact address and a
 * second one its domain's wildcard, whatever the size of the list.
 */
static void recipients_index_list(struct recipients *r, const struct config *cfg)
{
	r->keys = xcalloc(cfg->nrcpt_list ? cfg->nrcpt_list : 1, sizeof(*r->keys));
	for (size_t i = 0; i < cfg->nrcpt_list; i++) {
		const char *e = cfg->rcpt_list[i];
		const char *at = strrchr(e, '@');

		if (at == NULL)                  /* "domain": a wildcard like "@domain" */
			r->keys[r->nkeys++] = recipients_key("", 0, e);
		else
			r->keys[r->nkeys++] = recipients_key(e, (size_t)(at - e), at + 1);
	}
	qsort(r->keys, r->nkeys, sizeof(*r->keys), recipients_key_cmp);
}

static bool recipients_has_key(const struct recipients *r, char *key)
{
	bool found = bsearch(&key, r->keys, r->nkeys, sizeof(*r->keys), recipients_key_cmp) != NULL;

	free(key);
	return found;
}

static bool recipients_listed(const struct recipients *r, const char *rcpt, const char *at)
{
	return recipients_has_key(r, recipients_key(rcpt, (size_t)(at - rcpt), at + 1)) ||
	       recipients_has_key(r, recipients_key("", 0, at + 1));
}

/* Too many unknown recipients: a directory harvest; the session ends. */
static bool recipients_harvest(const struct config *cfg, const struct policy_facts *f,
			       struct policy_result *res)
{
	if (!policy_harvest_limit_reached(cfg, f->rcpts_unknown))
		return false;
	res->verdict = POLICY_DEFER;
	res->disconnect = true;
	snprintf(res->engine, sizeof(res->engine), "%s", RECIPIENTS_ENGINE);
	snprintf(res->reply, sizeof(res->reply), "421 4.7.0 Too many unknown recipients");
	return true;
}

static void recipients_unknown(const struct config *cfg, struct policy_facts *f, struct policy_result *res)
{
	struct engine_result *sym;

	f->rcpts_unknown++;
	snprintf(res->engine, sizeof(res->engine), "%s", RECIPIENTS_ENGINE);
	switch (cfg->recipients.action) {
	case POLICY_ACTION_REJECT:
		res->verdict = POLICY_REJECT;
		snprintf(res->reply, sizeof(res->reply),
			 "550 5.1.1 <%s>: Recipient address rejected: User unknown", f->rcpt);
		break;
	case POLICY_ACTION_DEFER:
		res->verdict = POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply),
			 "450 4.1.1 <%s>: Recipient address rejected: User unknown", f->rcpt);
		break;
	case POLICY_ACTION_TAG:
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "unknown recipient <%s>", f->rcpt);
		sym = engine_results_add(f->symbols, "policy", "RCPT_UNKNOWN");
		sym->score = cfg->recipients.score;
		sym->category = CATEGORY_DYNAMIC;
		snprintf(sym->reason, sizeof(sym->reason), "unknown recipient <%s>", f->rcpt);
		smtp_text_clean(sym->reason);
		break;
	case POLICY_ACTION_IGNORE:
		res->verdict = POLICY_PASS;
		log_info("unknown recipient <%s> from %s (action ignore)", f->rcpt, f->client_addr);
		break;
	}
	/* the address came from the client: no control characters in our reply */
	smtp_text_clean(res->reply);
}

/* Fill *res for an answer about f->rcpt, tarpit and harvest limit included. */
static void recipients_judge(const struct config *cfg, struct policy_facts *f, enum callout_answer answer,
			     struct policy_result *res)
{
	if (answer == CALLOUT_UNKNOWN) {
		recipients_unknown(cfg, f, res);
		if (recipients_harvest(cfg, f, res))
			log_info("client %s: %u unknown recipients, closing the session", f->client_addr,
				 f->rcpts_unknown);
	}
	res->delay_ms = policy_tarpit_delay_ms(cfg, f->rcpts_unknown);
}

/* What goes into "RCPT TO:<...>" must not end the command early or break the dialogue. */
static bool recipients_probeable(const char *rcpt)
{
	if (strlen(rcpt) >= CALLOUT_ADDRESS_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)rcpt; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

static void recipients_probe_done(void *arg, enum callout_answer answer, const char *detail)
{
	struct recipients_probe *pr = arg;
	struct recipients *r = pr->r;
	struct policy_result res;

	memset(&res, 0, sizeof(res));
	if (answer == CALLOUT_TEMPFAIL) {
		log_warn("%s for <%s> inconclusive (%s): accepting", pr->method, pr->rcpt, detail);
	} else {
		log_info("%s for <%s>: %s (%s)", pr->method, pr->rcpt,
			 answer == CALLOUT_VALID ? "valid" : "unknown", detail);
		callout_cache_put(r->st->callouts, pr->rcpt, answer,
				  answer == CALLOUT_VALID ? r->cfg->callout_cache_ttl
							  : r->cfg->callout_negative_ttl);
	}
	recipients_judge(r->cfg, pr->f, answer, &res);
	pr->done(pr->arg, &res);
	free(pr);
}

static struct recipients_probe *recipients_probe_new(struct recipients *r, struct policy_facts *f,
						     const char *method, policy_done_cb done, void *arg)
{
	struct recipients_probe *pr = xcalloc(1, sizeof(*pr));

	pr->r = r;
	pr->f = f;
	pr->method = method;
	pr->done = done;
	pr->arg = arg;
	snprintf(pr->rcpt, sizeof(pr->rcpt), "%s", f->rcpt);
	return pr;
}

static int recipients_start_probe(struct recipients *r, struct policy_facts *f,
				  const struct relay_domain *dom, policy_done_cb done, void *arg,
				  void **handle)
{
	struct recipients_probe *pr = recipients_probe_new(r, f, "callout", done, arg);
	struct callout_params p = {
		.helo = r->cfg->hostname, .hosts = dom->hosts, .nhosts = dom->nhosts,
		.connect_timeout_ms = CALLOUT_CONNECT_MS, .deadline_ms = CALLOUT_DEADLINE_MS,
	};

	pr->co = callout_start(r->pt->base, r->pt->dns, &p, f->rcpt, recipients_probe_done, pr);
	*handle = pr;
	return 1;
}

/* libldap blocks: the look-up runs on a worker and answers on the loop. */
static int recipients_start_ldap(struct recipients *r, struct policy_facts *f, policy_done_cb done,
				 void *arg, void **handle)
{
	struct recipients_probe *pr = recipients_probe_new(r, f, "ldap look-up", done, arg);

	pr->lq = ldap_query_start(r->ldap, r->pt->workers, f->rcpt, recipients_probe_done, pr);
	*handle = pr;
	return 1;
}

static int recipients_check(void *state, struct policy_facts *f, struct policy_result *res,
			    policy_done_cb done, void *arg, void **handle)
{
	struct recipients *r = state;
	const struct config *cfg = r->cfg;
	const struct relay_domain *dom;
	enum callout_answer answer;
	const char *at;

	res->delay_ms = policy_tarpit_delay_ms(cfg, f->rcpts_unknown);
	if (recipients_harvest(cfg, f, res))
		return 0;
	if (r->validation == VALIDATE_NONE || f->rcpt == NULL || (at = strrchr(f->rcpt, '@')) == NULL)
		return 0;
	if (config_is_local_domain(cfg, at + 1) || (dom = config_find_domain(cfg, at + 1)) == NULL)
		return 0;
	if (r->validation == VALIDATE_LIST) {
		recipients_judge(cfg, f, recipients_listed(r, f->rcpt, at) ? CALLOUT_VALID : CALLOUT_UNKNOWN,
				 res);
		return 0;
	}
	if (!recipients_probeable(f->rcpt))
		return 0;
	if (callout_cache_get(r->st->callouts, f->rcpt, &answer)) {
		recipients_judge(cfg, f, answer, res);
		return 0;
	}
	if (r->validation == VALIDATE_LDAP)
		return recipients_start_ldap(r, f, done, arg, handle);
	if (dom->nhosts == 0) {
		log_debug("no host to ask about <%s>: accepting", f->rcpt);
		return 0;
	}
	return recipients_start_probe(r, f, dom, done, arg, handle);
}

static void recipients_cancel(void *state, void *handle)
{
	struct recipients_probe *pr = handle;

	if (pr->lq != NULL)
		ldap_query_cancel(pr->lq);
	else
		callout_cancel(pr->co);
	free(pr);
}

static void recipients_free(void *state)
{
	struct recipients *r = state;

	for (size_t i = 0; i < r->nkeys; i++)
		free(r->keys[i]);
	free(r->keys);
	ldap_lookup_unref(r->ldap);
	free(r);
}

static int recipients_parse_validation(const char *s, enum rcpt_validation *out)
{
	if (s == NULL || strcasecmp(s, "none") == 0)
		*out = VALIDATE_NONE;
	else if (strcasecmp(s, "list") == 0)
		*out = VALIDATE_LIST;
	else if (strcasecmp(s, "callout") == 0)
		*out = VALIDATE_CALLOUT;
	else if (strcasecmp(s, "ldap") == 0)
		*out = VALIDATE_LDAP;
	else
		return -1;
	return 0;
}

/* The directory of validation = ldap; NULL with err filled when a setting is bad. */
static struct ldap_lookup *recipients_ldap_new(const struct config *cfg, char *err, size_t errlen)
{
	struct ldap_lookup_params p = {
		.uri = cfg->ldap_uri, .base = cfg->ldap_base, .filter = cfg->ldap_filter,
		.bind_dn = cfg->ldap_bind_dn, .bind_password = cfg->ldap_bind_password,
		.timeout_ms = cfg->ldap_timeout_ms,
	};
	char why[512];
	struct ldap_lookup *l;

	/* ldap_uri and ldap_base are there: config_finish refuses validation = ldap without them. */
	l = ldap_lookup_new(&p, why, sizeof(why));
	if (l == NULL)
		snprintf(err, errlen, "[recipients] %s", why);
	return l;
}

int policy_recipients_build(struct policy_build *b)
{
	struct config *cfg = b->cfg;
	struct recipients *r;
	struct ldap_lookup *ldap = NULL;
	enum rcpt_validation validation;
	struct policy_engine e = {
		.name = RECIPIENTS_ENGINE, .stage = POLICY_STAGE_RCPT, .common = &cfg->recipients,
		.legitimacy = false, .check = recipients_check, .cancel = recipients_cancel,
		.free = recipients_free,
	};

	if (recipients_parse_validation(cfg->rcpt_validation, &validation) < 0) {
		snprintf(b->err, b->errlen, "[recipients] validation: unknown method \"%s\"",
			 cfg->rcpt_validation);
		return -1;
	}
	if (validation == VALIDATE_LDAP && (ldap = recipients_ldap_new(cfg, b->err, b->errlen)) == NULL)
		return -1;
	/* the cache has no parameters (TTLs go with each answer): one for the process */
	if ((validation == VALIDATE_CALLOUT || validation == VALIDATE_LDAP) && b->state->callouts == NULL)
		b->state->callouts = callout_cache_new(CALLOUT_CACHE_MAX, NULL, NULL);
	r = xcalloc(1, sizeof(*r));
	r->ldap = ldap;
	r->pt = b->pt;
	r->st = b->state;
	r->cfg = cfg;
	r->validation = validation;
	if (validation == VALIDATE_LIST)
		recipients_index_list(r, cfg);
	e.state = r;
	policy_build_add(b, &e);
	return 0;
}

void policy_state_free_recipients(struct policy_state *st)
{
	if (st == NULL)
		return;
	callout_cache_free(st->callouts);
	st->callouts = NULL;
}
