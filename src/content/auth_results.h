/*
 * The Authentication-Results header field (RFC 8601) for what this host
 * checked: SPF, DKIM (one entry per signature) and DMARC.
 */
#ifndef POSTERN_AUTH_RESULTS_H
#define POSTERN_AUTH_RESULTS_H

#include <stdbool.h>
#include <stddef.h>

#include "content/dkim.h"
#include "content/dmarc.h"

struct strbuf;

struct auth_results_in {
	const char *authserv_id;          /* this host's name */
	const char *spf_result;           /* "pass", ...; NULL: SPF not checked */
	const char *spf_mailfrom;         /* smtp.mailfrom (address or domain) */
	const char *spf_helo;             /* smtp.helo, used when spf_mailfrom is NULL */
	bool dkim_checked;                /* false: no dkim entry */
	const struct dkim_verdict *dkim;  /* none checked signatures: dkim=none */
	size_t ndkim;
	const struct dmarc_outcome *dmarc; /* NULL: DMARC not evaluated */
};

/* Appends "Authentication-Results: ...\r\n", folded one method per line. */
int auth_results_header(const struct auth_results_in *in, struct strbuf *out);

struct envelope;

/*
 * Put a finished field on top of the message as an envelope edit (the
 * spool file stays as received). An insert already at the top (a late
 * Received-SPF) stays below it. Returns 0 or -1 when the edit does not fit.
 */
int auth_results_add_edit(struct envelope *env, const char *field);

#endif
