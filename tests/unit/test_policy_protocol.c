/*
 * The protocol-stage engines (HELO, reverse DNS, sender lists, SPF,
 * sender/subject repeat limits) through the policy runner, against
 * tests/tools/dnsd.py serving the zone below.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/time.h>

#include "content/engine.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "policy/policy_engine.h"
#include "policy/policy_rate.h"
#include "policy/ratelimit.h"
#include "testpeer.h"
#include "unit.h"

static const char protocol_zone[] =
	"# HELO names and forward-confirmed reverse DNS\n"
	"mail.example.com A 192.0.2.10\n"
	"10.2.0.192.in-addr.arpa PTR mail.example.com\n"
	"11.2.0.192.in-addr.arpa PTR liar.example.com\n"
	"liar.example.com A 192.0.2.99\n"
	"13.2.0.192.in-addr.arpa SERVFAIL\n"
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa PTR v6.example.com\n"
	"v6.example.com AAAA 2001:db8::1\n"
	"slow.example.com TIMEOUT\n"
	"# sender domains\n"
	"example.org MX 10 mail.example.com\n"
	"aonly.example.net A 192.0.2.20\n"
	"nullmx.example.net MX 0 .\n"
	"broken.example.net SERVFAIL\n"
	"# SPF\n"
	"pass.example.com TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
	"fail.example.com TXT \"v=spf1 -all exp=why.fail.example.com\"\n"
	"why.fail.example.com TXT \"Not authorised: %{i}\"\n"
	"soft.example.com TXT \"v=spf1 ~all\"\n"
	"temp.example.com SERVFAIL\n";

struct pp {
	struct event_base *base;
	pid_t dnsd;
	struct postern pt;
	struct config *cfg;
	struct policy *policy;
	struct policy_facts f;
	struct engine_results symbols;
	struct policy_result res;
	int calls;
	time_t now;                  /* the rate tables' clock */
};

static void pp_client(struct pp *p, const char *addr)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&p->f.client;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&p->f.client;

	memset(&p->f.client, 0, sizeof(p->f.client));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		p->f.client_len = sizeof(*sin);
	} else {
		CHECK(inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1);
		sin6->sin6_family = AF_INET6;
		p->f.client_len = sizeof(*sin6);
	}
	snprintf(p->f.client_addr, sizeof(p->f.client_addr), "%s", addr);
}

static void pp_set(struct pp *p, const char *section, const char *key, const char *value)
{
	char why[256] = "";

	if (config_set(p->cfg, section, key, value, why, sizeof(why)) < 0)
		unit_fail(__FILE__, __LINE__, "[%s] %s = %s: %s", section, key, value, why);
}

/* Every engine off: each test turns on what it judges. */
static void pp_setup(struct pp *p)
{
	static const char *const engines[] = {
		"iplist", "connlimit", "pregreet", "dnsbl", "rhsbl", "helo", "rdns", "sender",
		"spf", "recipients", "greylist", "sender_rate", "subject_rate",
	};
	char servers[64], err[256] = "";
	unsigned port = 0;

	memset(p, 0, sizeof(*p));
	p->now = 1000000;
	p->dnsd = testpeer_dnsd(protocol_zone, &port);
	CHECK(p->dnsd > 0);
	p->base = event_base_new();
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
	p->pt.base = p->base;
	p->pt.dns = dns_resolver_new(p->base, servers, 1000, 1, err, sizeof(err));
	CHECK(p->pt.dns != NULL);
	p->pt.policy_state = policy_state_new(&p->pt);
	p->cfg = config_new();
	pp_set(p, "server", "hostname", "mx.postern.test");
	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
		pp_set(p, engines[i], "enabled", "no");
	p->f.symbols = &p->symbols;
	p->f.direction = POLICY_DIR_INBOUND;
	pp_client(p, "192.0.2.10");
}

static void pp_build(struct pp *p)
{
	struct config_error cerr;
	char err[512] = "";

	if (config_finish(p->cfg, &cerr) < 0) {
		config_error_format(&cerr, err, sizeof(err));
		unit_fail(__FILE__, __LINE__, "config: %s", err);
	}
	policy_unref(p->policy);
	p->policy = policy_new(&p->pt, p->cfg, err, sizeof(err));
	if (p->policy == NULL)
		unit_fail(__FILE__, __LINE__, "policy_new: %s", err);
}

