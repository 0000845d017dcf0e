/*
 * SPF at MAIL FROM (RFC 7208): the sender domain (the HELO name for the
 * null sender, RFC 7208 2.4) says which hosts may send its mail. The
 * result is mapped through [spf] fail / softfail / temperror / permerror
 * to an action; pass, neutral and none always pass. Replies use the codes
 * of RFC 7372: 5.7.23 for a fail, 4.7.24/5.7.24 for errors.
 *
 * A tagged result adds SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR or
 * SPF_PERMERROR with [spf] score; a pass adds SPF_PASS with a small
 * negative score, a hint for the content stage that the sender is not
 * forged. With [spf] header the Received-SPF header is left in the facts
 * for the session to add to the message.
 *
 * A [perimeter] relay is not who SPF is about: for its sessions the MAIL
 * instance passes, and a DATA instance checks the envelope sender against
 * the first untrusted Received hop, with the HELO that hop gave (as its
 * relay recorded it; the session's HELO when it did not).
 */
#define LOG_MODULE "policy"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/spf.h"
#include "policy/policy_engine.h"

#define SPF_ENGINE "spf"
#define SPF_PASS_SCORE (-0.5)
#define SPF_SHOWN_MAX 160       /* of the sender and of texts from DNS in replies */
#define SPF_HEADER_MAX 4096

struct spf_engine {
	struct postern *pt;
	const struct config *cfg;
	bool perimeter_hop;         /* the DATA instance */
};

struct spf_job {
	struct spf_engine *e;
	struct policy_facts *f;
	policy_done_cb done;
	void *arg;
	struct spf_request *req;
};

/* Text from the client or from DNS in a reply: printable ASCII, bounded. */
static void spf_shown(const char *s, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *s != '\0' && n + 1 < outlen && n < SPF_SHOWN_MAX; s++)
		out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[n] = '\0';
}

static enum policy_action spf_action_for(const struct config *cfg, enum spf_result result)
{
	switch (result) {
	case SPF_FAIL:
		return cfg->spf_fail;
	case SPF_SOFTFAIL:
		return cfg->spf_softfail;
	case SPF_TEMPERROR:
		return cfg->spf_temperror;
	case SPF_PERMERROR:
		return cfg->spf_permerror;
	case SPF_NONE:
	case SPF_NEUTRAL:
	case SPF_PASS:
		break;
	}
	return POLICY_ACTION_IGNORE;
}

static const char *spf_symbol(enum spf_result result)
{
	switch (result) {
	case SPF_FAIL:
		return "SPF_FAIL";
	case SPF_SOFTFAIL:
		return "SPF_SOFTFAIL";
	case SPF_TEMPERROR:
		return "SPF_TEMPERROR";
	case SPF_PERMERROR:
		return "SPF_PERMERROR";
	case SPF_PASS:
		return "SPF_PASS";
	case SPF_NONE:
	case SPF_NEUTRAL:
		break;
	}
	return "SPF_NONE";
}

/* What the reply says after the codes: the why of this result. */
static void spf_reply_text(const struct spf_outcome *o, char *out, size_t outlen)
{
	char sender[SPF_SHOWN_MAX + 1], why[SPF_SHOWN_MAX + 1];

	spf_shown(o->sender, sender, sizeof(sender));
	switch (o->result) {
	case SPF_FAIL:
		spf_shown(o->explanation, why, sizeof(why));
		snprintf(out, outlen, "<%s>: SPF fail: %s", sender, why);
		break;
	case SPF_SOFTFAIL:
		spf_shown(o->domain, why, sizeof(why));
		snprintf(out, outlen, "<%s>: SPF softfail: %s does not designate %s as permitted sender",
			 sender, why, o->client_ip);
		break;
	case SPF_TEMPERROR:
		snprintf(out, outlen, "SPF temporary error");
		break;
	default:
		spf_shown(o->problem, why, sizeof(why));
		snprintf(out, outlen, "<%s>: SPF permanent error: %s", sender, why);
		break;
	}
}

/* Reply codes per result and action (RFC 7372 2 and 3.2). */
static const char *spf_reply_code(enum spf_result result, enum policy_action action)
{
	bool reject = action == POLICY_ACTION_REJECT;

	if (result == SPF_FAIL || result == SPF_SOFTFAIL)
		return reject ? "550 5.7.23" : "451 4.7.23";
	return reject ? "550 5.7.24" : "451 4.7.24";
}

