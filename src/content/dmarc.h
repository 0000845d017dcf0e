/*
 * DMARC (RFC 7489): policy discovery for the RFC5322.From domain (with the
 * organizational-domain fallback from the Public Suffix List, libpsl),
 * identifier alignment of SPF and DKIM, and the p/sp/pct policy to apply.
 * DNS goes through the same TXT look-up function as DKIM keys (dkim.h).
 * Thread-safe: no shared mutable state.
 */
#ifndef POSTERN_DMARC_H
#define POSTERN_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "content/dkim.h"

enum dmarc_result {
	DMARC_NONE = 0,            /* no policy published (or no usable From) */
	DMARC_PASS,
	DMARC_FAIL,
	DMARC_TEMPERROR,
	DMARC_PERMERROR,           /* From field unusable: none, several, no domain */
};

enum dmarc_policy {
	DMARC_POLICY_NONE = 0,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};

struct dmarc_record {
	enum dmarc_policy p, sp;
	bool adkim_strict, aspf_strict;
	unsigned pct;              /* 0..100 */
};

/* Returns 0, or -1 when txt is not a usable DMARC1 record. */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *rec);

/* The domain of the single From address, lower-cased; -1 when there is not exactly one. */
int dmarc_from_domain(const unsigned char *msg, size_t len, char *out, size_t outlen);

/* The organizational domain (RFC 7489 3.2) of domain into out. */
void dmarc_org_domain(const char *domain, char *out, size_t outlen);

struct dmarc_input {
	const char *from_domain;   /* from dmarc_from_domain; NULL: permerror */
	bool spf_pass;             /* the SPF result was pass ... */
	const char *spf_domain;    /* ... for this domain (MAIL FROM, or HELO for <>) */
	const struct dkim_verdict *dkim;
	size_t ndkim;
	unsigned pct_roll;         /* 0..99, the sample for pct= (random in production) */
};

struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy;       /* the record's p= (or sp=) */
	enum dmarc_policy disposition;  /* what to do after pct=: none on pass */
	bool spf_aligned, dkim_aligned;
	bool org_fallback;              /* the record came from the organizational domain */
	char from_domain[DKIM_DOMAIN_MAX + 1];
	char policy_domain[DKIM_DOMAIN_MAX + 1];
	char reason[160];
};

void dmarc_evaluate(const struct dmarc_input *in, dkim_txt_fn lookup, void *lookup_arg,
		    struct dmarc_outcome *out);

const char *dmarc_result_str(enum dmarc_result r);
const char *dmarc_policy_str(enum dmarc_policy p);

#endif
