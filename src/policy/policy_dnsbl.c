/*
 * DNSBL at connect and RHSBL at MAIL FROM: every [dnsbl "zone"] (or
 * [rhsbl "zone"]) list is asked at once through the shared dnsbl context
 * (policy/dnsbl.h), whose cache and deadline live in struct policy_state.
 * The first hit by priority decides, with its list's reply template.
 *
 * With [dnsbl] reject_at_rcpt (the default) a listed client is not turned
 * away at connect: the reply is kept in the facts and every RCPT gets it.
 * Senders whitelisted by whitelist_senders then still get through, and
 * the log shows who the client wanted to reach.
 *
 * Mail through a [perimeter] relay is not judged by the relay's address:
 * the connect instance lets such sessions pass, and a DATA instance asks
 * the lists about the first untrusted Received hop the session found,
 * refusing that message (never the relay's session) on a hit.
 *
 * The deadline is [dnsbl] timeout when the context is first made; lists
 * that have not answered by then count as not listed, so a dead list
 * never stalls a session. A later change of timeout takes effect at the
 * next restart: replacing the context would drop the checks in flight.
 */
#define LOG_MODULE "policy"
#include "policy/policy_engine.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/context.h"
#include "core/log.h"
#include "policy/dnsbl.h"

#define DNSBL_CACHE_MAX 10000
#define DNSBL_NEG_TTL 60
#define DNSBL_MAX_TTL 3600

/* What an engine instance asks the lists about. */
enum bl_mode {
	BL_CONNECT,                    /* the connecting client's address */
	BL_PERIMETER_HOP,              /* at DATA, the first untrusted Received hop's address */
	BL_SENDER_DOMAIN,              /* RHSBL at MAIL */
};

/* One engine: the lists of one kind, converted from the config once per policy. */
struct bl_engine {
	const struct config *cfg;
	struct policy_state *st;
	const struct policy_common *common;
	const char *kind;              /* "dnsbl" or "rhsbl": engine name and symbol prefix */
	struct dnsbl_list *lists;
	size_t nlists;
	enum bl_mode mode;
};

/* One check in flight. */
struct bl_job {
	struct bl_engine *eng;
	struct policy_facts *f;
	struct dnsbl_check *check;
	policy_done_cb done;
	void *arg;
};

static void bl_lists_free(struct dnsbl_list *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lists[i].name);
		free(lists[i].zone);
		free(lists[i].codes);
		free(lists[i].reply_template);
	}
	free(lists);
}

/* "codes:127.0.0.2,127.0.0.4" into host-order codes; -1 on a bad address. */
static int bl_parse_codes(const char *text, struct dnsbl_list *l)
{
	char *copy = xstrdup(text), *save = NULL;
	int rc = 0;

	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		struct in_addr a;

		while (isspace((unsigned char)*tok))
			tok++;
		if (inet_pton(AF_INET, tok, &a) != 1) {
			rc = -1;
			break;
		}
		l->codes = xreallocarray(l->codes, l->ncodes + 1, sizeof(*l->codes));
		l->codes[l->ncodes++] = ntohl(a.s_addr);
	}
	free(copy);
	return rc == 0 && l->ncodes > 0 ? 0 : -1;
}

/* A [dnsbl "zone"] section's match string into the client's terms. */
static int bl_parse_match(const char *match, struct dnsbl_list *l)
{
	if (match == NULL || strcmp(match, "any") == 0) {
		l->match = DNSBL_MATCH_ANY;
		return 0;
	}
	if (strncmp(match, "mask:", 5) == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(match + 5, &end, 16);
		if (errno != 0 || end == match + 5 || *end != '\0' || v > 0xffffffffUL)
			return -1;
		l->match = DNSBL_MATCH_MASK;
		l->mask = (uint32_t)v;
		return 0;
	}
	if (strncmp(match, "codes:", 6) == 0) {
		l->match = DNSBL_MATCH_CODES;
		return bl_parse_codes(match + 6, l);
	}
	return -1;
}

static int bl_lists_from_specs(const struct dnsbl_spec *specs, size_t n, const char *section,
			       struct bl_engine *eng, char *err, size_t errlen)
{
	eng->lists = xcalloc(n, sizeof(*eng->lists));
	eng->nlists = n;
	for (size_t i = 0; i < n; i++) {
		struct dnsbl_list *l = &eng->lists[i];

		l->name = xstrdup(specs[i].zone);
		l->zone = xstrdup(specs[i].zone);
		l->reply_template = xstrdup_or_null(specs[i].reply);
		l->priority = (int)specs[i].priority;
		if (bl_parse_match(specs[i].match, l) < 0) {
			snprintf(err, errlen, "[%s \"%s\"] match: cannot read \"%s\"", section,
				 specs[i].zone, specs[i].match);
			return -1;
		}
	}
	return 0;
}

