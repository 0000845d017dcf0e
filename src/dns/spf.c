/*
 * SPF check_host() (RFC 7208 4) as a state machine over dns_query_raw().
 *
 * One query is outstanding at a time: each answer is parsed into req->ans
 * and then the stored continuation (req->resume) carries on. include:
 * pushes a frame, redirect= replaces the current one. Errors (temperror,
 * permerror) always end the whole check, so frames only ever return pass,
 * fail, softfail or neutral to their parent.
 */
#include "dns/spf.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "dns/dns.h"

#define LOG_MODULE "spf"
#include "core/log.h"

#define SPF_DEPTH_MAX (SPF_LOOKUP_LIMIT + 2)   /* every include costs a lookup */
#define SPF_SENDER_MAX 512
#define SPF_PROBLEM_MAX 256

struct spf_frame {
	char domain[SPF_DOMAIN_MAX + 1];
	struct spf_record *rec;
	size_t next;                 /* mechanism under evaluation */
	bool via_redirect;
};

/* A parsed DNS answer: strings for TXT, MX and PTR; addresses for A and AAAA. */
struct spf_answer {
	enum dns_status st;
	char **strs;
	size_t *lens;
	size_t nstrs;
	struct spf_ip *addrs;
	size_t naddrs;
};

typedef void (*spf_step)(struct spf_request *req);

struct spf_request {
	struct dns_resolver *r;
	spf_done_cb cb;
	void *arg;
	struct spf_ip ip;
	char client_ip[INET6_ADDRSTRLEN];
	char *sender, *local, *sender_domain, *helo, *receiver;
	const char *identity;

	struct spf_frame frames[SPF_DEPTH_MAX];
	size_t depth;
	unsigned lookups, voids;

	struct dns_request *query;
	int qtype;
	spf_step resume;
	struct spf_answer ans;

	char target[SPF_DOMAIN_MAX + 1];   /* the current mechanism's domain */
	char **hosts;                      /* MX or PTR names still to resolve */
	size_t nhosts, host_i;

	bool p_done;                       /* %{p}: names that map back to the client */
	char **validated;
	size_t nvalidated;
	spf_step after_p;

	struct event *done_ev;
	enum spf_result result;
	char mechanism[SPF_RECORD_MAX + 1];
	char problem[SPF_PROBLEM_MAX];
	char *exp_text;                    /* the exp= TXT record, unexpanded */
	char *explanation;
	bool explanation_default;
};

static void spf_frame_begin(struct spf_request *req);
static void spf_eval(struct spf_request *req);

const char *spf_result_str(enum spf_result res)
{
	switch (res) {
	case SPF_NONE: return "none";
	case SPF_NEUTRAL: return "neutral";
	case SPF_PASS: return "pass";
	case SPF_FAIL: return "fail";
	case SPF_SOFTFAIL: return "softfail";
	case SPF_TEMPERROR: return "temperror";
	case SPF_PERMERROR: return "permerror";
	}
	return "unknown";
}

static void spf_strs_free(char **strs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(strs[i]);
	free(strs);
}

static void spf_answer_clear(struct spf_answer *a)
{
	spf_strs_free(a->strs, a->nstrs);
	free(a->lens);
	free(a->addrs);
	memset(a, 0, sizeof(*a));
}

/* ---- DNS answer parsing ---- */

/* Offset just past the (possibly compressed) name at off, or 0 if malformed. */
static size_t dns_skip_name(const unsigned char *m, size_t len, size_t off)
{
	while (off < len) {
		unsigned char c = m[off];

		if (c == 0)
			return off + 1;
		if ((c & 0xc0) == 0xc0)
			return off + 2 <= len ? off + 2 : 0;
		if ((c & 0xc0) != 0)
			return 0;
		off += 1 + (size_t)c;
	}
	return 0;
}

static void answer_add_str(struct spf_answer *a, char *s, size_t len)
{
	a->strs = xreallocarray(a->strs, a->nstrs + 1, sizeof(*a->strs));
	a->lens = xreallocarray(a->lens, a->nstrs + 1, sizeof(*a->lens));
	a->strs[a->nstrs] = s;
	a->lens[a->nstrs] = len;
	a->nstrs++;
}

/* TXT: the character-strings of one record joined without separator (RFC 7208 3.3). */
static int answer_add_txt(struct spf_answer *a, const unsigned char *rd, size_t rdlen)
{
	char *s = xmalloc(rdlen + 1);
	size_t n = 0, i = 0;

	while (i < rdlen) {
		size_t l = rd[i++];

		if (i + l > rdlen) {
			free(s);
			return -1;
		}
		memcpy(s + n, rd + i, l);
		n += l;
		i += l;
	}
	s[n] = '\0';
	answer_add_str(a, s, n);
	return 0;
}

