/*
 * The connect-stage engines through the policy runner: IP lists,
 * concurrency and connection rate (with the rate table's clock injected),
 * DNSBL/RHSBL against tests/tools/dnsd.py, and the perimeter's Received
 * parser over real header chains.
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
#include "policy/policy_connect.h"
#include "policy/policy_engine.h"
#include "testpeer.h"
#include "unit.h"

#define CORPUS_MAIL "/work/shared/corpus/mail/ham/00001.7c53336b37003a9286aba55d2945844c"

static const char connect_zone[] =
	"# 192.0.2.10 listed on bl.test (127.0.0.2) and multi.test (127.0.0.4)\n"
	"10.2.0.192.bl.test A 127.0.0.2\n"
	"10.2.0.192.multi.test A 127.0.0.4\n"
	"# 127.0.0.1 as the integration tests' client\n"
	"1.0.0.127.zen.test A 127.0.0.2\n"
	"10.2.0.192.slow.test TIMEOUT\n"
	"spammer.example.dbl.test A 127.0.1.2\n";

struct fixture {
	struct postern pt;
	struct config *cfg;
	pid_t dnsd;
	struct engine_results symbols;
	time_t now;                /* the rate table's clock */
	int calls;
	struct policy_result async;
};

static void fixture_setup(struct fixture *fx, bool with_dns)
{
	char servers[64], err[256] = "";
	unsigned port = 0;

	memset(fx, 0, sizeof(*fx));
	fx->pt.base = event_base_new();
	fx->pt.policy_state = policy_state_new(&fx->pt);
	fx->cfg = config_new();
	fx->now = 100000;
	if (!with_dns)
		return;
	fx->dnsd = testpeer_dnsd(connect_zone, &port);
	CHECK(fx->dnsd > 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
	fx->pt.dns = dns_resolver_new(fx->pt.base, servers, 1000, 2, err, sizeof(err));
	CHECK(fx->pt.dns != NULL);
}

static void fixture_teardown(struct fixture *fx)
{
	policy_state_free(fx->pt.policy_state);
	if (fx->pt.dns != NULL)
		dns_resolver_free(fx->pt.dns);
	event_base_free(fx->pt.base);
	config_unref(fx->cfg);
	engine_results_free(&fx->symbols);
	if (fx->dnsd > 0)
		testpeer_stop(fx->dnsd);
}

static struct policy *fixture_policy(struct fixture *fx)
{
	char err[256] = "";
	struct policy *p = policy_new(&fx->pt, fx->cfg, err, sizeof(err));

	if (p == NULL)
		fprintf(stderr, "  policy_new: %s\n", err);
	CHECK(p != NULL);
	return p;
}

static void facts_init(struct fixture *fx, struct policy_facts *f, const char *addr)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->client_addr, sizeof(f->client_addr), "%s", addr);
	snprintf(f->conn_addr, sizeof(f->conn_addr), "%s", addr);
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->client;

		s6->sin6_family = AF_INET6;
		CHECK(inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1);
		f->client_len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&f->client;

		s4->sin_family = AF_INET;
		CHECK(inet_pton(AF_INET, addr, &s4->sin_addr) == 1);
		f->client_len = sizeof(*s4);
	}
	f->direction = POLICY_DIR_INBOUND;
	f->symbols = &fx->symbols;
}

static void on_done(void *arg, const struct policy_result *res)
{
	struct fixture *fx = arg;

	fx->calls++;
	fx->async = *res;
}

/* Run a stage to its end, waiting on the loop (at most 5 s) when an engine is asynchronous. */
static struct policy_result run_stage(struct fixture *fx, struct policy *p, enum policy_stage stage,
				      struct policy_facts *f)
{
	struct policy_result res;
	struct policy_run *run = NULL;
	struct timeval tv = { 5, 0 };