static void pp_teardown(struct pp *p)
{
	policy_facts_free(&p->f);
	policy_unref(p->policy);
	config_unref(p->cfg);
	policy_state_free(p->pt.policy_state);
	engine_results_free(&p->symbols);
	dns_resolver_free(p->pt.dns);
	event_base_free(p->base);
	testpeer_stop(p->dnsd);
}

static void pp_done(void *arg, const struct policy_result *res)
{
	struct pp *p = arg;

	p->res = *res;
	p->calls++;
}

/* Run a stage to its end (waiting for the DNS when needed); the verdict. */
static enum policy_verdict pp_run(struct pp *p, enum policy_stage stage)
{
	struct policy_run *run = NULL;
	struct timeval tv = { 5, 0 };
	int calls = p->calls;

	memset(&p->res, 0, sizeof(p->res));
	if (policy_run(p->policy, stage, &p->f, &p->res, pp_done, p, &run) == 0)
		return p->res.verdict;
	event_base_loopexit(p->base, &tv);
	while (p->calls == calls && event_base_loop(p->base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(p->base))
		;
	CHECK_INT(p->calls, calls + 1);
	return p->res.verdict;
}

static enum policy_verdict pp_helo(struct pp *p, const char *helo)
{
	p->f.helo = helo;
	return pp_run(p, POLICY_STAGE_HELO);
}

static enum policy_verdict pp_mail(struct pp *p, const char *sender)
{
	p->f.sender = sender;
	return pp_run(p, POLICY_STAGE_MAIL);
}

static const struct engine_result *pp_symbol(const struct pp *p, const char *symbol)
{
	for (size_t i = 0; i < p->symbols.count; i++) {
		if (strcmp(p->symbols.items[i].symbol, symbol) == 0)
			return &p->symbols.items[i];
	}
	return NULL;
}

static void pp_clear_symbols(struct pp *p)
{
	p->symbols.count = 0;
}

static time_t pp_clock(void *arg)
{
	return ((struct pp *)arg)->now;
}

/* ---- HELO ---- */

TEST(helo_fqdn_syntax)
{
	static const char *const bad[] = {
		"localhost", "mail", "192.0.2.10", "mail.example.123", "-bad.example.com",
		"mail..example.com", "mail.example.c", "ma il.example.com", ".example.com",
		"mail.example.com..",
	};
	static const char *const good[] = {
		"mail.example.com", "mail.example.com.", "[192.0.2.10]", "[IPv6:2001:db8::1]",
		"xn--80ak6aa92e.xn--p1ai", "host_1.example.org",
	};
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "helo", "enabled", "yes");
	pp_set(&p, "helo", "action", "tag");
	pp_set(&p, "helo", "score", "1.5");
	pp_build(&p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pp_clear_symbols(&p);
		CHECK_INT(pp_helo(&p, bad[i]), POLICY_PASS);
		if (pp_symbol(&p, "HELO_NOT_FQDN") == NULL)
			unit_fail(__FILE__, __LINE__, "%s was not tagged", bad[i]);
	}
	CHECK(pp_symbol(&p, "HELO_NOT_FQDN")->score == 1.5);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		pp_clear_symbols(&p);
		CHECK_INT(pp_helo(&p, good[i]), POLICY_PASS);
		if (p.symbols.count != 0)
			unit_fail(__FILE__, __LINE__, "%s was tagged %s", good[i],
				  p.symbols.items[0].symbol);
	}
	pp_teardown(&p);
}

TEST(helo_reject_and_defer_replies)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "helo", "enabled", "yes");
	pp_set(&p, "helo", "action", "reject");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "localhost"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.1 <localhost>: Helo command rejected: need fully-qualified hostname");
	CHECK_STR(p.res.engine, "helo");
	CHECK_INT(pp_helo(&p, "bad\x01word"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.1 <bad?word>: Helo command rejected: need fully-qualified hostname");
	pp_set(&p, "helo", "action", "defer");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "workstation"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "450 4.7.1 <workstation>: Helo command rejected: need fully-qualified hostname");
	pp_set(&p, "helo", "action", "ignore");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "workstation"), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	pp_teardown(&p);
}

