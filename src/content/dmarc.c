/*
 * DMARC evaluation (RFC 7489 sections 3, 6.3 and 6.6). The caller brings
 * the SPF result and the DKIM verdicts; this file finds the policy and
 * decides alignment and the disposition.
 */
#include <ctype.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/dmarc.h"
#include "core/alloc.h"

#define DMARC_FROM_MAX 8192

const char *dmarc_result_str(enum dmarc_result r)
{
	switch (r) {
	case DMARC_NONE: return "none";
	case DMARC_PASS: return "pass";
	case DMARC_FAIL: return "fail";
	case DMARC_TEMPERROR: return "temperror";
	case DMARC_PERMERROR: return "permerror";
	}
	return "permerror";
}

const char *dmarc_policy_str(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_NONE: return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT: return "reject";
	}
	return "none";
}

struct dmarc_parse {
	struct dmarc_record *rec;
	bool first, have_p, have_sp, have_rua, bad_p;
};

static int dmarc_policy_value(const char *v, size_t n, enum dmarc_policy *p)
{
	if (n == 4 && strncasecmp(v, "none", 4) == 0)
		*p = DMARC_POLICY_NONE;
	else if (n == 10 && strncasecmp(v, "quarantine", 10) == 0)
		*p = DMARC_POLICY_QUARANTINE;
	else if (n == 6 && strncasecmp(v, "reject", 6) == 0)
		*p = DMARC_POLICY_REJECT;
	else
		return -1;
	return 0;
}

/* Unknown tags and bad optional values fall back to defaults (RFC 7489 6.3). */
static int dmarc_tag(void *arg, const char *name, size_t nlen, const char *v, size_t vlen, size_t off)
{
	struct dmarc_parse *st = arg;
	struct dmarc_record *rec = st->rec;
	bool first = st->first;

	st->first = false;
	if (nlen == 1 && name[0] == 'v') {
		if (!first || vlen != 6 || strncmp(v, "DMARC1", 6) != 0)
			return -1;
	} else if (first) {
		return -1;
	} else if (nlen == 1 && name[0] == 'p') {
		st->have_p = dmarc_policy_value(v, vlen, &rec->p) == 0;
		st->bad_p = !st->have_p;
	} else if (nlen == 2 && memcmp(name, "sp", 2) == 0) {
		st->have_sp = dmarc_policy_value(v, vlen, &rec->sp) == 0;
	} else if (nlen == 5 && memcmp(name, "adkim", 5) == 0) {
		rec->adkim_strict = vlen == 1 && (v[0] == 's' || v[0] == 'S');
	} else if (nlen == 4 && memcmp(name, "aspf", 4) == 0) {
		rec->aspf_strict = vlen == 1 && (v[0] == 's' || v[0] == 'S');
	} else if (nlen == 3 && memcmp(name, "pct", 3) == 0) {
		unsigned n = 0;
		size_t i;

		for (i = 0; i < vlen && i < 4 && isdigit((unsigned char)v[i]); i++)
			n = n * 10 + (unsigned)(v[i] - '0');
		if (i == vlen && vlen > 0 && n <= 100)
			rec->pct = n;
	} else if (nlen == 3 && memcmp(name, "rua", 3) == 0) {
		st->have_rua = true;
	}
	return 0;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *rec)
{
	struct dmarc_parse st = { rec, true, false, false, false, false };

	memset(rec, 0, sizeof(*rec));
	rec->pct = 100;
	if (dkim_taglist_parse(txt, len, dmarc_tag, &st) != 0 || st.first)
		return -1;
	if (!st.have_p) {
		/* 6.6.3: a bad or missing p= with a valid rua= is p=none */
		if (!st.have_rua)
			return -1;
		rec->p = DMARC_POLICY_NONE;
	}
	if (!st.have_sp)
		rec->sp = rec->p;
	return 0;
}