	memset(&res, 0, sizeof(res));
	fx->calls = 0;
	if (policy_run(p, stage, f, &res, on_done, fx, &run) == 0)
		return res;
	event_base_loopexit(fx->pt.base, &tv);
	while (fx->calls == 0 && event_base_loop(fx->pt.base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(fx->pt.base))
		;
	CHECK_INT(fx->calls, 1);
	if (fx->calls == 0)
		policy_run_cancel(run);
	return fx->async;
}

static void cidr_add_all(struct cidr_list *l, const char *const *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		CHECK_INT(cidr_list_add(l, items[i]), 0);
	cidr_list_finish(l);
}

static bool has_symbol(const struct fixture *fx, const char *symbol, double score)
{
	for (size_t i = 0; i < fx->symbols.count; i++) {
		if (strcmp(fx->symbols.items[i].symbol, symbol) == 0 && fx->symbols.items[i].score == score)
			return true;
	}
	return false;
}

/* Only [iplist] on, so the other engines' defaults do not get in the way. */
static void only_iplist(struct config *cfg)
{
	cfg->max_per_ip = 0;
	cfg->conn_rate = 0;
}

TEST(policy_iplist_deny_wins_allow_skips_legitimacy)
{
	static const char *const deny[] = { "192.0.2.0/24", "2001:db8:bad::/48" };
	static const char *const allow[] = { "10.0.0.0/8", "192.0.2.10", "2001:db8::/32" };
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	fixture_setup(&fx, false);
	cidr_add_all(&fx.cfg->ip_deny, deny, 2);
	cidr_add_all(&fx.cfg->ip_allow, allow, 3);
	fx.cfg->max_per_ip = 1;
	p = fixture_policy(&fx);

	facts_init(&fx, &f, "192.0.2.10");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 Access denied");
	CHECK_STR(r.engine, "iplist");
	CHECK(r.disconnect);

	facts_init(&fx, &f, "2001:db8:bad::25");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);

	/* allowed: ACCEPT, and connlimit (a legitimacy engine) takes no slot */
	facts_init(&fx, &f, "10.1.2.3");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	CHECK(f.allowlisted);
	CHECK(!f.conn_slot_held);

	facts_init(&fx, &f, "2001:db8::1");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK(f.allowlisted);

	facts_init(&fx, &f, "198.51.100.1");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	CHECK(!f.allowlisted);
	CHECK(f.conn_slot_held);
	policy_session_end(p, &f);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_iplist_actions)
{
	static const char *const deny[] = { "192.0.2.0/24" };
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	fixture_setup(&fx, false);
	only_iplist(fx.cfg);
	cidr_add_all(&fx.cfg->ip_deny, deny, 1);
	fx.cfg->iplist.action = POLICY_ACTION_DEFER;
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.1");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK(strncmp(r.reply, "421 4.7.1 ", 10) == 0);
	policy_unref(p);

	fx.cfg->iplist.action = POLICY_ACTION_TAG;
	fx.cfg->iplist.score = 4.5;
	p = fixture_policy(&fx);
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	CHECK(has_symbol(&fx, "IPLIST_DENY", 4.5));
	policy_unref(p);

	/* a whitelisted client is not judged */
	fx.cfg->iplist.action = POLICY_ACTION_REJECT;
	CHECK_INT(cidr_list_add(&fx.cfg->iplist.whitelist, "192.0.2.1"), 0);
	cidr_list_finish(&fx.cfg->iplist.whitelist);
	p = fixture_policy(&fx);
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_iplist_100k_entries)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;
	char addr[64];

	fixture_setup(&fx, false);
	only_iplist(fx.cfg);
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(addr, sizeof(addr), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, (i * 2) & 255);
		CHECK_INT(cidr_list_add(&fx.cfg->ip_deny, addr), 0);
	}
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "2001:db8:%x::/48", i);
		CHECK_INT(cidr_list_add(&fx.cfg->ip_deny, addr), 0);
	}
	cidr_list_finish(&fx.cfg->ip_deny);
	p = fixture_policy(&fx);
	for (unsigned i = 0; i < 20000; i++) {
		snprintf(addr, sizeof(addr), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, (i * 2 + (i & 1)) & 255);
		facts_init(&fx, &f, addr);
		r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
		CHECK_INT(r.verdict, (i & 1) ? POLICY_PASS : POLICY_REJECT);
	}
	facts_init(&fx, &f, "2001:db8:3e7:1::1");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_REJECT);
	facts_init(&fx, &f, "2001:db8:3e8::1");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_connlimit_concurrency)
{
	struct fixture fx;
	struct policy_facts f[4];
	struct policy_result r;
	struct policy *p;

	fixture_setup(&fx, false);
	fx.cfg->max_per_ip = 2;
	fx.cfg->conn_rate = 0;
	p = fixture_policy(&fx);
	for (int i = 0; i < 2; i++) {
		facts_init(&fx, &f[i], "192.0.2.7");
		CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f[i]).verdict, POLICY_PASS);
		CHECK(f[i].conn_slot_held);
	}
	facts_init(&fx, &f[2], "192.0.2.7");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f[2]);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address");
	CHECK(r.disconnect);
	CHECK(!f[2].conn_slot_held);
	policy_session_end(p, &f[2]);      /* held nothing: releases nothing */

	/* another address has its own count */
	facts_init(&fx, &f[3], "192.0.2.8");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f[3]).verdict, POLICY_PASS);
	policy_session_end(p, &f[3]);

	/* a session that ends gives its slot back, also to a policy built after a reload */
	policy_session_end(p, &f[0]);
	CHECK(!f[0].conn_slot_held);
	policy_unref(p);
	fx.cfg->connlimit.action = POLICY_ACTION_REJECT;
	p = fixture_policy(&fx);
	facts_init(&fx, &f[0], "192.0.2.7");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f[0]).verdict, POLICY_PASS);
	facts_init(&fx, &f[2], "192.0.2.7");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f[2]);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 Too many connections from your address");
	policy_session_end(p, &f[0]);
	policy_session_end(p, &f[1]);
	CHECK_INT(ratelimit_conc_count(fx.pt.policy_state->conn_conc, "ip:192.0.2.7"), 0);
	policy_unref(p);
	fixture_teardown(&fx);
}

