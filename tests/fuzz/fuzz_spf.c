/*
 * Fuzz the SPF record parser and macro expander (no DNS). The input is a
 * record when it starts with "v=spf1", else it is parsed with that prefix
 * added; it is also expanded as a domain-spec and as explanation text, and
 * every domain-spec of an accepted record is expanded. Besides memory
 * errors it checks the promises: accepted syntax expands, expanded domains
 * fit in 253 characters, and the explanation limit holds.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_env(struct spf_macro_env *env, const struct spf_ip *ip, const char *text)
{
	memset(env, 0, sizeof(*env));
	env->sender = text;
	env->local = text;
	env->sender_domain = "email.example.com";
	env->domain = "example.org";
	env->helo = text;
	env->receiver = "mx.example.net";
	env->validated = NULL;
	env->ip = ip;
	env->now = 1;
}

static void fuzz_domain_spec(const char *spec, const struct spf_macro_env *env)
{
	char out[SPF_DOMAIN_MAX + 1];
	bool valid = spf_macro_valid(spec, false);
	int rc = spf_expand_domain(spec, env, out);

	if (rc == 0)
		fuzz_assert(strlen(out) <= SPF_DOMAIN_MAX);
	if (!valid)
		fuzz_assert(rc < 0);
	(void)spf_domain_queryable(out);
}

static void fuzz_explain(const char *text, const struct spf_macro_env *env)
{
	struct strbuf sb;
	int rc;

	strbuf_init(&sb, SPF_EXPLANATION_MAX);
	rc = spf_macro_expand(text, env, true, &sb);
	fuzz_assert(sb.len <= SPF_EXPLANATION_MAX);
	if (!spf_macro_valid(text, true))
		fuzz_assert(rc < 0);
	strbuf_free(&sb);
}

static void fuzz_record(const char *text, const struct spf_macro_env *env)
{
	char err[256];
	struct spf_record *rec = spf_record_parse(text, err, sizeof(err));

	if (rec == NULL) {
		fuzz_assert(err[0] != '\0');
		return;
	}
	for (size_t i = 0; i < rec->count; i++) {
		const struct spf_mech *m = &rec->mechs[i];

		fuzz_assert(m->cidr4 <= 32 && m->cidr6 <= 128);
		if (m->domain_spec != NULL)
			fuzz_assert(spf_macro_valid(m->domain_spec, false));
		if (m->domain_spec != NULL)
			fuzz_domain_spec(m->domain_spec, env);
		(void)spf_ip_in_net(env->ip, m->net, m->type == SPF_MECH_IP4 ? AF_INET : AF_INET6,
				    env->ip->family == AF_INET ? m->cidr4 : m->cidr6);
	}
	if (rec->redirect != NULL)
		fuzz_domain_spec(rec->redirect, env);
	if (rec->exp != NULL)
		fuzz_domain_spec(rec->exp, env);
	spf_record_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spf_ip ip4 = { AF_INET, { 192, 0, 2, 3 } };
	struct spf_ip ip6 = { AF_INET6, { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 } };
	struct spf_macro_env env;
	char *text, *record;

	if (size > 2 * SPF_RECORD_MAX)
		return 0;
	text = malloc(size + 1);
	record = malloc(size + 8);
	if (text == NULL || record == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (spf_record_is_spf1(text, strlen(text))) {
		strcpy(record, text);
	} else {
		memcpy(record, "v=spf1 ", 7);
		strcpy(record + 7, text);
	}

	fuzz_env(&env, size % 2 ? &ip4 : &ip6, text);
	fuzz_record(record, &env);
	fuzz_domain_spec(text, &env);
	fuzz_explain(text, &env);
	free(record);
	free(text);
	return 0;
}