/* "DNSBL_ZEN_SPAMHAUS_ORG": the symbol of a hit. */
static void bl_symbol(const char *kind, const char *zone, char *out, size_t outlen)
{
	size_t i = 0;

	for (const char *p = kind; *p && i + 1 < outlen; p++)
		out[i++] = (char)toupper((unsigned char)*p);
	if (i + 1 < outlen)
		out[i++] = '_';
	for (const char *p = zone; *p && i + 1 < outlen; p++)
		out[i++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
	out[i] = '\0';
}

static void bl_add_symbol(const struct bl_engine *eng, struct policy_facts *f, const char *zone,
			  const char *reason)
{
	char symbol[ENGINE_SYMBOL_MAX];
	struct engine_result *r;

	bl_symbol(eng->kind, zone, symbol, sizeof(symbol));
	r = engine_results_add(f->symbols, "policy", symbol);
	r->score = eng->common->score;
	r->category = CATEGORY_SPAM;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

/* The reply for a hit: the list's template, or a plain one should it not expand. */
static void bl_reply_text(const struct bl_engine *eng, const struct policy_facts *f,
			  const struct dnsbl_list *l, char *out, size_t outlen)
{
	if (l->reply_template != NULL &&
	    dnsbl_format_reply(l->reply_template, f->client_addr, l->name, l->zone, out, outlen) == 0)
		return;
	if (eng->mode != BL_SENDER_DOMAIN)
		snprintf(out, outlen, "554 5.7.1 Service unavailable; client [%s] blocked using %s",
			 f->client_addr, l->zone);
	else
		snprintf(out, outlen, "554 5.7.1 Sender address rejected: domain listed at %s", l->zone);
}

/* The text of a reply after "NNN X.Y.Z ". */
static const char *bl_reply_tail(const char *reply)
{
	const char *p = reply;

	if (strlen(p) >= 4 && isdigit((unsigned char)p[0]) && p[3] == ' ')
		p += 4;
	if (isdigit((unsigned char)p[0]) && p[1] == '.') {
		while (*p && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
	}
	return p;
}

/*
 * A template reply under the engine's action: reject keeps the template's
 * own codes (a 4xx template defers), defer turns it into 451 4.7.1.
 */
static void bl_set_refusal(enum policy_action action, const char *reply, struct policy_result *res)
{
	if (action == POLICY_ACTION_DEFER || reply[0] == '4') {
		res->verdict = POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "451 4.7.1 %s", bl_reply_tail(reply));
	} else {
		res->verdict = POLICY_REJECT;
		snprintf(res->reply, sizeof(res->reply), "%s", reply);
	}
}

static void bl_judge_hit(const struct bl_engine *eng, struct policy_facts *f,
			 const struct dnsbl_result *hit, struct policy_result *res)
{
	enum policy_action action = eng->common->action;
	char reply[POLICY_REPLY_MAX];

	bl_reply_text(eng, f, hit->list, reply, sizeof(reply));
	snprintf(res->engine, sizeof(res->engine), "%s", eng->kind);
	switch (action) {
	case POLICY_ACTION_REJECT:
	case POLICY_ACTION_DEFER:
		if (eng->mode == BL_CONNECT && eng->cfg->dnsbl_reject_at_rcpt) {
			struct policy_result later;

			memset(&later, 0, sizeof(later));
			bl_set_refusal(action, reply, &later);
			snprintf(f->dnsbl_reply, sizeof(f->dnsbl_reply), "%s", later.reply);
			res->verdict = POLICY_TAG;
			snprintf(res->reply, sizeof(res->reply), "listed at %s, refused at RCPT",
				 hit->list->zone);
			bl_add_symbol(eng, f, hit->list->zone, res->reply);
			return;
		}
		bl_set_refusal(action, reply, res);
		res->disconnect = eng->mode == BL_CONNECT;
		return;
	case POLICY_ACTION_TAG:
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "listed at %s", hit->list->zone);
		bl_add_symbol(eng, f, hit->list->zone, res->reply);
		return;
	case POLICY_ACTION_IGNORE:
		log_info("%s: %s listed at %s (action ignore)", eng->kind,
			 eng->mode == BL_SENDER_DOMAIN ? f->sender : f->client_addr, hit->list->zone);
		return;
	}
}

static void bl_on_result(void *arg, const struct dnsbl_result *results, size_t n,
			 const struct dnsbl_result *hit)
{
	struct bl_job *job = arg;
	struct policy_result res;

	memset(&res, 0, sizeof(res));
	for (size_t i = 0; i < n; i++) {
		if (results[i].status == DNSBL_ERROR)
			log_debug("%s: %s: %s", job->eng->kind, results[i].list->zone,
				  results[i].error ? results[i].error : "no answer");
	}
	if (hit != NULL)
		bl_judge_hit(job->eng, job->f, hit, &res);
	job->done(job->arg, &res);
	free(job);
}

static int bl_check(void *state, struct policy_facts *f, struct policy_result *res,
		    policy_done_cb done, void *arg, void **handle)
{
	struct bl_engine *eng = state;
	struct bl_job *job;
	const char *at;

	if (eng->st->dnsbl == NULL || (eng->mode == BL_CONNECT && f->via_perimeter) ||
	    (eng->mode == BL_PERIMETER_HOP && !f->perimeter_hop))
		return 0;
	job = xcalloc(1, sizeof(*job));
	job->eng = eng;
	job->f = f;
	job->done = done;
	job->arg = arg;
	if (eng->mode != BL_SENDER_DOMAIN) {
		job->check = dnsbl_check_ip(eng->st->dnsbl, eng->lists, eng->nlists,
					    (const struct sockaddr *)&f->client, bl_on_result, job);
	} else if (f->sender != NULL && (at = strrchr(f->sender, '@')) != NULL) {
		job->check = dnsbl_check_domain(eng->st->dnsbl, eng->lists, eng->nlists, at + 1,
						bl_on_result, job);
	}
	if (job->check == NULL) {
		free(job);
		return 0;
	}
	*handle = job;
	return 1;
}

static void bl_cancel(void *state, void *handle)
{
	struct bl_job *job = handle;

	dnsbl_cancel(job->check);
	free(job);
}

static void bl_engine_free(void *state)
{
	struct bl_engine *eng = state;

	bl_lists_free(eng->lists, eng->nlists);
	free(eng);
}

/* A DNSBL hit deferred to RCPT: every recipient gets the stored reply. */
static int bl_rcpt_check(void *state, struct policy_facts *f, struct policy_result *res,
			 policy_done_cb done, void *arg, void **handle)
{
	if (f->dnsbl_reply[0] == '\0')
		return 0;
	snprintf(res->engine, sizeof(res->engine), "dnsbl");
	res->verdict = f->dnsbl_reply[0] == '4' ? POLICY_DEFER : POLICY_REJECT;
	snprintf(res->reply, sizeof(res->reply), "%s", f->dnsbl_reply);
	return 0;
}

static void bl_ensure_context(struct policy_build *b)
{
	struct dnsbl_options o = {
		.deadline_ms = b->cfg->dnsbl_timeout_ms,
		.cache_max = DNSBL_CACHE_MAX,
		.neg_ttl = DNSBL_NEG_TTL,
		.max_ttl = DNSBL_MAX_TTL,
	};

	if (b->state->dnsbl == NULL)
		b->state->dnsbl = dnsbl_new(b->pt->base, b->pt->dns, &o);
}

static int bl_add_engine(struct policy_build *b, const char *kind, const struct dnsbl_spec *specs,
			 size_t n, const struct policy_common *common, enum bl_mode mode)
{
	static const enum policy_stage stages[] = {
		[BL_CONNECT] = POLICY_STAGE_CONNECT,
		[BL_PERIMETER_HOP] = POLICY_STAGE_DATA,
		[BL_SENDER_DOMAIN] = POLICY_STAGE_MAIL,
	};
	struct bl_engine *eng = xcalloc(1, sizeof(*eng));
	struct policy_engine e = {
		.name = kind,
		.stage = stages[mode],
		.common = common,
		.legitimacy = true,
		.state = eng,
		.check = bl_check,
		.cancel = bl_cancel,
		.free = bl_engine_free,
	};

	eng->cfg = b->cfg;
	eng->st = b->state;
	eng->common = common;
	eng->kind = kind;
	eng->mode = mode;
	if (bl_lists_from_specs(specs, n, kind, eng, b->err, b->errlen) < 0) {
		bl_engine_free(eng);
		return -1;
	}
	policy_build_add(b, &e);
	return 0;
}

int policy_dnsbl_build(struct policy_build *b)
{
	const struct config *cfg = b->cfg;
	struct policy_engine rcpt = {
		.name = "dnsbl",
		.stage = POLICY_STAGE_RCPT,
		.common = &cfg->dnsbl,
		.legitimacy = true,
		.check = bl_rcpt_check,
	};

	if (cfg->ndnsbls == 0 && cfg->nrhsbls == 0)
		return 0;
	if (b->pt->dns == NULL) {
		log_warn("dnsbl: no DNS resolver, the [dnsbl] and [rhsbl] lists are not checked");
		return 0;
	}
	bl_ensure_context(b);
	if (cfg->ndnsbls > 0) {
		if (bl_add_engine(b, "dnsbl", cfg->dnsbls, cfg->ndnsbls, &cfg->dnsbl, BL_CONNECT) < 0)
			return -1;
		if (cfg->dnsbl_reject_at_rcpt)
			policy_build_add(b, &rcpt);
		if (cfg->perimeter_relays.count > 0 &&
		    bl_add_engine(b, "dnsbl", cfg->dnsbls, cfg->ndnsbls, &cfg->dnsbl, BL_PERIMETER_HOP) < 0)
			return -1;
	}
	if (cfg->nrhsbls > 0 &&
	    bl_add_engine(b, "rhsbl", cfg->rhsbls, cfg->nrhsbls, &cfg->rhsbl, BL_SENDER_DOMAIN) < 0)
		return -1;
	return 0;
}

void policy_state_free_dnsbl(struct policy_state *st)
{
	dnsbl_free(st->dnsbl);
	st->dnsbl = NULL;
}
