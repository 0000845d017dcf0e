/*
 * Fuzz the DKIM-Signature parser (strict and legacy), the key-record and
 * DMARC-record parsers, and — with the input taken as a whole message —
 * the verifier's field splitting and canonicalisation, the From-domain
 * extraction and the Authentication-Results writer. Keys come from a fixed
 * in-memory record, never the network. Besides memory errors it checks
 * the parser's promises about spans and counts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/auth_results.h"
#include "content/dkim.h"
#include "content/dmarc.h"
#include "core/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_lookup(void *arg, const char *name, struct dkim_txt *out)
{
	memset(out, 0, sizeof(*out));
	out->status = DNS_OK;
	out->n = 1;
	if (strncmp(name, "_dmarc.", 7) == 0)
		strcpy(out->rec[0], "v=DMARC1; p=reject; pct=50");
	else
		strcpy(out->rec[0], "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
}

static void fuzz_sig(const char *text, size_t len, bool legacy)
{
	struct dkim_sig *sig = malloc(sizeof(*sig));
	char err[128];

	if (sig == NULL)
		abort();
	if (dkim_sig_parse(text, len, legacy, sig, err, sizeof(err)) == 0) {
		fuzz_assert(sig->b_start <= sig->b_end && sig->b_end <= len);
		fuzz_assert(sig->nh >= 1 && sig->nh <= DKIM_H_MAX);
		fuzz_assert(sig->blen > 0 && sig->blen <= DKIM_SIG_MAX);
		fuzz_assert(sig->bhlen == 20 || sig->bhlen == 32);
		fuzz_assert(strchr(sig->auid, '@') != NULL);
	} else {
		fuzz_assert(err[0] != '\0');
	}
	free(sig);
}

static void fuzz_message(const uint8_t *data, size_t size)
{
	struct dkim_verify_opts o = { fuzz_lookup, NULL, 1700000000, 4, true };
	struct dkim_verdict v[4];
	struct dmarc_outcome dm;
	struct auth_results_in ar;
	struct dmarc_input in;
	struct strbuf sb;
	char from[DKIM_DOMAIN_MAX + 1];
	size_t n = dkim_verify(data, size, &o, v, 4);

	fuzz_assert(n <= 4);
	memset(&in, 0, sizeof(in));
	if (dmarc_from_domain(data, size, from, sizeof(from)) == 0) {
		fuzz_assert(strlen(from) > 0);
		in.from_domain = from;
	}
	in.dkim = v;
	in.ndkim = n;
	dmarc_evaluate(&in, fuzz_lookup, NULL, &dm);
	memset(&ar, 0, sizeof(ar));
	ar.authserv_id = "mx.example";
	ar.dkim_checked = true;
	ar.dkim = v;
	ar.ndkim = n;
	ar.dmarc = &dm;
	strbuf_init(&sb, 1 << 20);
	fuzz_assert(auth_results_header(&ar, &sb) == 0);
	strbuf_free(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_key key;
	struct dmarc_record rec;
	char err[128];
	char *text;

	if (size > 64 * 1024)
		return 0;
	text = malloc(size + 1);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	fuzz_sig(text, size, false);
	fuzz_sig(text, size, true);
	if (dkim_key_parse(text, size, &key, err, sizeof(err)) == 0)
		fuzz_assert(key.plen <= sizeof(key.p));
	if (dmarc_record_parse(text, size, &rec) == 0)
		fuzz_assert(rec.pct <= 100);
	fuzz_message(data, size);
	free(text);
	return 0;
}