static time_t fixture_clock(void *arg)
{
	return *(time_t *)arg;
}

TEST(policy_connlimit_rate_bans_accumulate_and_decay)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;
	struct ratelimit *table;
	char err[256] = "";

	fixture_setup(&fx, false);
	fx.cfg->max_per_ip = 0;
	fx.cfg->conn_rate = 3;
	fx.cfg->conn_window = 10;
	fx.cfg->conn_ban_step = 60;
	fx.cfg->conn_ban_max = 150;
	CHECK_INT(policy_connlimit_use_clock(fx.pt.policy_state, fx.cfg, fixture_clock, &fx.now, err,
					     sizeof(err)), 0);
	table = fx.pt.policy_state->conn_rate;
	p = fixture_policy(&fx);
	CHECK(fx.pt.policy_state->conn_rate == table);   /* same parameters: kept */
	facts_init(&fx, &f, "192.0.2.9");
	for (int i = 0; i < 3; i++)
		CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address, try again in 60 seconds");
	CHECK(r.disconnect);
	/* more attempts within the window extend the ban, up to ban_max */
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address, try again in 120 seconds");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address, try again in 150 seconds");
	/* once the window has moved on, a banned attempt is refused but adds nothing: the ban decays */
	fx.now += 20;
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address, try again in 130 seconds");
	/* other clients are not affected */
	facts_init(&fx, &f, "192.0.2.99");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	/* the ban runs out and the window has moved on */
	fx.now += 131;
	facts_init(&fx, &f, "192.0.2.9");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	policy_unref(p);

	/* a reload with other rate settings starts a new table */
	fx.cfg->conn_rate = 5;
	p = fixture_policy(&fx);
	CHECK(fx.pt.policy_state->conn_rate != NULL);
	CHECK(fx.pt.policy_state->conn_rate != table);
	policy_unref(p);
	fx.cfg->conn_rate = 0;
	p = fixture_policy(&fx);
	CHECK(fx.pt.policy_state->conn_rate == NULL);
	policy_unref(p);
	fixture_teardown(&fx);
}