static bool dmarc_is_v1(const char *rec)
{
	while (*rec == ' ' || *rec == '\t')
		rec++;
	if (*rec++ != 'v')
		return false;
	while (*rec == ' ' || *rec == '\t')
		rec++;
	if (*rec++ != '=')
		return false;
	while (*rec == ' ' || *rec == '\t')
		rec++;
	return strncmp(rec, "DMARC1", 6) == 0;
}

void dmarc_org_domain(const char *domain, char *out, size_t outlen)
{
	const char *org = psl_registrable_domain(psl_builtin(), domain);

	snprintf(out, outlen, "%s", org ? org : domain);
}

/* Copies the unfolded From value(s); returns how many From fields there were. */
static int dmarc_from_value(const unsigned char *msg, size_t len, char *val, size_t vmax)
{
	size_t pos = 0, n = 0;
	int count = 0;
	bool in_from = false;

	while (pos < len) {
		const unsigned char *nl = memchr(msg + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - msg) + 1 : len, stop = end;
		const char *line = (const char *)msg + pos;

		while (stop > pos && (msg[stop - 1] == '\n' || msg[stop - 1] == '\r'))
			stop--;
		if (stop == pos)
			break;
		if (line[0] == ' ' || line[0] == '\t') {
			if (in_from && n + (stop - pos) < vmax) {
				memcpy(val + n, line, stop - pos);
				n += stop - pos;
			}
		} else {
			in_from = stop - pos >= 5 && strncasecmp(line, "from", 4) == 0;
			if (in_from) {
				size_t k = 4;

				while (pos + k < stop && (line[k] == ' ' || line[k] == '\t'))
					k++;
				in_from = pos + k < stop && line[k] == ':';
				if (in_from && ++count == 1 && stop - pos - k - 1 < vmax) {
					memcpy(val, line + k + 1, stop - pos - k - 1);
					n = stop - pos - k - 1;
				}
			}
		}
		pos = end;
	}
	val[n] = '\0';
	return count;
}

/* Comments removed, then the one address's domain: from <...> if present. */
static int dmarc_addr_domain(char *val, char *out, size_t outlen)
{
	size_t n = 0;
	int depth = 0;
	bool quoted = false;
	char *addr, *at, *end;

	for (char *p = val; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			val[n++] = *p++;
			val[n++] = *p;
			continue;
		}
		if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')' && depth > 0)
			depth--;
		else if (depth == 0) {
			if (*p == '"')
				quoted = !quoted;
			else if (*p == ',' && !quoted)
				return -1;
			val[n++] = *p;
		}
	}
	val[n] = '\0';
	addr = strrchr(val, '<');
	if (addr != NULL) {
		addr++;
		end = strchr(addr, '>');
		if (end == NULL)
			return -1;
		*end = '\0';
	} else {
		addr = val;
	}
	at = strrchr(addr, '@');
	if (at == NULL)
		return -1;
	at++;
	while (*at == ' ' || *at == '\t')
		at++;
	end = at + strlen(at);
	while (end > at && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '.'))
		end--;
	if (end == at || (size_t)(end - at) >= outlen)
		return -1;
	for (size_t i = 0; i < (size_t)(end - at); i++) {
		unsigned char c = (unsigned char)at[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return -1;
		out[i] = (char)tolower(c);
	}
	out[end - at] = '\0';
	return 0;
}

int dmarc_from_domain(const unsigned char *msg, size_t len, char *out, size_t outlen)
{
	char *val = xmalloc(DMARC_FROM_MAX);
	int rc = -1;

	if (dmarc_from_value(msg, len, val, DMARC_FROM_MAX) == 1)
		rc = dmarc_addr_domain(val, out, outlen);
	free(val);
	return rc;
}

static bool dmarc_aligned(const char *a, const char *b, bool strict)
{
	char oa[DKIM_DOMAIN_MAX + 1], ob[DKIM_DOMAIN_MAX + 1];

	if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
		return false;
	if (strcasecmp(a, b) == 0)
		return true;
	if (strict)
		return false;
	dmarc_org_domain(a, oa, sizeof(oa));
	dmarc_org_domain(b, ob, sizeof(ob));
	return strcasecmp(oa, ob) == 0;
}

