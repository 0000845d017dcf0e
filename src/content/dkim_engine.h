/*
 * The "dkim" content engine: verifies the DKIM signatures of a message,
 * evaluates DMARC for its From domain with the session's SPF result, and
 * writes the Authentication-Results field (RFC 8601) for the session to
 * add to accepted mail.
 *
 *   DKIM_VALID    −1  a trusted pass (dkim_verdict_trusted)
 *   DKIM_INVALID  +1  a signature that fails or is unusable
 *   DMARC_FAIL        p=reject: action reject ("550 5.7.1 DMARC policy of
 *                     <domain>: reject"), p=quarantine: action quarantine,
 *                     p=none (or sampled out by pct=): +1
 *
 * DNS look-ups run on the worker thread and are bounded in number and
 * in total time, so one message never holds a worker longer than that.
 */
#ifndef POSTERN_CONTENT_DKIM_ENGINE_H
#define POSTERN_CONTENT_DKIM_ENGINE_H

#include <stdbool.h>

#include "content/dkim.h"
#include "content/engine.h"

#define DKIM_ENGINE_MAX_SIGS 4         /* signatures verified per message */
#define DKIM_ENGINE_MAX_LOOKUPS 8      /* key and DMARC look-ups per message */
#define DKIM_ENGINE_VALID_SCORE (-1.0)
#define DKIM_ENGINE_INVALID_SCORE 1.0
#define DKIM_ENGINE_DMARC_NONE_SCORE 1.0

struct dkim_engine_options {
	const char *authserv_id;       /* this host's name in Authentication-Results */
	bool dmarc;                    /* evaluate DMARC and apply its policy */
	bool auth_results;             /* write the Authentication-Results field */
	dkim_txt_fn lookup;            /* NULL: DNS through dns_servers */
	void *lookup_arg;
	const char *dns_servers;       /* as for dns_resolver_new; NULL: /etc/resolv.conf */
	unsigned timeout_ms;           /* budget for all look-ups of one message */
};

/* The engine; options are copied. */
struct content_engine *dkim_content_engine(const struct dkim_engine_options *o);

/* "pass" from "Received-SPF: pass (...) ...", into out ("" when unreadable). */
void dkim_engine_spf_result(const char *received_spf, char *out, size_t outlen);

#endif