TEST(helo_resolvable_and_literals)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "helo", "enabled", "yes");
	pp_set(&p, "helo", "action", "reject");
	pp_set(&p, "helo", "require_resolvable", "yes");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "mail.example.com"), POLICY_PASS);
	CHECK_INT(pp_helo(&p, "gone.example.com"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.1 <gone.example.com>: Helo command rejected: Host not found");
	/* a DNS failure is not the client's fault */
	CHECK_INT(pp_helo(&p, "broken.example.net"), POLICY_PASS);
	CHECK_INT(pp_helo(&p, "[192.0.2.10]"), POLICY_PASS);
	CHECK_INT(pp_helo(&p, "[192.0.2.99]"), POLICY_REJECT);
	CHECK(strstr(p.res.reply, "address literal does not match") != NULL);
	pp_set(&p, "helo", "action", "tag");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "[192.0.2.99]"), POLICY_PASS);
	CHECK(pp_symbol(&p, "HELO_LITERAL_MISMATCH") != NULL);
	CHECK_INT(pp_helo(&p, "gone.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "HELO_UNRESOLVABLE") != NULL);
	pp_client(&p, "2001:db8::1");
	pp_clear_symbols(&p);
	CHECK_INT(pp_helo(&p, "[IPv6:2001:db8::1]"), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	pp_teardown(&p);
}

TEST(helo_claiming_to_be_us)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "server", "listen", "192.0.2.25:25");
	pp_set(&p, "helo", "enabled", "yes");
	pp_set(&p, "helo", "action", "tag");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "MX.postern.test"), POLICY_PASS);
	CHECK(pp_symbol(&p, "HELO_FORGED_OURS") != NULL);
	pp_clear_symbols(&p);
	CHECK_INT(pp_helo(&p, "[192.0.2.25]"), POLICY_PASS);
	CHECK(pp_symbol(&p, "HELO_FORGED_OURS") != NULL);
	/* this host talking to itself, and trusted clients, may say so */
	pp_clear_symbols(&p);
	pp_client(&p, "127.0.0.1");
	CHECK_INT(pp_helo(&p, "mx.postern.test"), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	pp_client(&p, "192.0.2.10");
	p.f.direction = POLICY_DIR_OUTBOUND;
	pp_set(&p, "helo", "direction", "both");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "mx.postern.test"), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	pp_teardown(&p);
}

TEST(helo_lookup_cancelled)
{
	struct pp p;
	struct policy_run *run = NULL;
	struct policy_result res;

	pp_setup(&p);
	pp_set(&p, "helo", "enabled", "yes");
	pp_set(&p, "helo", "require_resolvable", "yes");
	pp_build(&p);
	p.f.helo = "slow.example.com";
	CHECK_INT(policy_run(p.policy, POLICY_STAGE_HELO, &p.f, &res, pp_done, &p, &run), 1);
	policy_run_cancel(run);
	event_base_loop(p.base, EVLOOP_NONBLOCK);
	CHECK_INT(p.calls, 0);
	pp_teardown(&p);
}

/* ---- reverse DNS ---- */

TEST(rdns_ptr_and_fcrdns)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "rdns", "enabled", "yes");
	pp_set(&p, "rdns", "action", "reject");
	pp_set(&p, "rdns", "require_fcrdns", "yes");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "mail.example.com"), POLICY_PASS);
	CHECK_STR(p.f.ptr_name, "mail.example.com");
	pp_client(&p, "192.0.2.11");
	CHECK_INT(pp_helo(&p, "liar.example.com"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.25 Client host rejected: hostname does not resolve to your address, [192.0.2.11]");
	CHECK_STR(p.f.ptr_name, "liar.example.com");
	pp_client(&p, "192.0.2.12");
	CHECK_INT(pp_helo(&p, "mail.example.com"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.12]");
	CHECK(p.f.ptr_name == NULL);
	pp_client(&p, "2001:db8::1");
	CHECK_INT(pp_helo(&p, "v6.example.com"), POLICY_PASS);
	CHECK_STR(p.f.ptr_name, "v6.example.com");
	pp_teardown(&p);
}

TEST(rdns_tag_defer_and_dns_failure)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "rdns", "enabled", "yes");
	pp_set(&p, "rdns", "action", "tag");
	pp_set(&p, "rdns", "score", "2.5");
	pp_set(&p, "rdns", "require_fcrdns", "yes");
	pp_build(&p);
	pp_client(&p, "192.0.2.12");
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "RDNS_NONE") != NULL && pp_symbol(&p, "RDNS_NONE")->score == 2.5);
	pp_client(&p, "192.0.2.11");
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "RDNS_MISMATCH") != NULL);
	/* SERVFAIL: never held against the client unless the action is defer */
	pp_client(&p, "192.0.2.13");
	pp_clear_symbols(&p);
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	pp_set(&p, "rdns", "action", "reject");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	pp_set(&p, "rdns", "action", "defer");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.13]");
	pp_client(&p, "192.0.2.12");
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.12]");
	/* without require_ptr/fcrdns the name is only recorded */
	pp_set(&p, "rdns", "require_ptr", "no");
	pp_set(&p, "rdns", "require_fcrdns", "no");
	pp_build(&p);
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	pp_client(&p, "192.0.2.11");
	CHECK_INT(pp_helo(&p, "x.example.com"), POLICY_PASS);
	CHECK_STR(p.f.ptr_name, "liar.example.com");
	pp_teardown(&p);
}

