/* SPF without DNS: macro expansion, record syntax, CIDR matching, the header. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <strings.h>

#include "dns/spf.h"
#include "unit.h"

static struct spf_ip test_ip(const char *text)
{
	struct spf_ip ip;

	memset(&ip, 0, sizeof(ip));
	if (inet_pton(AF_INET, text, ip.addr) == 1)
		ip.family = AF_INET;
	else if (inet_pton(AF_INET6, text, ip.addr) == 1)
		ip.family = AF_INET6;
	return ip;
}

/* The RFC 7208 7.4 example context. */
static void rfc_env(struct spf_macro_env *env, const struct spf_ip *ip)
{
	memset(env, 0, sizeof(*env));
	env->sender = "strong-bad@email.example.com";
	env->local = "strong-bad";
	env->sender_domain = "email.example.com";
	env->domain = "email.example.com";
	env->helo = "mx.example.org";
	env->ip = ip;
	env->now = 1234567890;
}

/* Expansion of spec, or "<error>"; the caller frees. */
static char *expand(const char *spec, const struct spf_macro_env *env, bool explain)
{
	struct strbuf sb;
	char *s;

	strbuf_init(&sb, SPF_MACRO_MAX);
	if (spf_macro_expand(spec, env, explain, &sb) < 0) {
		strbuf_free(&sb);
		return strdup("<error>");
	}
	s = strbuf_detach(&sb, NULL);
	return s ? s : strdup("");
}

#define CHECK_EXPAND(spec, env, want)                 \
	do {                                          \
		char *got_ = expand(spec, env, false); \
		CHECK_STR(got_, want);                \
		free(got_);                           \
	} while (0)