/* One [dnsbl "zone"] (or rhsbl) list, as the config would hold it. */
static void add_list(struct dnsbl_spec **specs, size_t *n, const char *zone, const char *match,
		     const char *reply, unsigned priority)
{
	struct dnsbl_spec *s;

	*specs = xreallocarray(*specs, *n + 1, sizeof(**specs));
	s = &(*specs)[(*n)++];
	memset(s, 0, sizeof(*s));
	s->zone = xstrdup(zone);
	s->match = xstrdup(match);
	s->reply = xstrdup(reply);
	s->priority = priority;
}

#define DEFAULT_REPLY "554 5.7.1 Service unavailable; client [%0] blocked using %2"

static void dnsbl_setup(struct fixture *fx)
{
	fixture_setup(fx, true);
	fx->cfg->max_per_ip = 0;
	fx->cfg->dnsbl_timeout_ms = 2000;
}

TEST(policy_dnsbl_listed_at_connect)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	fx.cfg->dnsbl_reject_at_rcpt = false;
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "bl.test", "any", DEFAULT_REPLY, 100);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 Service unavailable; client [192.0.2.10] blocked using bl.test");
	CHECK_STR(r.engine, "dnsbl");
	CHECK(r.disconnect);

	facts_init(&fx, &f, "192.0.2.11");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_dnsbl_at_rcpt_custom_reply)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	fx.cfg->dnsbl_reject_at_rcpt = true;
	fx.cfg->dnsbl.score = 3;
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "zen.test", "codes:127.0.0.2,127.0.0.3",
		 "550 5.7.1 Client %0 is listed by %1 (see https://%2/lookup?%%)", 10);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "127.0.0.1");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	CHECK(!r.disconnect);
	CHECK(has_symbol(&fx, "DNSBL_ZEN_TEST", 3));
	CHECK_STR(f.dnsbl_reply, "550 5.7.1 Client 127.0.0.1 is listed by zen.test (see https://zen.test/lookup?%)");
	f.sender = "someone@example.org";
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_MAIL, &f).verdict, POLICY_PASS);
	f.rcpt = "user@example.net";
	r = run_stage(&fx, p, POLICY_STAGE_RCPT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, f.dnsbl_reply);
	CHECK(!r.disconnect);
	policy_unref(p);

	/* a whitelisted sender passes at RCPT */
	fx.cfg->dnsbl.whitelist_senders = xcalloc(1, sizeof(char *));
	fx.cfg->dnsbl.whitelist_senders[0] = xstrdup("@example.org");
	fx.cfg->dnsbl.nwhitelist_senders = 1;
	p = fixture_policy(&fx);
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_RCPT, &f).verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_dnsbl_mask_codes_priority)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	fx.cfg->dnsbl_reject_at_rcpt = false;
	/* bl.test answers 127.0.0.2: mask 0x4 and codes 127.0.0.3 do not match it */
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "bl.test", "mask:0x4", "554 5.7.1 %2", 1);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "bl.test", "codes:127.0.0.3", "554 5.7.1 %2 codes", 2);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	policy_unref(p);

	/* multi.test answers 127.0.0.4: the mask matches; of two hits the smaller priority wins */
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "multi.test", "mask:0x4", "554 5.7.1 mask %2", 50);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "multi.test", "codes:127.0.0.4", "554 5.7.1 codes %2", 40);
	p = fixture_policy(&fx);
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 codes multi.test");
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_dnsbl_defer_and_tag)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	fx.cfg->dnsbl_reject_at_rcpt = false;
	fx.cfg->dnsbl.action = POLICY_ACTION_DEFER;
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "bl.test", "any", DEFAULT_REPLY, 100);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "451 4.7.1 Service unavailable; client [192.0.2.10] blocked using bl.test");
	policy_unref(p);

	fx.cfg->dnsbl.action = POLICY_ACTION_TAG;
	fx.cfg->dnsbl.score = 2.5;
	p = fixture_policy(&fx);
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_PASS);
	CHECK(has_symbol(&fx, "DNSBL_BL_TEST", 2.5));
	CHECK_STR(f.dnsbl_reply, "");
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_dnsbl_dead_list_does_not_stall)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	fx.cfg->dnsbl_reject_at_rcpt = false;
	fx.cfg->dnsbl_timeout_ms = 300;
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "slow.test", "any", DEFAULT_REPLY, 1);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "multi.test", "any", "554 5.7.1 listed at %2", 2);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	/* the deadline answers: the dead list counts as not listed, the live one decides */
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 listed at multi.test");
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_dnsbl_cancel_in_flight)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy_run *run = NULL;
	struct policy *p;

	dnsbl_setup(&fx);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "slow.test", "any", DEFAULT_REPLY, 1);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	CHECK_INT(policy_run(p, POLICY_STAGE_CONNECT, &f, &r, on_done, &fx, &run), 1);
	policy_run_cancel(run);
	event_base_loop(fx.pt.base, EVLOOP_NONBLOCK);
	CHECK_INT(fx.calls, 0);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_rhsbl_at_mail)
{
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	add_list(&fx.cfg->rhsbls, &fx.cfg->nrhsbls, "dbl.test", "any",
		 "554 5.7.1 Sender address rejected: domain listed at %2", 100);
	p = fixture_policy(&fx);
	facts_init(&fx, &f, "192.0.2.10");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	f.sender = "bob@spammer.example";
	r = run_stage(&fx, p, POLICY_STAGE_MAIL, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 Sender address rejected: domain listed at dbl.test");
	CHECK_STR(r.engine, "rhsbl");
	CHECK(!r.disconnect);
	f.sender = "alice@clean.example";
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_MAIL, &f).verdict, POLICY_PASS);
	f.sender = "";
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_MAIL, &f).verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