static void spf_add_symbol(struct policy_facts *f, const char *symbol, double score,
			   const char *reason)
{
	struct engine_result *r = engine_results_add(f->symbols, "policy", symbol);

	r->score = score;
	r->category = CATEGORY_SPAM;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static void spf_judge(const struct spf_engine *e, struct policy_facts *f,
		      const struct spf_outcome *o, struct policy_result *res)
{
	enum policy_action action = spf_action_for(e->cfg, o->result);
	char text[POLICY_REPLY_MAX - 16], reason[ENGINE_REASON_MAX];

	snprintf(res->engine, sizeof(res->engine), SPF_ENGINE);
	snprintf(reason, sizeof(reason), "SPF %s for %s from %s", spf_result_str(o->result),
		 o->domain, o->client_ip);
	if (o->result == SPF_PASS) {
		spf_add_symbol(f, "SPF_PASS", SPF_PASS_SCORE, reason);
		return;
	}
	if (o->result == SPF_NONE || o->result == SPF_NEUTRAL)
		return;
	spf_reply_text(o, text, sizeof(text));
	switch (action) {
	case POLICY_ACTION_REJECT:
	case POLICY_ACTION_DEFER:
		res->verdict = action == POLICY_ACTION_REJECT ? POLICY_REJECT : POLICY_DEFER;
		snprintf(res->reply, sizeof(res->reply), "%s %s", spf_reply_code(o->result, action),
			 text);
		break;
	case POLICY_ACTION_TAG:
		spf_add_symbol(f, spf_symbol(o->result), e->cfg->spf.score, reason);
		res->verdict = POLICY_TAG;
		snprintf(res->reply, sizeof(res->reply), "%s %s", spf_symbol(o->result), text);
		break;
	case POLICY_ACTION_IGNORE:
		log_info("spf client=%s %s (ignored)", f->client_addr, reason);
		break;
	}
}

/* Keep the Received-SPF header for the session (one per transaction). */
static void spf_keep_header(struct policy_facts *f, const struct spf_outcome *o)
{
	struct strbuf sb;

	strbuf_init(&sb, SPF_HEADER_MAX);
	if (spf_received_header(o, &sb) < 0) {
		log_warn("spf client=%s: Received-SPF header too long, not added", f->client_addr);
		strbuf_free(&sb);
		return;
	}
	free(f->received_spf);
	f->received_spf = strbuf_detach(&sb, NULL);
}

static void spf_on_done(void *arg, const struct spf_outcome *o)
{
	struct spf_job *j = arg;
	struct policy_result res = { .verdict = POLICY_PASS };

	if (j->e->cfg->spf_header)
		spf_keep_header(j->f, o);
	spf_judge(j->e, j->f, o, &res);
	j->done(j->arg, &res);
	free(j);
}

static int spf_policy_check(void *state, struct policy_facts *f, struct policy_result *res,
			    policy_done_cb done, void *arg, void **handle)
{
	struct spf_engine *e = state;
	const struct sockaddr *client = (const struct sockaddr *)&f->client;
	const char *helo = f->helo;
	struct spf_job *j;

	if (e->perimeter_hop ? !f->perimeter_hop : f->via_perimeter)
		return 0;
	if (f->sender == NULL || e->pt->dns == NULL ||
	    (client->sa_family != AF_INET && client->sa_family != AF_INET6))
		return 0;
	if (e->perimeter_hop && f->hop_helo != NULL)
		helo = f->hop_helo;
	j = xcalloc(1, sizeof(*j));
	j->e = e;
	j->f = f;
	j->done = done;
	j->arg = arg;
	j->req = spf_check(e->pt->base, e->pt->dns, client, helo, f->sender, e->cfg->hostname,
			   spf_on_done, j);
	*handle = j;
	return 1;
}

static void spf_policy_cancel(void *state, void *handle)
{
	struct spf_job *j = handle;

	spf_cancel(j->req);
	free(j);
}

static void spf_add_engine(struct policy_build *b, bool perimeter_hop)
{
	struct spf_engine *e = xcalloc(1, sizeof(*e));
	struct policy_engine pe;

	e->pt = b->pt;
	e->cfg = b->cfg;
	e->perimeter_hop = perimeter_hop;
	pe = (struct policy_engine){
		.name = SPF_ENGINE,
		.stage = perimeter_hop ? POLICY_STAGE_DATA : POLICY_STAGE_MAIL,
		.common = &b->cfg->spf,
		.legitimacy = true,
		.state = e,
		.check = spf_policy_check,
		.cancel = spf_policy_cancel,
		.free = free,
	};
	policy_build_add(b, &pe);
}

int policy_spf_build(struct policy_build *b)
{
	if (!b->cfg->spf.enabled)
		return 0;
	spf_add_engine(b, false);
	if (b->cfg->perimeter_relays.count > 0)
		spf_add_engine(b, true);
	return 0;
}