TEST(spf_macro_rfc7208_examples)
{
	struct spf_ip ip = test_ip("192.0.2.3");
	struct spf_macro_env env;

	rfc_env(&env, &ip);
	CHECK_EXPAND("%{s}", &env, "strong-bad@email.example.com");
	CHECK_EXPAND("%{o}", &env, "email.example.com");
	CHECK_EXPAND("%{d}", &env, "email.example.com");
	CHECK_EXPAND("%{d4}", &env, "email.example.com");
	CHECK_EXPAND("%{d3}", &env, "email.example.com");
	CHECK_EXPAND("%{d2}", &env, "example.com");
	CHECK_EXPAND("%{d1}", &env, "com");
	CHECK_EXPAND("%{dr}", &env, "com.example.email");
	CHECK_EXPAND("%{d2r}", &env, "example.email");
	CHECK_EXPAND("%{l}", &env, "strong-bad");
	CHECK_EXPAND("%{l-}", &env, "strong.bad");
	CHECK_EXPAND("%{lr}", &env, "strong-bad");
	CHECK_EXPAND("%{lr-}", &env, "bad.strong");
	CHECK_EXPAND("%{l1r-}", &env, "strong");
	CHECK_EXPAND("%{ir}.%{v}._spf.%{d2}", &env, "3.2.0.192.in-addr._spf.example.com");
	CHECK_EXPAND("%{lr-}.lp._spf.%{d2}", &env, "bad.strong.lp._spf.example.com");
	CHECK_EXPAND("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", &env,
		     "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
	CHECK_EXPAND("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", &env,
		     "3.2.0.192.in-addr.strong.lp._spf.example.com");
	CHECK_EXPAND("%{d2}.trusted-domains.example.net", &env,
		     "example.com.trusted-domains.example.net");
}

/*
 * The IPv6 example. The nibbles come out upper case, as the RFC 7208 test
 * suite's v-macro-ip6 case requires; DNS compares names case-insensitively.
 */
TEST(spf_macro_rfc7208_ipv6_example)
{
	struct spf_ip ip = test_ip("2001:db8::cb01");
	struct spf_macro_env env;
	char *got;

	rfc_env(&env, &ip);
	got = expand("%{ir}.%{v}._spf.%{d2}", &env, false);
	CHECK(strcasecmp(got, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
			      ".ip6._spf.example.com") == 0);
	free(got);
}

TEST(spf_macro_escapes_and_explain_letters)
{
	struct spf_ip ip = test_ip("192.0.2.3");
	struct spf_macro_env env;
	char *got;

	rfc_env(&env, &ip);
	env.local = "~jack&jill=up-a_b3.c";
	CHECK_EXPAND("%{L}", &env, "~jack%26jill%3Dup-a_b3.c");
	CHECK_EXPAND("a%%b%_c%-d", &env, "a%b c%20d");
	CHECK_EXPAND("%{p}", &env, "unknown");
	CHECK_EXPAND("%{h}", &env, "mx.example.org");
	/* c, r and t belong to explanations only */
	CHECK_EXPAND("%{c}", &env, "<error>");
	got = expand("%{c} via %{r} at %{t}", &env, true);
	CHECK_STR(got, "192.0.2.3 via unknown at 1234567890");
	free(got);
	CHECK_EXPAND("%{x}", &env, "<error>");
	CHECK_EXPAND("%{d0}", &env, "<error>");
	CHECK_EXPAND("%(ir)", &env, "<error>");
	CHECK_EXPAND("foo%", &env, "<error>");
	CHECK_EXPAND("%{d", &env, "<error>");
	env.local = "foo-bar+zip+quux";
	CHECK_EXPAND("%{l2r+-}", &env, "bar.foo");
	CHECK(spf_macro_uses_p("%{p}.example.com"));
	CHECK(!spf_macro_uses_p("%%{p}.example.com"));
}

TEST(spf_expand_domain_truncates_left)
{
	struct spf_ip ip = test_ip("192.0.2.3");
	struct spf_macro_env env;
	char out[SPF_DOMAIN_MAX + 1];

	rfc_env(&env, &ip);
	env.sender_domain = "somewhat.long.exp.example.com";
	CHECK_INT(spf_expand_domain("foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.example.com",
				    &env, out), 0);
	CHECK(strlen(out) <= SPF_DOMAIN_MAX);
	CHECK(strncmp(out, "somewhat.long.exp.example.com.", 30) == 0);
	CHECK_INT(spf_expand_domain("%{d}.", &env, out), 0);
	CHECK_STR(out, "email.example.com");
	CHECK(spf_domain_queryable("example.com"));
	CHECK(!spf_domain_queryable("mail.example...com"));
	CHECK(!spf_domain_queryable("a123456789012345678901234567890123456789012345678901234567890123.com"));
	CHECK(!spf_domain_queryable(""));
}

static int parse_ok(const char *text)
{
	char err[256];
	struct spf_record *rec = spf_record_parse(text, err, sizeof(err));
	int n = rec ? (int)rec->count : -1;

	spf_record_free(rec);
	return n;
}

TEST(spf_record_parse_accepts)
{
	char err[256];
	struct spf_record *rec;

	CHECK_INT(parse_ok("v=spf1"), 0);
	CHECK_INT(parse_ok("v=spf1 a  -all "), 2);
	CHECK_INT(parse_ok("V=SpF1 ~all"), 1);
	CHECK_INT(parse_ok("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all"), 2);
	CHECK_INT(parse_ok("v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all"), 2);
	CHECK_INT(parse_ok("v=spf1 a:%{H} -all"), 2);
	CHECK_INT(parse_ok("v=spf1 default=pass"), 0);

	rec = spf_record_parse("v=spf1 ?a:example.com/24//64 -mx//0 ip6:2001:db8::/32 "
			       "redirect=_spf.example.com exp=why.%{d}", err, sizeof(err));
	CHECK(rec != NULL);
	if (rec == NULL)
		return;
	CHECK_INT(rec->count, 3);
	CHECK_INT(rec->mechs[0].type, SPF_MECH_A);
	CHECK_INT(rec->mechs[0].qualifier, SPF_NEUTRAL);
	CHECK_STR(rec->mechs[0].domain_spec, "example.com");
	CHECK_INT(rec->mechs[0].cidr4, 24);
	CHECK_INT(rec->mechs[0].cidr6, 64);
	CHECK_INT(rec->mechs[1].type, SPF_MECH_MX);
	CHECK_INT(rec->mechs[1].qualifier, SPF_FAIL);
	CHECK(rec->mechs[1].domain_spec == NULL);
	CHECK_INT(rec->mechs[1].cidr4, -1);
	CHECK_INT(rec->mechs[1].cidr6, 0);
	CHECK_INT(rec->mechs[2].cidr6, 32);
	CHECK_STR(rec->redirect, "_spf.example.com");
	CHECK_STR(rec->exp, "why.%{d}");
	spf_record_free(rec);
}

TEST(spf_record_parse_rejects)
{
	static const char *bad[] = {
		"v=spf10",
		"v=spf1 ip4:1.2.3.4 -all moo",
		"v=spf1 moo.cow/far_out=man:dog/cat",
		"v=spf1 redirect:t2.example.com",
		"v=spf1 a:foo-bar -all",
		"v=spf1 a:museum",
		"v=spf1 a:museum.",
		"v=spf1 a:1.2.3.4",
		"v=spf1 a/33",
		"v=spf1 a//129",
		"v=spf1 a:example.com/24/64",
		"v=spf1 ip4:1.2.3.4/032",
		"v=spf1 ip4:1.2.3.4/33",
		"v=spf1 ip4:1.2.3.4:8080",
		"v=spf1 ip4:1.2.3",
		"v=spf1 ip4:",
		"v=spf1 ip4:1.2.3.4//32",
		"v=spf1 ip6:::1/129",
		"v=spf1 ip6:1.2.3.4",
		"v=spf1 all:foo.com",
		"v=spf1 all/8",
		"v=spf1 ptr/0",
		"v=spf1 include:",
		"v=spf1 include",
		"v=spf1 exists",
		"v=spf1 exists:foo.com/24",
		"v=spf1 -exists:%(ir).sbl.example.com",
		"v=spf1 exists:foo%.sbl.example.com",
		"v=spf1 exp= -all",
		"v=spf1 exp=a.example.com exp=b.example.com",
		"v=spf1 redirect=a.example.com redirect=a.example.com",
		"v=spf1 redirect=-all",
		"v=spf1 =all",
		"v=spf1 1up=foo",
		"v=spf1 foo=%abc",
		"v=spf1 a:%{c}.example.com",
		"v=spf1 a:ctrl.example.com\rptr -all",
		"v=spf1 \x80" "a:example.net -all",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse_ok(bad[i]) >= 0)
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	}
}