/* The judged client of a header block, as text ("" when none). */
static const char *perimeter_text(const char *headers, size_t len, const char *const *relays,
				  size_t nrelays, char *buf, size_t buflen)
{
	struct cidr_list l = { 0 };
	struct sockaddr_storage ss;
	const void *a;

	cidr_add_all(&l, relays, nrelays);
	buf[0] = '\0';
	if (perimeter_find_client(headers, len, &l, &ss, NULL, 0) == 1) {
		a = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
					    : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
		inet_ntop(ss.ss_family, a, buf, (socklen_t)buflen);
	}
	cidr_list_free(&l);
	return buf;
}

TEST(perimeter_real_received_chain)
{
	static const char *const relays1[] = { "127.0.0.0/8" };
	static const char *const relays2[] = { "127.0.0.0/8", "172.16.0.0/16", "66.187.233.211" };
	static const char *const relays3[] = { "127.0.0.0/8", "172.16.0.0/16", "66.187.233.211",
					       "202.28.97.6" };
	static const char *const relays4[] = { "127.0.0.0/8", "172.16.0.0/12", "66.187.233.211",
					       "202.28.97.6" };
	char path[] = CORPUS_MAIL, buf[64], *text;
	FILE *fp = fopen(path, "r");
	size_t len;

	CHECK(fp != NULL);
	if (fp == NULL)
		return;
	text = xmalloc(1 << 20);
	len = fread(text, 1, (1 << 20) - 1, fp);
	fclose(fp);
	/* localhost [127.0.0.1], phobos [127.0.0.1], then listman's public address */
	CHECK_STR(perimeter_text(text, len, relays1, 1, buf, sizeof(buf)), "66.187.233.211");
	/* deeper: past a local pickup "(from mail@localhost)" to the sender's relay */
	CHECK_STR(perimeter_text(text, len, relays2, 3, buf, sizeof(buf)), "202.28.97.6");
	CHECK_STR(perimeter_text(text, len, relays3, 4, buf, sizeof(buf)), "172.30.0.98");
	/* every hop down to the originating host trusted */
	CHECK_STR(perimeter_text(text, len, relays4, 4, buf, sizeof(buf)), "");
	free(text);
}