/* ---- sender lists ---- */

TEST(sender_allow_and_deny_lists)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "sender", "enabled", "yes");
	pp_set(&p, "sender", "allow", "good@example.org, @trusted.example, partner.example");
	pp_set(&p, "sender", "deny", "spam@example.org, @bad.example, evil.example");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "Good@Example.ORG"), POLICY_PASS);
	CHECK(p.f.allowlisted);
	p.f.allowlisted = false;
	CHECK_INT(pp_mail(&p, "x@trusted.example"), POLICY_PASS);
	CHECK(p.f.allowlisted);
	p.f.allowlisted = false;
	CHECK_INT(pp_mail(&p, "x@partner.example"), POLICY_PASS);
	CHECK(p.f.allowlisted);
	p.f.allowlisted = false;
	CHECK_INT(pp_mail(&p, "x@sub.partner.example"), POLICY_PASS);
	CHECK(!p.f.allowlisted);
	CHECK_INT(pp_mail(&p, "spam@example.org"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "554 5.7.1 <spam@example.org>: Sender address rejected: Access denied");
	CHECK_INT(pp_mail(&p, "x@bad.example"), POLICY_REJECT);
	CHECK_INT(pp_mail(&p, "x@EVIL.example"), POLICY_REJECT);
	CHECK_INT(pp_mail(&p, "ok@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, ""), POLICY_PASS);
	/* a deny entry holds for allow-listed clients too */
	p.f.allowlisted = true;
	CHECK_INT(pp_mail(&p, "x@bad.example"), POLICY_REJECT);
	p.f.allowlisted = false;
	pp_set(&p, "sender", "action", "defer");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "x@bad.example"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.1 <x@bad.example>: Sender address rejected: Access denied");
	pp_set(&p, "sender", "action", "tag");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "x@bad.example"), POLICY_PASS);
	CHECK(pp_symbol(&p, "SENDER_DENIED") != NULL);
	pp_teardown(&p);
}

TEST(sender_blank)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "sender", "enabled", "yes");
	pp_set(&p, "sender", "reject_blank", "yes");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, ""), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.1 Null sender not accepted here");
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	pp_set(&p, "sender", "action", "tag");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, ""), POLICY_PASS);
	CHECK(pp_symbol(&p, "SENDER_BLANK") != NULL);
	pp_teardown(&p);
}

TEST(sender_domain_resolvable)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "sender", "enabled", "yes");
	pp_set(&p, "sender", "require_resolvable", "yes");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@aonly.example.net"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@[192.0.2.1]"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, ""), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@nowhere.example.net"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.1.8 <a@nowhere.example.net>: Sender address rejected: Domain not found");
	CHECK_INT(pp_mail(&p, "a@nullmx.example.net"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.27 <a@nullmx.example.net>: Sender address rejected: Domain has null MX");
	CHECK_INT(pp_mail(&p, "a@broken.example.net"), POLICY_PASS);
	pp_set(&p, "sender", "action", "defer");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "a@nowhere.example.net"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "450 4.1.8 <a@nowhere.example.net>: Sender address rejected: Domain not found");
	CHECK_INT(pp_mail(&p, "a@broken.example.net"), POLICY_DEFER);
	CHECK(strncmp(p.res.reply, "451 4.1.8 <a@broken.example.net>", 32) == 0);
	/* allow-listed sessions skip the legitimacy half */
	p.f.allowlisted = true;
	CHECK_INT(pp_mail(&p, "a@nowhere.example.net"), POLICY_PASS);
	pp_teardown(&p);
}

/* ---- SPF ---- */