/* 0 found, 1 no record, -1 temporary failure. */
static int dmarc_fetch(const char *domain, dkim_txt_fn lookup, void *arg, struct dmarc_record *rec)
{
	struct dkim_txt *txt = xcalloc(1, sizeof(*txt));
	char name[DKIM_DOMAIN_MAX + 16];
	size_t found = 0, which = 0;
	int rc = 1;

	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	lookup(arg, name, txt);
	if (txt->status == DNS_TEMPFAIL || txt->status == DNS_MALFORMED) {
		rc = -1;
	} else if (txt->status == DNS_OK) {
		for (size_t i = 0; i < txt->n; i++)
			if (dmarc_is_v1(txt->rec[i])) {
				found++;
				which = i;
			}
		if (found == 1 && dmarc_record_parse(txt->rec[which], strlen(txt->rec[which]), rec) == 0)
			rc = 0;
	}
	free(txt);
	return rc;
}

static enum dmarc_policy dmarc_sampled(enum dmarc_policy p, unsigned pct, unsigned roll)
{
	/* 6.6.4: outside the sample the next milder policy applies */
	if (roll < pct)
		return p;
	return p == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
}

static void dmarc_alignment(const struct dmarc_input *in, const struct dmarc_record *rec,
			    struct dmarc_outcome *out)
{
	out->spf_aligned = in->spf_pass && dmarc_aligned(in->from_domain, in->spf_domain, rec->aspf_strict);
	for (size_t i = 0; i < in->ndkim && !out->dkim_aligned; i++)
		if (dkim_verdict_trusted(&in->dkim[i]) &&
		    dmarc_aligned(in->from_domain, in->dkim[i].domain, rec->adkim_strict))
			out->dkim_aligned = true;
}

void dmarc_evaluate(const struct dmarc_input *in, dkim_txt_fn lookup, void *lookup_arg,
		    struct dmarc_outcome *out)
{
	struct dmarc_record rec;
	int rc;

	memset(out, 0, sizeof(*out));
	if (in->from_domain == NULL || in->from_domain[0] == '\0') {
		out->result = DMARC_PERMERROR;
		snprintf(out->reason, sizeof(out->reason), "no single usable From address");
		return;
	}
	snprintf(out->from_domain, sizeof(out->from_domain), "%s", in->from_domain);
	snprintf(out->policy_domain, sizeof(out->policy_domain), "%s", in->from_domain);
	rc = dmarc_fetch(in->from_domain, lookup, lookup_arg, &rec);
	if (rc == 1) {
		dmarc_org_domain(in->from_domain, out->policy_domain, sizeof(out->policy_domain));
		if (strcasecmp(out->policy_domain, in->from_domain) != 0) {
			out->org_fallback = true;
			rc = dmarc_fetch(out->policy_domain, lookup, lookup_arg, &rec);
		}
	}
	if (rc != 0) {
		out->result = rc < 0 ? DMARC_TEMPERROR : DMARC_NONE;
		snprintf(out->reason, sizeof(out->reason), rc < 0 ? "policy look-up failed" : "no policy published");
		return;
	}
	out->policy = out->org_fallback ? rec.sp : rec.p;
	dmarc_alignment(in, &rec, out);
	if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARC_PASS;
		out->disposition = DMARC_POLICY_NONE;
		snprintf(out->reason, sizeof(out->reason), "aligned %s%s%s", out->spf_aligned ? "spf" : "",
			 out->spf_aligned && out->dkim_aligned ? "+" : "", out->dkim_aligned ? "dkim" : "");
		return;
	}
	out->result = DMARC_FAIL;
	out->disposition = dmarc_sampled(out->policy, rec.pct, in->pct_roll);
	snprintf(out->reason, sizeof(out->reason), "no aligned spf or dkim pass (pct=%u)", rec.pct);
}