TEST(perimeter_received_forms)
{
	static const char *const relays[] = { "10.0.0.0/8", "2001:db8:1::/48" };
	static const struct {
		const char *headers;
		const char *client;
	} cases[] = {
		/* Postfix: a forged bracketed HELO at the top level loses to the comment */
		{ "Received: from [192.0.2.1] (unknown [198.51.100.7])\r\n\tby mx.example (Postfix) with ESMTP id 1\r\n", "198.51.100.7" },
		/* Exchange: hops between internal servers, then the edge's client */
		{ "Received: from EXCH01.corp.example (10.1.1.5) by EXCH02.corp.example (10.1.1.6)\r\n"
		  " with Microsoft SMTP Server (TLS) id 15.1.2507.6; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
		  "Received: from mail.sender.example (203.0.113.9) by EXCH01.corp.example\r\n"
		  " (10.1.1.5) with Microsoft SMTP Server id 15.1.2507.6; Mon, 1 Jan 2024 09:59:59 +0000\r\n",
		  "203.0.113.9" },
		/* Exim: address with port and helo in one comment, IPv6 */
		{ "Received: from edge ([IPv6:2001:db8:1::25]) by gw.example; Mon, 1 Jan 2024\n"
		  "Received: from mx.sender.example ([2001:db8:99::7]:54321 helo=mx.sender.example)\n"
		  "\tby edge.example with esmtps (Exim 4.96)\n", "2001:db8:99::7" },
		/* Exim without a reverse name: the top-level bracket is the address */
		{ "Received: from [203.0.113.77] (helo=friend)\n\tby edge.example with esmtp (Exim 4.96)\n", "203.0.113.77" },
		/* qmail */
		{ "Received: from unknown (HELO mail.example) (203.0.113.50)\n  by mx.example with SMTP; 1 Jan 2024\n", "203.0.113.50" },
		/* the helo "by" is not the by-clause; the by-clause address is not the client */
		{ "Received: from by.example (by.example [192.0.2.44]) by mx.example ([10.9.9.9])\n", "192.0.2.44" },
		/* every hop trusted: nothing to report */
		{ "Received: from a (a [10.0.0.1]) by b\nReceived: from c (c [10.0.0.2]) by d\n", "" },
		/* headers end at the blank line: a Received in the body is not looked at */
		{ "Received: from a (a [10.0.0.1]) by b\nSubject: x\n\nReceived: from z ([192.0.2.5]) by b\n", "" },
		{ "", "" },
		{ "Received: from broken ([192.0.2.1\nReceived: from next (next [192.0.2.2]) by b\n", "192.0.2.2" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = perimeter_text(cases[i].headers, strlen(cases[i].headers), relays, 2, buf,
						 sizeof(buf));

		if (strcmp(got, cases[i].client) != 0)
			fprintf(stderr, "  case %zu: got \"%s\"\n", i, got);
		CHECK_STR(got, cases[i].client);
	}
}

/* The HELO of the judged hop, as its relay recorded it ("" when none can be trusted). */
TEST(perimeter_hop_helo_forms)
{
	static const char *const relays[] = { "10.0.0.0/8" };
	static const struct {
		const char *headers;
		const char *helo;
	} cases[] = {
		/* Postfix and Sendmail: the HELO right after "from" */
		{ "Received: from mail.sender.example (rdns.sender.example [198.51.100.7])\r\n\tby mx\r\n", "mail.sender.example" },
		{ "Received: from [192.0.2.1] (unknown [198.51.100.7]) by mx\r\n", "[192.0.2.1]" },
		/* Exim: helo= wins over the reverse name after "from" */
		{ "Received: from rdns.example ([203.0.113.5]:54321 helo=claimed.example) by edge\n", "claimed.example" },
		{ "Received: from [203.0.113.77] (helo=friend)\n\tby edge.example with esmtp\n", "friend" },
		/* qmail: "(HELO x)" wins over "unknown" */
		{ "Received: from unknown (HELO mail.example) (203.0.113.50)\n  by mx.example with SMTP\n", "mail.example" },
		/* Exchange, under a trusted internal hop */
		{ "Received: from EXCH01.corp (10.1.1.5) by EXCH02.corp (10.1.1.6)\r\n"
		  "Received: from edge.sender.example (203.0.113.9) by EXCH01.corp (10.1.1.5)\r\n", "edge.sender.example" },
		/* what cannot be a host name is not passed on */
		{ "Received: from bad\"name<x> (host [203.0.113.8]) by mx\n", "" },
		{ "Received: (qmail 1234 invoked from network); 1 Jan 2024\nReceived: from ([203.0.113.6]) by mx\n", "" },
	};
	struct cidr_list l = { 0 };

	cidr_add_all(&l, relays, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		char helo[256] = "unset";

		CHECK_INT(perimeter_find_client(cases[i].headers, strlen(cases[i].headers), &l, &ss, helo,
						sizeof(helo)), 1);
		if (strcmp(helo, cases[i].helo) != 0)
			fprintf(stderr, "  case %zu: got \"%s\"\n", i, helo);
		CHECK_STR(helo, cases[i].helo);
	}
	cidr_list_free(&l);
}

/* A session from a [perimeter] relay as the session makes it: the relay connects. */
static void facts_via_relay(struct fixture *fx, struct policy_facts *f, const char *relay)
{
	facts_init(fx, f, relay);
	f->via_perimeter = true;
}

/* At DATA the session replaced the judged client with the first untrusted hop. */
static void facts_set_hop(struct policy_facts *f, const char *hop)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&f->client;

	memset(&f->client, 0, sizeof(f->client));
	s4->sin_family = AF_INET;
	CHECK(inet_pton(AF_INET, hop, &s4->sin_addr) == 1);
	snprintf(f->client_addr, sizeof(f->client_addr), "%s", hop);
	f->perimeter_hop = true;
}