TEST(spf_results_mapped_to_actions)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "spf", "enabled", "yes");
	pp_set(&p, "spf", "score", "2");
	pp_build(&p);
	p.f.helo = "mail.example.com";
	CHECK_INT(pp_mail(&p, "a@pass.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "SPF_PASS") != NULL && pp_symbol(&p, "SPF_PASS")->score < 0);
	CHECK(p.f.received_spf != NULL && strncmp(p.f.received_spf, "Received-SPF: pass", 18) == 0);
	CHECK_INT(pp_mail(&p, "a@fail.example.com"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.23 <a@fail.example.com>: SPF fail: Not authorised: 192.0.2.10");
	CHECK(strncmp(p.f.received_spf, "Received-SPF: fail", 18) == 0);
	CHECK_INT(pp_mail(&p, "a@soft.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "SPF_SOFTFAIL") != NULL && pp_symbol(&p, "SPF_SOFTFAIL")->score == 2);
	CHECK_INT(pp_mail(&p, "a@temp.example.com"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.24 SPF temporary error");
	CHECK_INT(pp_mail(&p, "a@nospf.example.org"), POLICY_PASS);
	/* the null sender is checked as postmaster@<helo> (RFC 7208 2.4) */
	p.f.helo = "fail.example.com";
	CHECK_INT(pp_mail(&p, ""), POLICY_REJECT);
	CHECK(strncmp(p.res.reply, "550 5.7.23 <postmaster@fail.example.com>", 40) == 0);
	pp_teardown(&p);
}

TEST(spf_tag_and_no_header)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "spf", "enabled", "yes");
	pp_set(&p, "spf", "fail", "tag");
	pp_set(&p, "spf", "temperror", "tag");
	pp_set(&p, "spf", "header", "no");
	pp_build(&p);
	p.f.helo = "mail.example.com";
	CHECK_INT(pp_mail(&p, "a@fail.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "SPF_FAIL") != NULL);
	CHECK_INT(pp_mail(&p, "a@temp.example.com"), POLICY_PASS);
	CHECK(pp_symbol(&p, "SPF_TEMPERROR") != NULL);
	CHECK(p.f.received_spf == NULL);
	pp_set(&p, "spf", "fail", "defer");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "a@fail.example.com"), POLICY_DEFER);
	CHECK(strncmp(p.res.reply, "451 4.7.23 ", 11) == 0);
	pp_teardown(&p);
}

/* ---- sender and subject repeat limits ---- */

TEST(sender_rate_bans_accumulate_and_decay)
{
	struct pp p;
	char err[256] = "";

	pp_setup(&p);
	pp_set(&p, "sender_rate", "enabled", "yes");
	pp_set(&p, "sender_rate", "direction", "both");
	pp_set(&p, "sender_rate", "limit", "2");
	pp_set(&p, "sender_rate", "window", "60s");
	pp_set(&p, "sender_rate", "ban_step", "30s");
	pp_set(&p, "sender_rate", "ban_max", "100s");
	pp_build(&p);
	CHECK_INT(policy_rate_use_clock(p.pt.policy_state, p.cfg, pp_clock, &p, err, sizeof(err)), 0);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "A@Example.ORG"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.1 Too many messages from <a@example.org>, try again in 30 seconds");
	CHECK_STR(p.res.engine, "sender_rate");
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.1 Too many messages from <a@example.org>, try again in 60 seconds");
	/* other senders are not affected, the null sender has its own key */
	CHECK_INT(pp_mail(&p, "b@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, ""), POLICY_PASS);
	/* a reload with the same settings keeps the ban */
	pp_build(&p);
	p.now += 59;
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_DEFER);
	p.now += 200;
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	/* banned again, then lifted by the operator */
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_DEFER);
	CHECK(ratelimit_unban(p.pt.policy_state->sender_rate, "sender:a@example.org"));
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	pp_set(&p, "sender_rate", "action", "reject");
	pp_build(&p);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_PASS);
	CHECK_INT(pp_mail(&p, "a@example.org"), POLICY_REJECT);
	CHECK_STR(p.res.reply, "554 5.7.1 Too many messages from <a@example.org>");
	pp_teardown(&p);
}

TEST(sender_rate_new_settings_start_afresh)
{
	struct pp p;
	struct ratelimit *before;

	pp_setup(&p);
	pp_set(&p, "sender_rate", "enabled", "yes");
	pp_set(&p, "sender_rate", "limit", "1");
	pp_build(&p);
	before = p.pt.policy_state->sender_rate;
	CHECK(before != NULL);
	pp_set(&p, "sender_rate", "score", "4");
	pp_build(&p);
	CHECK(p.pt.policy_state->sender_rate == before);
	pp_set(&p, "sender_rate", "limit", "5");
	pp_build(&p);
	CHECK(p.pt.policy_state->sender_rate != NULL);
	CHECK(p.pt.policy_state->sender_rate != before);
	pp_teardown(&p);
}

TEST(subject_rate_normalised_subjects)
{
	struct pp p;
	char err[256] = "";

	pp_setup(&p);
	pp_set(&p, "subject_rate", "enabled", "yes");
	pp_set(&p, "subject_rate", "limit", "1");
	pp_set(&p, "subject_rate", "window", "1h");
	pp_set(&p, "subject_rate", "ban_step", "10m");
	pp_set(&p, "subject_rate", "ban_max", "1h");
	pp_set(&p, "subject_rate", "action", "tag");
	pp_set(&p, "subject_rate", "score", "3");
	pp_build(&p);
	CHECK_INT(policy_rate_use_clock(p.pt.policy_state, p.cfg, pp_clock, &p, err, sizeof(err)), 0);
	p.f.subject = "Invoice 1234 overdue";
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	p.f.subject = "  INVOICE\t9876   overdue ";
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK(pp_symbol(&p, "SUBJECT_RATE") != NULL && pp_symbol(&p, "SUBJECT_RATE")->score == 3);
	p.f.subject = "Invoice overdue";
	pp_clear_symbols(&p);
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK_INT(p.symbols.count, 0);
	p.f.subject = NULL;
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	pp_set(&p, "subject_rate", "action", "defer");
	pp_build(&p);
	p.f.subject = "invoice 5555 overdue";
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.1 Too many messages with this subject, try again in 1200 seconds");
	p.now += 1201;
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_DEFER);
	CHECK_STR(p.res.reply, "451 4.7.1 Too many messages with this subject, try again in 600 seconds");
	p.now += 3 * 3600;
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	pp_teardown(&p);
}

/* ---- SPF of the first untrusted hop behind a [perimeter] relay ---- */

TEST(spf_perimeter_hop_at_data)
{
	struct pp p;

	pp_setup(&p);
	pp_set(&p, "spf", "enabled", "yes");
	pp_set(&p, "perimeter", "relays", "10.0.0.25");
	pp_build(&p);
	/* the relay connects: SPF does not judge it at MAIL */
	pp_client(&p, "10.0.0.25");
	p.f.via_perimeter = true;
	p.f.helo = "relay.corp.example";
	CHECK_INT(pp_mail(&p, "a@fail.example.com"), POLICY_PASS);
	CHECK(p.f.received_spf == NULL);
	/* every hop trusted: nothing to check at DATA either */
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK(p.f.received_spf == NULL);
	/* the session found the hop: its address, with the relay's HELO when it has none of its own */
	pp_client(&p, "192.0.2.10");
	p.f.perimeter_hop = true;
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_REJECT);
	CHECK_STR(p.res.reply, "550 5.7.23 <a@fail.example.com>: SPF fail: Not authorised: 192.0.2.10");
	CHECK(strncmp(p.f.received_spf, "Received-SPF: fail", 18) == 0);
	p.f.sender = "a@pass.example.com";
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK(strncmp(p.f.received_spf, "Received-SPF: pass", 18) == 0);
	CHECK(strstr(p.f.received_spf, "client-ip=192.0.2.10") != NULL);
	CHECK(strstr(p.f.received_spf, "helo=relay.corp.example") != NULL);
	/* the hop's own HELO as the relay recorded it: the null sender is postmaster@<that HELO> */
	p.f.hop_helo = xstrdup("fail.example.com");
	p.f.sender = "";
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_REJECT);
	CHECK(strncmp(p.res.reply, "550 5.7.23 <postmaster@fail.example.com>", 40) == 0);

	/* a client that is not a relay: SPF at MAIL as before, nothing at DATA */
	free(p.f.hop_helo);
	p.f.hop_helo = NULL;
	p.f.via_perimeter = false;
	p.f.perimeter_hop = false;
	p.f.helo = "mail.example.com";
	CHECK_INT(pp_mail(&p, "a@fail.example.com"), POLICY_REJECT);
	free(p.f.received_spf);
	p.f.received_spf = NULL;
	CHECK_INT(pp_run(&p, POLICY_STAGE_DATA), POLICY_PASS);
	CHECK(p.f.received_spf == NULL);
	pp_teardown(&p);
}
