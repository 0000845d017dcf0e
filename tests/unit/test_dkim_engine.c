/*
 * The "dkim" content engine: symbols for valid and broken signatures,
 * DMARC dispositions as actions, the SPF result read from Received-SPF,
 * and the Authentication-Results field it leaves for the session. Keys
 * and the signed message are those of test_dkim.c (RFC 8463 Appendix A).
 */
#include <stdlib.h>
#include <string.h>

#include "content/auth_results.h"
#include "content/dkim_engine.h"
#include "core/alloc.h"
#include "queue/envelope.h"
#include "unit.h"

#include "dkim_vectors.h"

static const struct engine_result *find_symbol(const struct engine_results *r, const char *symbol)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->items[i].symbol, symbol) == 0)
			return &r->items[i];
	return NULL;
}

/* Run the engine over msg with the zone (keys and DMARC records) as its DNS. */
static void run_engine(const char *msg, const char *zone, bool dmarc, struct content_auth *auth,
		       struct engine_results *out)
{
	struct dkim_keyfile *kf = dkim_keyfile_parse(zone, strlen(zone));
	struct dkim_engine_options o = {
		.authserv_id = "mx.test.example",
		.dmarc = dmarc,
		.auth_results = true,
		.lookup = dkim_keyfile_lookup,
		.lookup_arg = kf,
		.timeout_ms = 2000,
	};
	struct content_engine *e = dkim_content_engine(&o);
	struct content_message m = { 0 };

	m.raw = (const unsigned char *)msg;
	m.raw_len = strlen(msg);
	m.auth = auth;
	memset(out, 0, sizeof(*out));
	e->check(e->state, &m, out);
	e->free(e->state);
	free(e);
	dkim_keyfile_free(kf);
}

static char *tampered(void)
{
	char *t = xstrdup(rfc8463_msg);
	char *p = strstr(t, "hungry");

	memcpy(p, "HUNGRY", 6);
	return t;
}

TEST(dkim_engine_valid_signature)
{
	struct engine_results r;
	const struct engine_result *v;

	run_engine(rfc8463_msg, rfc8463_keys, false, NULL, &r);
	v = find_symbol(&r, "DKIM_VALID");
	CHECK(v != NULL);
	if (v != NULL) {
		CHECK(v->score < -0.99 && v->score > -1.01);
		CHECK_INT(v->action, CONTENT_NONE);
	}
	CHECK(find_symbol(&r, "DKIM_INVALID") == NULL);
	engine_results_free(&r);
}

TEST(dkim_engine_invalid_signature)
{
	struct engine_results r;
	const struct engine_result *v;
	char *msg = tampered();

	run_engine(msg, rfc8463_keys, false, NULL, &r);
	v = find_symbol(&r, "DKIM_INVALID");
	CHECK(v != NULL);
	if (v != NULL)
		CHECK(v->score > 0.99 && v->score < 1.01);
	CHECK(find_symbol(&r, "DKIM_VALID") == NULL);
	engine_results_free(&r);
	free(msg);
}

TEST(dkim_engine_unsigned_adds_nothing_without_dmarc)
{
	static const char msg[] = "From: a@example.org\r\nSubject: x\r\n\r\nhello\r\n";
	struct engine_results r;

	run_engine(msg, "", false, NULL, &r);
	CHECK_INT((int)r.count, 0);
	engine_results_free(&r);
}

static void check_dmarc(const char *record, bool dmarc_on, enum content_action want_action, double want_score)
{
	char zone[2048];
	struct engine_results r;
	const struct engine_result *d;
	char *msg = tampered();

	snprintf(zone, sizeof(zone), "%s_dmarc.football.example.com  %s\n", rfc8463_keys, record);
	run_engine(msg, zone, dmarc_on, NULL, &r);
	d = find_symbol(&r, "DMARC_FAIL");
	if (!dmarc_on) {
		CHECK(d == NULL);
	} else {
		CHECK(d != NULL);
		if (d != NULL) {
			CHECK_INT(d->action, want_action);
			CHECK(d->score > want_score - 0.01 && d->score < want_score + 0.01);
			if (want_action == CONTENT_REJECT)
				CHECK_STR(d->reply, "550 5.7.1 DMARC policy of football.example.com: reject");
		}
	}
	engine_results_free(&r);
	free(msg);
}

TEST(dkim_engine_dmarc_policies)
{
	check_dmarc("v=DMARC1; p=reject", true, CONTENT_REJECT, 0.0);
	check_dmarc("v=DMARC1; p=quarantine", true, CONTENT_QUARANTINE, 0.0);
	check_dmarc("v=DMARC1; p=none", true, CONTENT_NONE, 1.0);
	check_dmarc("v=DMARC1; p=reject", false, CONTENT_NONE, 0.0);
}