TEST(policy_perimeter_dnsbl_judges_the_hop_at_data)
{
	static const char *const relays[] = { "127.0.0.1" };
	struct fixture fx;
	struct policy_facts f;
	struct policy_result r;
	struct policy *p;

	dnsbl_setup(&fx);
	cidr_add_all(&fx.cfg->perimeter_relays, relays, 1);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "zen.test", "any", DEFAULT_REPLY, 10);
	add_list(&fx.cfg->dnsbls, &fx.cfg->ndnsbls, "bl.test", "any", DEFAULT_REPLY, 20);
	p = fixture_policy(&fx);

	/* the relay itself is listed on zen.test: not judged at connect, nothing kept for RCPT */
	facts_via_relay(&fx, &f, "127.0.0.1");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	CHECK_STR(f.dnsbl_reply, "");
	f.sender = "someone@example.org";
	f.rcpt = "user@example.net";
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_RCPT, &f).verdict, POLICY_PASS);
	/* every hop trusted: nothing to judge at DATA */
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &f).verdict, POLICY_PASS);
	/* a listed hop: the message is refused at DATA, the relay stays connected */
	facts_set_hop(&f, "192.0.2.10");
	r = run_stage(&fx, p, POLICY_STAGE_DATA, &f);
	CHECK_INT(r.verdict, POLICY_REJECT);
	CHECK_STR(r.reply, "554 5.7.1 Service unavailable; client [192.0.2.10] blocked using bl.test");
	CHECK_STR(r.engine, "dnsbl");
	CHECK(!r.disconnect);
	CHECK_STR(f.dnsbl_reply, "");
	facts_set_hop(&f, "192.0.2.11");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &f).verdict, POLICY_PASS);

	/* a client that is not a relay is judged at connect as before, and not again at DATA */
	facts_init(&fx, &f, "127.0.0.1");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &f).verdict, POLICY_PASS);
	CHECK(strncmp(f.dnsbl_reply, "554 5.7.1 Service unavailable; client [127.0.0.1]", 49) == 0);
	f.rcpt = "user@example.net";
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_RCPT, &f).verdict, POLICY_REJECT);
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &f).verdict, POLICY_PASS);
	policy_unref(p);

	/* tag: the hop's listing adds the list's symbol */
	fx.cfg->dnsbl.action = POLICY_ACTION_TAG;
	fx.cfg->dnsbl.score = 1.5;
	p = fixture_policy(&fx);
	facts_via_relay(&fx, &f, "127.0.0.1");
	facts_set_hop(&f, "192.0.2.10");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &f).verdict, POLICY_PASS);
	CHECK(has_symbol(&fx, "DNSBL_BL_TEST", 1.5));
	policy_unref(p);

	/* without [perimeter] relays there is no DATA instance at all */
	cidr_list_free(&fx.cfg->perimeter_relays);
	memset(&fx.cfg->perimeter_relays, 0, sizeof(fx.cfg->perimeter_relays));
	fx.cfg->dnsbl.action = POLICY_ACTION_REJECT;
	p = fixture_policy(&fx);
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &f).verdict, POLICY_PASS);
	policy_unref(p);
	fixture_teardown(&fx);
}