TEST(spf_cidr_matching)
{
	struct spf_ip v4 = test_ip("192.0.2.129"), v6 = test_ip("2001:db8::cb01");
	unsigned char net4[16] = { 192, 0, 2, 128 }, net6[16];
	struct sockaddr_in6 sin6;
	struct spf_ip mapped;

	CHECK(spf_ip_in_net(&v4, net4, AF_INET, 25));
	CHECK(!spf_ip_in_net(&v4, net4, AF_INET, 32));
	CHECK(!spf_ip_in_net(&v4, net4, AF_INET, -1));
	CHECK(spf_ip_in_net(&v4, net4, AF_INET, 0));
	CHECK(!spf_ip_in_net(&v6, net4, AF_INET, 0));
	inet_pton(AF_INET6, "2001:db8::", net6);
	CHECK(spf_ip_in_net(&v6, net6, AF_INET6, 32));
	CHECK(spf_ip_in_net(&v6, net6, AF_INET6, 112));
	CHECK(!spf_ip_in_net(&v6, net6, AF_INET6, 113 + 4));
	CHECK(!spf_ip_in_net(&v4, net6, AF_INET6, 0));

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:192.0.2.129", &sin6.sin6_addr);
	CHECK_INT(spf_ip_from_sockaddr(&mapped, (struct sockaddr *)&sin6), 0);
	CHECK_INT(mapped.family, AF_INET);
	CHECK(spf_ip_in_net(&mapped, net4, AF_INET, 25));
}

TEST(spf_received_header_format)
{
	struct spf_outcome o;
	struct strbuf sb;

	memset(&o, 0, sizeof(o));
	o.result = SPF_PASS;
	o.identity = "mailfrom";
	o.domain = "example.com";
	o.mechanism = "ip4:192.0.2.0/24";
	o.explanation = "";
	o.problem = "";
	o.client_ip = "192.0.2.1";
	o.sender = "my name@example.com";
	o.helo = "foo.example.com";
	o.receiver = "mybox.example.org";
	strbuf_init(&sb, 4096);
	CHECK_INT(spf_received_header(&o, &sb), 0);
	CHECK_STR(sb.data,
		  "Received-SPF: pass (mybox.example.org: domain of my name@example.com designates "
		  "192.0.2.1 as permitted sender)\r\n"
		  "\tclient-ip=192.0.2.1;\r\n"
		  "\tenvelope-from=\"my name@example.com\";\r\n"
		  "\thelo=foo.example.com;\r\n"
		  "\treceiver=mybox.example.org;\r\n"
		  "\tidentity=mailfrom;\r\n"
		  "\tmechanism=\"ip4:192.0.2.0/24\";");
	strbuf_free(&sb);
	strbuf_init(&sb, 20);
	CHECK_INT(spf_received_header(&o, &sb), -1);
	strbuf_free(&sb);
}