TEST(dkim_engine_dmarc_pass_by_aligned_dkim_or_spf)
{
	static const char plain[] = "From: Joe <joe@football.example.com>\r\nSubject: x\r\n\r\nhello\r\n";
	char zone[2048];
	struct engine_results r;
	struct content_auth auth = { 0 };

	snprintf(zone, sizeof(zone), "%s_dmarc.football.example.com  v=DMARC1; p=reject\n", rfc8463_keys);
	run_engine(rfc8463_msg, zone, true, NULL, &r);
	CHECK(find_symbol(&r, "DMARC_FAIL") == NULL);
	engine_results_free(&r);
	/* unsigned, but SPF passed for an aligned MAIL FROM */
	auth.received_spf = "Received-SPF: Pass (mx.test.example: domain of bounce@football.example.com "
			    "designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1;";
	auth.mailfrom = "bounce@football.example.com";
	run_engine(plain, zone, true, &auth, &r);
	CHECK(find_symbol(&r, "DMARC_FAIL") == NULL);
	engine_results_free(&r);
	free(auth.auth_results);
	/* the same with SPF unknown: none, so DMARC fails */
	memset(&auth, 0, sizeof(auth));
	auth.mailfrom = "bounce@football.example.com";
	run_engine(plain, zone, true, &auth, &r);
	CHECK(find_symbol(&r, "DMARC_FAIL") != NULL);
	engine_results_free(&r);
	free(auth.auth_results);
}

TEST(dkim_engine_authentication_results)
{
	struct engine_results r;
	struct content_auth auth = { 0 };
	char zone[2048];
	char *msg = tampered();

	snprintf(zone, sizeof(zone), "%s_dmarc.football.example.com  v=DMARC1; p=none\n", rfc8463_keys);
	auth.received_spf = "Received-SPF: softfail (test) client-ip=192.0.2.1;";
	auth.mailfrom = "joe@football.example.com";
	auth.helo = "relay.example.org";
	run_engine(rfc8463_msg, zone, true, &auth, &r);
	CHECK(auth.auth_results != NULL);
	if (auth.auth_results != NULL) {
		CHECK(strncmp(auth.auth_results, "Authentication-Results: mx.test.example;", 40) == 0);
		CHECK(strstr(auth.auth_results, "dkim=pass") != NULL);
		CHECK(strstr(auth.auth_results, "spf=softfail") != NULL);
		CHECK(strstr(auth.auth_results, "dmarc=pass") != NULL);
	}
	engine_results_free(&r);
	free(auth.auth_results);
	auth.auth_results = NULL;
	run_engine(msg, zone, true, &auth, &r);
	CHECK(auth.auth_results != NULL && strstr(auth.auth_results, "dkim=fail") != NULL);
	CHECK(auth.auth_results != NULL && strstr(auth.auth_results, "dmarc=fail") != NULL);
	engine_results_free(&r);
	free(auth.auth_results);
	free(msg);
}

TEST(dkim_engine_spf_result_from_received_spf)
{
	char out[16];

	dkim_engine_spf_result("Received-SPF: Pass (x) client-ip=1.2.3.4;", out, sizeof(out));
	CHECK_STR(out, "pass");
	dkim_engine_spf_result("Received-SPF:softfail", out, sizeof(out));
	CHECK_STR(out, "softfail");
	dkim_engine_spf_result("Received-SPF: averyveryverylongresult x", out, sizeof(out));
	CHECK_STR(out, "");
	dkim_engine_spf_result("garbage", out, sizeof(out));
	CHECK_STR(out, "");
}

TEST(auth_results_edit_goes_on_top)
{
	struct envelope *env = envelope_new();
	static const char spf[] = "Received-SPF: pass\r\n";
	static const char ar[] = "Authentication-Results: mx; dkim=none\r\n";

	CHECK_INT(auth_results_add_edit(env, ar), 0);
	CHECK_INT((int)env->nedits, 1);
	envelope_free(env);
	env = envelope_new();
	CHECK_INT(envelope_add_edit(env, 0, 0, spf, strlen(spf)), 0);
	CHECK_INT(auth_results_add_edit(env, ar), 0);
	CHECK_INT((int)env->nedits, 1);
	CHECK_INT((int)env->edits[0].insert_len, (int)(strlen(ar) + strlen(spf)));
	CHECK(memcmp(env->edits[0].insert, ar, strlen(ar)) == 0);
	CHECK(memcmp(env->edits[0].insert + strlen(ar), spf, strlen(spf)) == 0);
	envelope_free(env);
}