TEST(policy_perimeter_connlimit_counts_the_hop)
{
	static const char *const relays[] = { "10.0.0.25" };
	struct fixture fx;
	struct policy_facts relay[3], direct;
	struct policy_result r;
	struct policy *p;
	char err[256] = "";

	fixture_setup(&fx, false);
	cidr_add_all(&fx.cfg->perimeter_relays, relays, 1);
	fx.cfg->max_per_ip = 1;
	fx.cfg->conn_rate = 2;
	fx.cfg->conn_window = 10;
	fx.cfg->conn_ban_step = 60;
	fx.cfg->conn_ban_max = 600;
	CHECK_INT(policy_connlimit_use_clock(fx.pt.policy_state, fx.cfg, fixture_clock, &fx.now, err,
					     sizeof(err)), 0);
	p = fixture_policy(&fx);
	/* the relay is neither counted nor limited: three sessions at once, no slot taken */
	for (int i = 0; i < 3; i++) {
		facts_via_relay(&fx, &relay[i], "10.0.0.25");
		CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &relay[i]).verdict, POLICY_PASS);
		CHECK(!relay[i].conn_slot_held);
	}
	/* each message counts as a connection of its hop; a refusal keeps the relay connected */
	facts_set_hop(&relay[0], "192.0.2.9");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &relay[0]).verdict, POLICY_PASS);
	facts_set_hop(&relay[1], "192.0.2.9");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &relay[1]).verdict, POLICY_PASS);
	r = run_stage(&fx, p, POLICY_STAGE_DATA, &relay[0]);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "451 4.7.1 Too many connections from [192.0.2.9], try again in 60 seconds");
	CHECK(!r.disconnect);
	/* the same key as the host's own connections: it is banned there too */
	facts_init(&fx, &direct, "192.0.2.9");
	r = run_stage(&fx, p, POLICY_STAGE_CONNECT, &direct);
	CHECK_INT(r.verdict, POLICY_DEFER);
	CHECK_STR(r.reply, "421 4.7.0 Too many connections from your address, try again in 120 seconds");
	/* another hop has its own count; a message with no untrusted hop is not counted */
	facts_set_hop(&relay[2], "192.0.2.8");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &relay[2]).verdict, POLICY_PASS);
	relay[2].perimeter_hop = false;
	for (int i = 0; i < 3; i++)
		CHECK_INT(run_stage(&fx, p, POLICY_STAGE_DATA, &relay[2]).verdict, POLICY_PASS);

	/* a slot is given back under the connecting address, whoever was judged since */
	fx.now += 1000;
	facts_init(&fx, &direct, "192.0.2.7");
	CHECK_INT(run_stage(&fx, p, POLICY_STAGE_CONNECT, &direct).verdict, POLICY_PASS);
	CHECK(direct.conn_slot_held);
	facts_set_hop(&direct, "198.51.100.1");
	policy_session_end(p, &direct);
	CHECK_INT(ratelimit_conc_count(fx.pt.policy_state->conn_conc, "ip:192.0.2.7"), 0);
	for (int i = 0; i < 3; i++)
		policy_session_end(p, &relay[i]);
	policy_unref(p);
	fixture_teardown(&fx);
}