static int answer_add_name(struct spf_answer *a, const unsigned char *msg, size_t len,
			   const unsigned char *name)
{
	char *s = NULL;
	long enclen;

	if (ares_expand_name(name, msg, (int)len, &s, &enclen) != ARES_SUCCESS)
		return -1;
	answer_add_str(a, xstrdup(s), strlen(s));
	ares_free_string(s);
	return 0;
}

static void answer_add_addr(struct spf_answer *a, int family, const unsigned char *rd)
{
	struct spf_ip *ip;

	a->addrs = xreallocarray(a->addrs, a->naddrs + 1, sizeof(*a->addrs));
	ip = &a->addrs[a->naddrs++];
	memset(ip, 0, sizeof(*ip));
	ip->family = family;
	memcpy(ip->addr, rd, family == AF_INET ? 4 : 16);
}

/*
 * Collect the answer records of the asked type, whatever their owner: a
 * CNAME chain's target records are the answer (RFC 1034 3.6.2).
 */
static int dns_answer_parse(const unsigned char *m, size_t len, int type, struct spf_answer *a)
{
	size_t off = 12, qd, an;

	if (len < 12)
		return -1;
	qd = (size_t)(m[4] << 8 | m[5]);
	an = (size_t)(m[6] << 8 | m[7]);
	for (size_t i = 0; i < qd; i++) {
		off = dns_skip_name(m, len, off);
		if (off == 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	for (size_t i = 0; i < an; i++) {
		int rtype, rclass;
		size_t rdlen;
		const unsigned char *rd;
		int rc = 0;

		off = dns_skip_name(m, len, off);
		if (off == 0 || off + 10 > len)
			return -1;
		rtype = m[off] << 8 | m[off + 1];
		rclass = m[off + 2] << 8 | m[off + 3];
		rdlen = (size_t)(m[off + 8] << 8 | m[off + 9]);
		off += 10;
		if (off + rdlen > len)
			return -1;
		rd = m + off;
		off += rdlen;
		if (rtype != type || rclass != ns_c_in)
			continue;
		if (type == ns_t_txt)
			rc = answer_add_txt(a, rd, rdlen);
		else if (type == ns_t_a && rdlen == 4)
			answer_add_addr(a, AF_INET, rd);
		else if (type == ns_t_aaaa && rdlen == 16)
			answer_add_addr(a, AF_INET6, rd);
		else if (type == ns_t_ptr)
			rc = answer_add_name(a, m, len, rd);
		else if (type == ns_t_mx && rdlen > 2)
			rc = answer_add_name(a, m, len, rd + 2);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void spf_on_answer(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct spf_request *req = arg;

	req->query = NULL;
	spf_answer_clear(&req->ans);
	req->ans.st = st;
	if (st == DNS_OK && dns_answer_parse(answer, len, req->qtype, &req->ans) < 0) {
		spf_answer_clear(&req->ans);
		req->ans.st = DNS_MALFORMED;
	}
	if (req->ans.st == DNS_OK && req->ans.nstrs == 0 && req->ans.naddrs == 0)
		req->ans.st = DNS_NODATA;
	req->resume(req);
}

static void spf_query(struct spf_request *req, const char *name, int type, spf_step resume)
{
	log_debug("query name=%s type=%d", name, type);
	req->qtype = type;
	req->resume = resume;
	req->query = dns_query_raw(req->r, name, type, spf_on_answer, req);
}

static int spf_addr_type(const struct spf_request *req)
{
	return req->ip.family == AF_INET ? ns_t_a : ns_t_aaaa;
}

/* ---- finishing ---- */

static void spf_request_free(struct spf_request *req)
{
	for (size_t i = 0; i < req->depth; i++)
		spf_record_free(req->frames[i].rec);
	spf_answer_clear(&req->ans);
	spf_strs_free(req->hosts, req->nhosts);
	spf_strs_free(req->validated, req->nvalidated);
	if (req->done_ev != NULL)
		event_free(req->done_ev);
	free(req->sender);
	free(req->local);
	free(req->sender_domain);
	free(req->helo);
	free(req->receiver);
	free(req->exp_text);
	free(req->explanation);
	free(req);
}

static void spf_deliver(struct spf_request *req)
{
	struct spf_outcome out;

	memset(&out, 0, sizeof(out));
	out.result = req->result;
	out.identity = req->identity;
	out.domain = req->depth > 0 ? req->frames[0].domain : req->sender_domain;
	out.mechanism = req->mechanism;
	out.explanation = req->explanation ? req->explanation : "";
	out.explanation_default = req->explanation_default;
	out.problem = req->problem;
	out.client_ip = req->client_ip;
	out.sender = req->sender;
	out.helo = req->helo;
	out.receiver = req->receiver;
	log_debug("result=%s domain=%s mechanism=%s problem=%s", spf_result_str(out.result),
		  out.domain, out.mechanism, out.problem);
	req->cb(req->arg, &out);
	spf_request_free(req);
}

static void spf_on_done_event(evutil_socket_t fd, short what, void *arg)
{
	spf_deliver(arg);
}

static void spf_finish(struct spf_request *req, enum spf_result res, const char *mech)
{
	req->result = res;
	snprintf(req->mechanism, sizeof(req->mechanism), "%s", mech);
	spf_deliver(req);
}

/* The explanation is settled; the mechanism was recorded by spf_frame_end(). */
static void spf_finish_fail(struct spf_request *req)
{
	req->result = SPF_FAIL;
	spf_deliver(req);
}

/* temperror, permerror and the none of a missing record end the whole check. */
static void spf_abort(struct spf_request *req, enum spf_result res, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void spf_abort(struct spf_request *req, enum spf_result res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(req->problem, sizeof(req->problem), fmt, ap);
	va_end(ap);
	spf_finish(req, res, "");
}

/* ---- macro context and %{p} ---- */

/* RFC 7208 7.3: prefer the domain itself, then a subdomain, then any validated name. */
static const char *spf_pick_validated(const struct spf_request *req, const char *domain)
{
	size_t dlen = strlen(domain);

	for (size_t i = 0; i < req->nvalidated; i++)
		if (strcasecmp(req->validated[i], domain) == 0)
			return req->validated[i];
	for (size_t i = 0; i < req->nvalidated; i++) {
		const char *v = req->validated[i];
		size_t vlen = strlen(v);

		if (vlen > dlen && v[vlen - dlen - 1] == '.' && strcasecmp(v + vlen - dlen, domain) == 0)
			return v;
	}
	return req->nvalidated > 0 ? req->validated[0] : NULL;
}

static void spf_macro_env_fill(const struct spf_request *req, const char *domain,
			       struct spf_macro_env *env)
{
	memset(env, 0, sizeof(*env));
	env->sender = req->sender;
	env->local = req->local;
	env->sender_domain = req->sender_domain;
	env->domain = domain;
	env->helo = req->helo;
	env->receiver = req->receiver;
	env->validated = req->p_done ? spf_pick_validated(req, domain) : NULL;
	env->ip = &req->ip;
	env->now = time(NULL);
}

static struct spf_frame *spf_top(struct spf_request *req)
{
	return &req->frames[req->depth - 1];
}

static void spf_reverse_name(const struct spf_ip *ip, char *out, size_t outlen)
{
	size_t n = 0;

	if (ip->family == AF_INET) {
		snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", ip->addr[3], ip->addr[2],
			 ip->addr[1], ip->addr[0]);
		return;
	}
	for (int i = 15; i >= 0 && n + 4 < outlen; i--)
		n += (size_t)snprintf(out + n, outlen - n, "%x.%x.", ip->addr[i] & 0xf, ip->addr[i] >> 4);
	snprintf(out + n, outlen - n, "ip6.arpa");
}

static bool spf_answer_has_ip(const struct spf_answer *a, const struct spf_ip *ip)
{
	for (size_t i = 0; i < a->naddrs; i++)
		if (spf_ip_in_net(ip, a->addrs[i].addr, a->addrs[i].family, -1))
			return true;
	return false;
}

/* Take up to SPF_PTR_LIMIT PTR names as the hosts to validate. */
static void spf_take_ptr_names(struct spf_request *req)
{
	spf_strs_free(req->hosts, req->nhosts);
	req->hosts = NULL;
	req->nhosts = req->host_i = 0;
	if (req->ans.st != DNS_OK)
		return;
	req->nhosts = req->ans.nstrs < SPF_PTR_LIMIT ? req->ans.nstrs : SPF_PTR_LIMIT;
	req->hosts = xcalloc(req->nhosts ? req->nhosts : 1, sizeof(*req->hosts));
	for (size_t i = 0; i < req->nhosts; i++)
		req->hosts[i] = xstrdup(req->ans.strs[i]);
}

static void spf_p_next(struct spf_request *req);

static void spf_on_p_addr(struct spf_request *req)
{
	if (req->ans.st == DNS_OK && spf_answer_has_ip(&req->ans, &req->ip)) {
		req->validated = xreallocarray(req->validated, req->nvalidated + 1,
					       sizeof(*req->validated));
		req->validated[req->nvalidated++] = xstrdup(req->hosts[req->host_i]);
	}
	req->host_i++;
	spf_p_next(req);
}

static void spf_p_next(struct spf_request *req)
{
	while (req->host_i < req->nhosts && !spf_domain_queryable(req->hosts[req->host_i]))
		req->host_i++;
	if (req->host_i < req->nhosts) {
		spf_query(req, req->hosts[req->host_i], spf_addr_type(req), spf_on_p_addr);
		return;
	}
	req->p_done = true;
	req->after_p(req);
}

static void spf_on_p_ptr(struct spf_request *req)
{
	spf_take_ptr_names(req);
	spf_p_next(req);
}

/*
 * %{p} needs the client's validated names: look them up once per check
 * (not counted against the lookup limit, bounded by the PTR limit) and
 * carry on with `then`. Returns true when the lookup was started.
 */
static bool spf_need_p(struct spf_request *req, const char *spec, spf_step then)
{
	char rev[80];

	if (req->p_done || spec == NULL || !spf_macro_uses_p(spec))
		return false;
	req->after_p = then;
	spf_reverse_name(&req->ip, rev, sizeof(rev));
	spf_query(req, rev, ns_t_ptr, spf_on_p_ptr);
	return true;
}

/* ---- explanation ---- */

static void spf_explain_default(struct spf_request *req)
{
	free(req->explanation);
	req->explanation = xasprintf("%s is not allowed to send mail from %s",
				     req->client_ip, req->frames[0].domain);
	req->explanation_default = true;
}

static void spf_explain_text(struct spf_request *req)
{
	struct spf_macro_env env;
	struct strbuf sb;
	const char *text = req->exp_text;

	if (spf_need_p(req, text, spf_explain_text))
		return;
	spf_macro_env_fill(req, req->frames[0].domain, &env);
	strbuf_init(&sb, SPF_EXPLANATION_MAX);
	if (spf_macro_expand(text, &env, true, &sb) < 0) {
		strbuf_free(&sb);
		spf_explain_default(req);
	} else {
		req->explanation = strbuf_detach(&sb, NULL);
		if (req->explanation == NULL)
			req->explanation = xstrdup("");
	}
	spf_finish_fail(req);
}

/* RFC 7208 6.2: exactly one TXT record, else the default explanation. */
static void spf_on_explain_txt(struct spf_request *req)
{
	if (req->ans.st != DNS_OK || req->ans.nstrs != 1 ||
	    strlen(req->ans.strs[0]) != req->ans.lens[0] ||
	    !spf_macro_valid(req->ans.strs[0], true)) {
		spf_explain_default(req);
		spf_finish_fail(req);
		return;
	}
	req->exp_text = xstrdup(req->ans.strs[0]);
	spf_explain_text(req);
}

static void spf_explain(struct spf_request *req)
{
	struct spf_frame *f = &req->frames[0];
	struct spf_macro_env env;
	char name[SPF_DOMAIN_MAX + 1];

	if (spf_need_p(req, f->rec->exp, spf_explain))
		return;
	spf_macro_env_fill(req, f->domain, &env);
	if (spf_expand_domain(f->rec->exp, &env, name) < 0 || !spf_domain_queryable(name)) {
		spf_explain_default(req);
		spf_finish_fail(req);
		return;
	}
	spf_query(req, name, ns_t_txt, spf_on_explain_txt);
}

/* ---- frames ---- */

/* A frame decided; an include returns to its parent, the top ends the check. */
static void spf_frame_end(struct spf_request *req, enum spf_result res, const char *mech)
{
	struct spf_frame *parent;

	if (req->depth == 1) {
		snprintf(req->mechanism, sizeof(req->mechanism), "%s", mech);
		if (res == SPF_FAIL) {
			if (req->frames[0].rec->exp != NULL) {
				spf_explain(req);
			} else {
				spf_explain_default(req);
				spf_finish_fail(req);
			}
			return;
		}
		spf_finish(req, res, mech);
		return;
	}
	spf_record_free(spf_top(req)->rec);
	spf_top(req)->rec = NULL;
	req->depth--;
	parent = spf_top(req);
	if (res == SPF_PASS) {
		const struct spf_mech *m = &parent->rec->mechs[parent->next];

		spf_frame_end(req, m->qualifier, m->text);
		return;
	}
	parent->next++;
	spf_eval(req);
}

static void spf_match(struct spf_request *req)
{
	struct spf_frame *f = spf_top(req);
	const struct spf_mech *m = &f->rec->mechs[f->next];

	spf_frame_end(req, m->qualifier, m->text);
}

static void spf_no_match(struct spf_request *req)
{
	spf_top(req)->next++;
	spf_eval(req);
}

/* RFC 7208 4.5: exactly one record starting with "v=spf1". */
static void spf_on_record(struct spf_request *req)
{
	struct spf_frame *f = spf_top(req);
	const char *found = NULL;
	size_t nfound = 0, flen = 0;
	char err[SPF_PROBLEM_MAX];

	if (req->ans.st == DNS_TEMPFAIL || req->ans.st == DNS_MALFORMED) {
		spf_abort(req, SPF_TEMPERROR, "DNS error looking up the record of %s: %s",
			  f->domain, dns_status_str(req->ans.st));
		return;
	}
	for (size_t i = 0; i < req->ans.nstrs; i++) {
		if (spf_record_is_spf1(req->ans.strs[i], req->ans.lens[i])) {
			found = req->ans.strs[i];
			flen = req->ans.lens[i];
			nfound++;
		}
	}
	if (nfound == 0) {
		if (req->depth > 1 || f->via_redirect)
			spf_abort(req, SPF_PERMERROR, "no SPF record at %s (%s)", f->domain,
				  f->via_redirect ? "redirect" : "include");
		else
			spf_abort(req, SPF_NONE, "no SPF record at %s", f->domain);
		return;
	}
	if (nfound > 1) {
		spf_abort(req, SPF_PERMERROR, "%zu SPF records at %s", nfound, f->domain);
		return;
	}
	if (strlen(found) != flen) {
		spf_abort(req, SPF_PERMERROR, "SPF record of %s has a NUL byte", f->domain);
		return;
	}
	f->rec = spf_record_parse(found, err, sizeof(err));
	if (f->rec == NULL) {
		spf_abort(req, SPF_PERMERROR, "SPF record of %s: %s", f->domain, err);
		return;
	}
	f->next = 0;
	spf_eval(req);
}

static void spf_frame_begin(struct spf_request *req)
{
	spf_query(req, spf_top(req)->domain, ns_t_txt, spf_on_record);
}

/* RFC 7208 4.6.4: terms that query DNS, and the queries that found nothing. */
static bool spf_count_lookup(struct spf_request *req)
{
	if (++req->lookups > SPF_LOOKUP_LIMIT) {
		spf_abort(req, SPF_PERMERROR, "more than %d DNS-querying terms", SPF_LOOKUP_LIMIT);
		return false;
	}
	return true;
}

/* A DNS error is temperror; a void answer counts. False when the check ended. */
static bool spf_answer_usable(struct spf_request *req, const char *what)
{
	if (req->ans.st == DNS_TEMPFAIL || req->ans.st == DNS_MALFORMED) {
		spf_abort(req, SPF_TEMPERROR, "DNS error in %s for %s: %s", what, req->target,
			  dns_status_str(req->ans.st));
		return false;
	}
	if (req->ans.st != DNS_OK && ++req->voids > SPF_VOID_LIMIT) {
		spf_abort(req, SPF_PERMERROR, "more than %d void lookups", SPF_VOID_LIMIT);
		return false;
	}
	return true;
}

static bool spf_mech_addr_match(const struct spf_request *req, const struct spf_mech *m)
{
	int prefix = req->ip.family == AF_INET ? m->cidr4 : m->cidr6;

	for (size_t i = 0; i < req->ans.naddrs; i++)
		if (spf_ip_in_net(&req->ip, req->ans.addrs[i].addr, req->ans.addrs[i].family, prefix))
			return true;
	return false;
}

static const struct spf_mech *spf_current(struct spf_request *req)
{
	struct spf_frame *f = spf_top(req);

	return &f->rec->mechs[f->next];
}

static void spf_on_a(struct spf_request *req)
{
	if (!spf_answer_usable(req, "a"))
		return;
	if (spf_mech_addr_match(req, spf_current(req)))
		spf_match(req);
	else
		spf_no_match(req);
}

static void spf_on_exists(struct spf_request *req)
{
	if (!spf_answer_usable(req, "exists"))
		return;
	if (req->ans.naddrs > 0)
		spf_match(req);
	else
		spf_no_match(req);
}

static void spf_mx_next(struct spf_request *req);

static void spf_on_mx_addr(struct spf_request *req)
{
	if (req->ans.st == DNS_TEMPFAIL || req->ans.st == DNS_MALFORMED) {
		spf_abort(req, SPF_TEMPERROR, "DNS error resolving MX host %s: %s",
			  req->hosts[req->host_i], dns_status_str(req->ans.st));
		return;
	}
	if (spf_mech_addr_match(req, spf_current(req))) {
		spf_match(req);
		return;
	}
	req->host_i++;
	spf_mx_next(req);
}

static void spf_mx_next(struct spf_request *req)
{
	while (req->host_i < req->nhosts && !spf_domain_queryable(req->hosts[req->host_i]))
		req->host_i++;   /* the null MX "." and names DNS cannot carry */
	if (req->host_i < req->nhosts)
		spf_query(req, req->hosts[req->host_i], spf_addr_type(req), spf_on_mx_addr);
	else
		spf_no_match(req);
}

static void spf_on_mx(struct spf_request *req)
{
	if (!spf_answer_usable(req, "mx"))
		return;
	if (req->ans.nstrs > SPF_MX_LIMIT) {
		spf_abort(req, SPF_PERMERROR, "%s has more than %d MX records", req->target,
			  SPF_MX_LIMIT);
		return;
	}
	spf_strs_free(req->hosts, req->nhosts);
	req->hosts = req->ans.strs;
	req->nhosts = req->ans.nstrs;
	req->host_i = 0;
	req->ans.strs = NULL;
	req->ans.nstrs = 0;
	spf_mx_next(req);
}

/* Whether name is target or a subdomain of it (RFC 7208 5.5). */
static bool spf_name_within(const char *name, const char *target)
{
	size_t n = strlen(name), t = strlen(target);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == t)
		return strncasecmp(name, target, t) == 0;
	return n > t && name[n - t - 1] == '.' && strncasecmp(name + n - t, target, t) == 0;
}

static void spf_ptr_next(struct spf_request *req);

static void spf_on_ptr_addr(struct spf_request *req)
{
	if (req->ans.st == DNS_OK && spf_answer_has_ip(&req->ans, &req->ip)) {
		spf_match(req);
		return;
	}
	req->host_i++;   /* RFC 7208 5.5: a failed lookup skips that name */
	spf_ptr_next(req);
}

/* Validate only the names within the target: the others could not match. */
static void spf_ptr_next(struct spf_request *req)
{
	while (req->host_i < req->nhosts &&
	       (!spf_domain_queryable(req->hosts[req->host_i]) ||
		!spf_name_within(req->hosts[req->host_i], req->target)))
		req->host_i++;
	if (req->host_i < req->nhosts)
		spf_query(req, req->hosts[req->host_i], spf_addr_type(req), spf_on_ptr_addr);
	else
		spf_no_match(req);
}

static void spf_on_ptr(struct spf_request *req)
{
	if (req->ans.st != DNS_OK && req->ans.st != DNS_TEMPFAIL && req->ans.st != DNS_MALFORMED &&
	    ++req->voids > SPF_VOID_LIMIT) {
		spf_abort(req, SPF_PERMERROR, "more than %d void lookups", SPF_VOID_LIMIT);
		return;
	}
	spf_take_ptr_names(req);
	spf_ptr_next(req);
}

static void spf_include(struct spf_request *req)
{
	struct spf_frame *f;

	if (req->depth >= SPF_DEPTH_MAX) {
		spf_abort(req, SPF_PERMERROR, "include nesting too deep");
		return;
	}
	f = &req->frames[req->depth++];
	memset(f, 0, sizeof(*f));
	memcpy(f->domain, req->target, sizeof(f->domain));
	spf_frame_begin(req);
}

/* After the last mechanism: redirect= or the default neutral (RFC 7208 4.7). */
static void spf_eval_end(struct spf_request *req)
{
	struct spf_frame *f = spf_top(req);
	struct spf_macro_env env;

	if (f->rec->redirect == NULL) {
		spf_frame_end(req, SPF_NEUTRAL, "default");
		return;
	}
	if (spf_need_p(req, f->rec->redirect, spf_eval_end))
		return;
	if (!spf_count_lookup(req))
		return;
	spf_macro_env_fill(req, f->domain, &env);
	if (spf_expand_domain(f->rec->redirect, &env, req->target) < 0 ||
	    !spf_domain_queryable(req->target)) {
		spf_abort(req, SPF_PERMERROR, "redirect=%s names no valid domain", f->rec->redirect);
		return;
	}
	spf_record_free(f->rec);
	f->rec = NULL;
	f->next = 0;
	f->via_redirect = true;
	memcpy(f->domain, req->target, sizeof(f->domain));
	spf_frame_begin(req);
}

/* Start the DNS part of a mechanism; target is already expanded. */
static void spf_eval_dns_mech(struct spf_request *req, const struct spf_mech *m)
{
	char rev[80];

	if (m->type != SPF_MECH_INCLUDE && m->type != SPF_MECH_PTR &&
	    !spf_domain_queryable(req->target)) {
		spf_no_match(req);   /* RFC 7208 4.3: no such domain, nothing matches */
		return;
	}
	switch (m->type) {
	case SPF_MECH_INCLUDE:
		if (!spf_domain_queryable(req->target)) {
			spf_abort(req, SPF_PERMERROR, "include:%s names no valid domain", req->target);
			return;
		}
		spf_include(req);
		return;
	case SPF_MECH_A:
		spf_query(req, req->target, spf_addr_type(req), spf_on_a);
		return;
	case SPF_MECH_MX:
		spf_query(req, req->target, ns_t_mx, spf_on_mx);
		return;
	case SPF_MECH_PTR:
		spf_reverse_name(&req->ip, rev, sizeof(rev));
		spf_query(req, rev, ns_t_ptr, spf_on_ptr);
		return;
	case SPF_MECH_EXISTS:
		spf_query(req, req->target, ns_t_a, spf_on_exists);
		return;
	default:
		panic("mechanism %d does not query DNS", (int)m->type);
	}
}

/* Evaluate mechanisms from the frame's current one until one needs DNS. */
static void spf_eval(struct spf_request *req)
{
	struct spf_frame *f = spf_top(req);
	struct spf_macro_env env;

	while (f->next < f->rec->count) {
		const struct spf_mech *m = &f->rec->mechs[f->next];

		switch (m->type) {
		case SPF_MECH_ALL:
			spf_match(req);
			return;
		case SPF_MECH_IP4:
		case SPF_MECH_IP6:
			if (spf_ip_in_net(&req->ip, m->net, m->type == SPF_MECH_IP4 ? AF_INET : AF_INET6,
					  req->ip.family == AF_INET ? m->cidr4 : m->cidr6)) {
				spf_match(req);
				return;
			}
			f->next++;
			continue;
		default:
			break;
		}
		if (spf_need_p(req, m->domain_spec, spf_eval))
			return;
		if (!spf_count_lookup(req))
			return;
		spf_macro_env_fill(req, f->domain, &env);
		if (m->domain_spec == NULL)
			memcpy(req->target, f->domain, sizeof(req->target));
		else if (spf_expand_domain(m->domain_spec, &env, req->target) < 0) {
			spf_abort(req, SPF_PERMERROR, "cannot expand \"%s\"", m->text);
			return;
		}
		spf_eval_dns_mech(req, m);
		return;
	}
	spf_eval_end(req);
}

/* ---- starting a check ---- */

/* RFC 7208 4.3: a domain that cannot be a host name gives none. */
static bool spf_domain_checkable(const char *d)
{
	size_t len = strlen(d), dot;

	if (!spf_domain_queryable(d))
		return false;
	if (len > 0 && d[len - 1] == '.')
		len--;
	for (dot = len; dot > 0 && d[dot - 1] != '.'; dot--)
		;
	if (dot == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z') ||
		      (d[i] >= '0' && d[i] <= '9') || d[i] == '-' || d[i] == '_' || d[i] == '.'))
			return false;
	for (size_t i = dot; i < len; i++)
		if (!(d[i] >= '0' && d[i] <= '9'))
			return true;
	return false;
}

/* The answer is known before any query: deliver it from the loop. */
static void spf_defer(struct spf_request *req, struct event_base *base, enum spf_result res,
		      const char *problem)
{
	req->result = res;
	snprintf(req->problem, sizeof(req->problem), "%s", problem);
	req->done_ev = event_new(base, -1, 0, spf_on_done_event, req);
	if (req->done_ev == NULL)
		panic("event_new for an SPF result failed");
	event_active(req->done_ev, EV_TIMEOUT, 0);
}

static struct spf_request *spf_start(struct event_base *base, struct dns_resolver *r,
				     const struct sockaddr *client_ip, const char *helo,
				     const char *sender, const char *receiver, const char *identity,
				     spf_done_cb cb, void *arg)
{
	struct spf_request *req = xcalloc(1, sizeof(*req));
	const char *at;
	char *domain;

	req->r = r;
	req->cb = cb;
	req->arg = arg;
	req->identity = identity;
	req->helo = xstrndup(helo ? helo : "", SPF_DOMAIN_MAX + 2);
	req->receiver = xstrndup(receiver ? receiver : "unknown", SPF_DOMAIN_MAX);
	if (sender == NULL || sender[0] == '\0')
		req->sender = xasprintf("postmaster@%s", req->helo);
	else
		req->sender = xstrndup(sender, SPF_SENDER_MAX);
	at = strrchr(req->sender, '@');
	if (at == NULL) {
		req->local = xstrdup("postmaster");
		req->sender_domain = xstrdup(req->sender);
	} else {
		req->local = at == req->sender ? xstrdup("postmaster")
					       : xstrndup(req->sender, (size_t)(at - req->sender));
		req->sender_domain = xstrdup(at + 1);
	}
	if (spf_ip_from_sockaddr(&req->ip, client_ip) < 0) {
		spf_defer(req, base, SPF_PERMERROR, "client address is not IPv4 or IPv6");
		return req;
	}
	inet_ntop(req->ip.family, req->ip.addr, req->client_ip, sizeof(req->client_ip));
	domain = strcmp(identity, "helo") == 0 ? req->helo : req->sender_domain;
	if (!spf_domain_checkable(domain)) {
		spf_defer(req, base, SPF_NONE, "not a valid domain name");
		return req;
	}
	req->depth = 1;
	snprintf(req->frames[0].domain, sizeof(req->frames[0].domain), "%s", domain);
	spf_frame_begin(req);
	return req;
}

struct spf_request *spf_check(struct event_base *base, struct dns_resolver *r,
			      const struct sockaddr *client_ip, const char *helo,
			      const char *sender, const char *receiver,
			      spf_done_cb cb, void *arg)
{
	bool null_sender = sender == NULL || sender[0] == '\0';

	return spf_start(base, r, client_ip, helo, sender, receiver,
			 null_sender ? "helo" : "mailfrom", cb, arg);
}

struct spf_request *spf_check_helo(struct event_base *base, struct dns_resolver *r,
				   const struct sockaddr *client_ip, const char *helo,
				   const char *receiver, spf_done_cb cb, void *arg)
{
	return spf_start(base, r, client_ip, helo, NULL, receiver, "helo", cb, arg);
}

void spf_cancel(struct spf_request *req)
{
	if (req == NULL)
		return;
	dns_cancel(req->query);
	spf_request_free(req);
}

/* ---- Received-SPF ---- */

/* Comment text: drop what would end or break the RFC 5322 comment. */
static int spf_append_ctext(struct strbuf *sb, const char *s)
{
	for (; *s != '\0'; s++) {
		char c = *s;

		if (c == '(' || c == ')' || c == '\\' || (unsigned char)c < 0x20 ||
		    (unsigned char)c > 0x7e)
			c = '?';
		if (strbuf_append(sb, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* A dot-atom as is, anything else as a quoted-string. */
static int spf_append_value(struct strbuf *sb, const char *s)
{
	bool atom = s[0] != '\0' && s[0] != '.';

	for (const char *p = s; *p != '\0' && atom; p++)
		atom = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-/=?^_`{|}~.", *p) != NULL;
	if (atom)
		return strbuf_appends(sb, s);
	if (strbuf_append(sb, "\"", 1) < 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c > 0x7e)
			c = '?';
		if ((c == '"' || c == '\\') && strbuf_append(sb, "\\", 1) < 0)
			return -1;
		if (strbuf_append(sb, &c, 1) < 0)
			return -1;
	}
	return strbuf_append(sb, "\"", 1);
}

static int spf_header_comment(const struct spf_outcome *o, struct strbuf *sb)
{
	const char *s = o->sender, *ip = o->client_ip;

	if (strbuf_appendf(sb, " (%s: ", o->receiver) < 0)
		return -1;
	switch (o->result) {
	case SPF_PASS:
		if (strbuf_appends(sb, "domain of ") < 0 || spf_append_ctext(sb, s) < 0)
			return -1;
		return strbuf_appendf(sb, " designates %s as permitted sender)", ip);
	case SPF_FAIL:
	case SPF_SOFTFAIL:
		if (strbuf_appends(sb, o->result == SPF_FAIL ? "domain of " :
				   "domain of transitioning ") < 0 || spf_append_ctext(sb, s) < 0)
			return -1;
		return strbuf_appendf(sb, " does not designate %s as permitted sender)", ip);
	case SPF_NEUTRAL:
		if (strbuf_appendf(sb, "%s is neither permitted nor denied by domain of ", ip) < 0 ||
		    spf_append_ctext(sb, s) < 0)
			return -1;
		return strbuf_appends(sb, ")");
	case SPF_NONE:
		if (strbuf_appends(sb, "domain of ") < 0 || spf_append_ctext(sb, s) < 0)
			return -1;
		return strbuf_appends(sb, " does not designate permitted sender hosts)");
	case SPF_TEMPERROR:
	case SPF_PERMERROR:
		if (strbuf_appends(sb, o->result == SPF_TEMPERROR ? "temporary error" :
				   "permanent error") < 0 ||
		    strbuf_appends(sb, " checking domain of ") < 0 || spf_append_ctext(sb, s) < 0)
			return -1;
		return strbuf_appends(sb, ")");
	}
	return -1;
}

int spf_received_header(const struct spf_outcome *o, struct strbuf *sb)
{
	if (strbuf_appendf(sb, "Received-SPF: %s", spf_result_str(o->result)) < 0 ||
	    spf_header_comment(o, sb) < 0 ||
	    strbuf_appends(sb, "\r\n\tclient-ip=") < 0 || strbuf_appends(sb, o->client_ip) < 0 ||
	    strbuf_appends(sb, ";\r\n\tenvelope-from=") < 0 || spf_append_value(sb, o->sender) < 0 ||
	    strbuf_appends(sb, ";\r\n\thelo=") < 0 || spf_append_value(sb, o->helo) < 0 ||
	    strbuf_appends(sb, ";\r\n\treceiver=") < 0 || spf_append_value(sb, o->receiver) < 0 ||
	    strbuf_appends(sb, ";\r\n\tidentity=") < 0 || strbuf_appends(sb, o->identity) < 0)
		return -1;
	if (o->mechanism[0] != '\0' &&
	    (strbuf_appends(sb, ";\r\n\tmechanism=") < 0 || spf_append_value(sb, o->mechanism) < 0))
		return -1;
	if (o->problem[0] != '\0' &&
	    (strbuf_appends(sb, ";\r\n\tproblem=") < 0 || spf_append_value(sb, o->problem) < 0))
		return -1;
	return strbuf_appends(sb, ";");
}
