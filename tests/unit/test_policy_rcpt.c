/*
 * The RCPT-stage engines through the policy runner: recipient validation
 * by list and by callout against tests/tools/smtp_sink.py (which refuses
 * local parts starting with "reject" with 550 and "tempfail" with 451),
 * the callout cache, the tarpit and the harvest limit, and greylisting
 * with an injected clock.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content/engine.h"
#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "policy/callout.h"
#include "policy/policy.h"
#include "policy/policy_engine.h"
#include "store/greylist_store.h"
#include "testpeer.h"
#include "unit.h"

struct prt {
	struct event_base *base;
	struct config *cfg;
	struct postern pt;
	struct policy *p;
	struct engine_results symbols;
	struct policy_facts f;
	pid_t sink;
	time_t now;
	int calls;
	struct policy_result res;
};

static time_t prt_clock(void *arg)
{
	return *(time_t *)arg;
}

/* tests/tools/smtp_sink.py on a free port; returns the port. */
static unsigned prt_sink(struct prt *t)
{
	char tool[PATH_MAX], port_s[16], dir[PATH_MAX];
	unsigned port = testpeer_free_port();
	char *argv[] = { "/usr/bin/python3", tool, "--port", port_s, "--dir", dir, NULL };

	CHECK(testpeer_tool("smtp_sink.py", tool, sizeof(tool)));
	snprintf(port_s, sizeof(port_s), "%u", port);
	snprintf(dir, sizeof(dir), "%s/sink", unit_tmpdir());
	mkdir(dir, 0700);
	t->sink = testpeer_start(argv, "ready", 0);
	CHECK(t->sink > 0);
	return port;
}

/*
 * A gateway with this config text ("%d" becomes the data directory), a
 * resolver (only IP literals are looked up here) and the policy built
 * from it; the clock is injected into the callout cache and the greylist.
 */
static void prt_setup(struct prt *t, const char *conf_fmt)
{
	char text[4096], err[512] = "";
	struct config_error cerr;

	memset(t, 0, sizeof(*t));
	t->now = 1700000000;
	snprintf(text, sizeof(text), conf_fmt, unit_tmpdir());
	t->cfg = config_parse("test.conf", text, strlen(text), &cerr);
	if (t->cfg == NULL) {
		config_error_format(&cerr, err, sizeof(err));
		unit_fail(__FILE__, __LINE__, "config: %s", err);
		return;
	}
	t->base = event_base_new();
	t->pt.base = t->base;
	t->pt.cfg = t->cfg;
	t->pt.dns = dns_resolver_new(t->base, "127.0.0.1:9", 500, 1, err, sizeof(err));
	CHECK(t->pt.dns != NULL);
	t->pt.policy_state = policy_state_new(&t->pt);
	t->pt.policy_state->callouts = callout_cache_new(100, prt_clock, &t->now);
	if (t->cfg->greylist.enabled) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/greylist.db", unit_tmpdir());
		t->pt.policy_state->greylist = greylist_open(path, err, sizeof(err));
		CHECK(t->pt.policy_state->greylist != NULL);
		greylist_set_clock(t->pt.policy_state->greylist, prt_clock, &t->now);
	}
	t->p = policy_new(&t->pt, t->cfg, err, sizeof(err));
	if (t->p == NULL)
		unit_fail(__FILE__, __LINE__, "policy: %s", err);
	t->f.direction = POLICY_DIR_INBOUND;
	t->f.symbols = &t->symbols;
	t->f.sender = "someone@origin.test";
	t->f.helo = "mail.origin.test";
}

static void prt_client(struct prt *t, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&t->f.client;

	memset(&t->f.client, 0, sizeof(t->f.client));
	sin->sin_family = AF_INET;
	CHECK(inet_pton(AF_INET, ip, &sin->sin_addr) == 1);
	t->f.client_len = sizeof(*sin);
	snprintf(t->f.client_addr, sizeof(t->f.client_addr), "%s", ip);
}

static void prt_teardown(struct prt *t)
{
	policy_unref(t->p);
	policy_state_free(t->pt.policy_state);
	dns_resolver_free(t->pt.dns);
	if (t->base != NULL)
		event_base_free(t->base);
	if (t->sink > 0)
		testpeer_stop(t->sink);
	config_unref(t->cfg);
	engine_results_free(&t->symbols);
}

static void prt_done(void *arg, const struct policy_result *res)
{
	struct prt *t = arg;

	t->calls++;
	t->res = *res;
}

/* The RCPT stage for rcpt; *async says whether it had to wait. */
static const struct policy_result *prt_rcpt(struct prt *t, const char *rcpt, bool *async)
{
	struct policy_run *run = NULL;
	struct timeval tv = { 20, 0 };
	int calls = t->calls;

	t->f.rcpt = rcpt;
	memset(&t->res, 0, sizeof(t->res));
	if (policy_run(t->p, POLICY_STAGE_RCPT, &t->f, &t->res, prt_done, t, &run) == 0) {
		CHECK_INT(t->calls, calls);
		if (async)
			*async = false;
		return &t->res;
	}
	if (async)
		*async = true;
	event_base_loopexit(t->base, &tv);
	while (t->calls == calls && event_base_loop(t->base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(t->base))
		;
	CHECK_INT(t->calls, calls + 1);
	return &t->res;
}

static const char list_conf[] =
	"[server]\nhostname = gw.test\ndata_dir = %s\n"
	"[local]\ndomains = local.test\nmaildir = /tmp/mail/%%d/%%u\n"
	"[domain \"example.test\"]\nhosts = 127.0.0.1:2525\n"
	"[domain \"wild.test\"]\nhosts = 127.0.0.1:2525\n"
	"[recipients]\nvalidation = list\nlist = alice@example.test, @wild.test\n"
	"tarpit_after = 0\nmax_unknown = 0\n";

TEST(rcpt_list_validation)
{
	struct prt t;
	const struct policy_result *r;

	prt_setup(&t, list_conf);
	prt_client(&t, "192.0.2.1");
	CHECK_INT(prt_rcpt(&t, "alice@example.test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(prt_rcpt(&t, "alice@EXAMPLE.Test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(prt_rcpt(&t, "anyone@wild.test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(t.f.rcpts_unknown, 0);
	r = prt_rcpt(&t, "bob@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_REJECT);
	CHECK_STR(r->reply, "550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown");
	CHECK_STR(r->engine, "recipients");
	CHECK(!r->disconnect);
	CHECK_INT(t.f.rcpts_unknown, 1);
	/* the local part is exact */
	CHECK_INT(prt_rcpt(&t, "Alice@example.test", NULL)->verdict, POLICY_REJECT);
	/* local users are the session's business; unprotected domains are not ours */
	CHECK_INT(prt_rcpt(&t, "nobody@local.test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(prt_rcpt(&t, "nobody@elsewhere.test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(t.f.rcpts_unknown, 2);
	prt_teardown(&t);
}

TEST(rcpt_list_defer_action)
{
	struct prt t;
	const struct policy_result *r;

	prt_setup(&t, "[server]\nhostname = gw.test\ndata_dir = %s\n"
		      "[domain \"example.test\"]\nhosts = 127.0.0.1:2525\n"
		      "[recipients]\nvalidation = list\nlist = alice@example.test\naction = defer\n");
	prt_client(&t, "192.0.2.1");
	r = prt_rcpt(&t, "bob@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_DEFER);
	CHECK_STR(r->reply, "450 4.1.1 <bob@example.test>: Recipient address rejected: User unknown");
	prt_teardown(&t);
}

/* The tarpit grows with every unknown recipient past tarpit_after; max_unknown ends the session. */
TEST(rcpt_tarpit_and_harvest)
{
	struct prt t;
	const struct policy_result *r;

	prt_setup(&t, "[server]\nhostname = gw.test\ndata_dir = %s\n"
		      "[domain \"example.test\"]\nhosts = 127.0.0.1:2525\n"
		      "[recipients]\nvalidation = list\nlist = alice@example.test\n"
		      "tarpit_after = 2\ntarpit_delay = 150ms\nmax_unknown = 6\n");
	prt_client(&t, "192.0.2.1");
	CHECK_INT(prt_rcpt(&t, "u1@example.test", NULL)->delay_ms, 0);
	CHECK_INT(prt_rcpt(&t, "u2@example.test", NULL)->delay_ms, 0);
	CHECK_INT(prt_rcpt(&t, "u3@example.test", NULL)->delay_ms, 150);
	/* a known recipient waits as long: the delay belongs to the session */
	r = prt_rcpt(&t, "alice@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_PASS);
	CHECK_INT(r->delay_ms, 150);
	CHECK_INT(prt_rcpt(&t, "u4@example.test", NULL)->delay_ms, 300);
	r = prt_rcpt(&t, "u5@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_REJECT);
	CHECK_INT(r->delay_ms, 450);
	CHECK(!r->disconnect);
	r = prt_rcpt(&t, "u6@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_DEFER);
	CHECK_STR(r->reply, "421 4.7.0 Too many unknown recipients");
	CHECK(r->disconnect);
	CHECK_INT(t.f.rcpts_unknown, 6);
	/* should the session go on, every RCPT gets the same */
	r = prt_rcpt(&t, "alice@example.test", NULL);
	CHECK(r->disconnect);
	CHECK_STR(r->reply, "421 4.7.0 Too many unknown recipients");
	prt_teardown(&t);
}

static void prt_callout_setup(struct prt *t, const char *hosts)
{
	char conf[2048];

	snprintf(conf, sizeof(conf),
		 "[server]\nhostname = gw.test\ndata_dir = %%s\n"
		 "[domain \"example.test\"]\nhosts = %s\n"
		 "[recipients]\nvalidation = callout\ncallout_cache = 1h\ncallout_negative = 10m\n"
		 "tarpit_after = 0\nmax_unknown = 0\n", hosts);
	prt_setup(t, conf);
	prt_client(t, "192.0.2.1");
}

TEST(rcpt_callout_and_cache)
{
	struct prt t;
	const struct policy_result *r;
	char hosts[64];
	unsigned port;
	pid_t sink;
	bool async;

	memset(&t, 0, sizeof(t));
	port = prt_sink(&t);
	sink = t.sink;
	snprintf(hosts, sizeof(hosts), "127.0.0.1:%u", port);
	prt_callout_setup(&t, hosts);
	t.sink = sink;

	r = prt_rcpt(&t, "alice@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_PASS);
	r = prt_rcpt(&t, "reject-me@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_REJECT);
	CHECK_STR(r->reply, "550 5.1.1 <reject-me@example.test>: Recipient address rejected: User unknown");
	CHECK_INT(t.f.rcpts_unknown, 1);
	r = prt_rcpt(&t, "tempfail1@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_PASS);
	CHECK_INT(callout_cache_count(t.pt.policy_state->callouts), 2);

	/* the backend goes away: what is cached is still known, without waiting */
	testpeer_stop(t.sink);
	t.sink = 0;
	r = prt_rcpt(&t, "alice@example.test", &async);
	CHECK(!async);
	CHECK_INT(r->verdict, POLICY_PASS);
	r = prt_rcpt(&t, "reject-me@EXAMPLE.test", &async);
	CHECK(!async);
	CHECK_INT(r->verdict, POLICY_REJECT);
	CHECK_INT(t.f.rcpts_unknown, 2);
	/* a temporary failure was not cached; now the backend is down: accept */
	r = prt_rcpt(&t, "tempfail1@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_PASS);

	/* the negative answer expires first, then the positive one */
	t.now += 601;
	r = prt_rcpt(&t, "reject-me@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_PASS);
	r = prt_rcpt(&t, "alice@example.test", &async);
	CHECK(!async);
	t.now += 3000;
	r = prt_rcpt(&t, "alice@example.test", &async);
	CHECK(async);
	CHECK_INT(r->verdict, POLICY_PASS);
	CHECK_INT(callout_cache_count(t.pt.policy_state->callouts), 0);
	prt_teardown(&t);
}

/* The first host that answers decides; unreachable ones are skipped. */
TEST(rcpt_callout_first_reachable_host)
{
	struct prt t;
	char hosts[128];
	unsigned port;
	pid_t sink;

	memset(&t, 0, sizeof(t));
	port = prt_sink(&t);
	sink = t.sink;
	snprintf(hosts, sizeof(hosts), "127.0.0.1:%u, 127.0.0.1:%u", testpeer_free_port(), port);
	prt_callout_setup(&t, hosts);
	t.sink = sink;
	CHECK_INT(prt_rcpt(&t, "reject2@example.test", NULL)->verdict, POLICY_REJECT);
	CHECK_INT(prt_rcpt(&t, "bob@example.test", NULL)->verdict, POLICY_PASS);
	CHECK_INT(callout_cache_count(t.pt.policy_state->callouts), 2);
	prt_teardown(&t);
}

TEST(rcpt_callout_backend_down_accepts)
{
	struct prt t;
	char hosts[64];
	bool async;

	snprintf(hosts, sizeof(hosts), "127.0.0.1:%u", testpeer_free_port());
	prt_callout_setup(&t, hosts);
	CHECK_INT(prt_rcpt(&t, "reject3@example.test", &async)->verdict, POLICY_PASS);
	CHECK(async);
	CHECK_INT(t.f.rcpts_unknown, 0);
	CHECK_INT(callout_cache_count(t.pt.policy_state->callouts), 0);
	prt_teardown(&t);
}

/* A session that ends while the probe runs: nothing is called afterwards. */
TEST(rcpt_callout_cancel)
{
	struct prt t;
	struct policy_run *run = NULL;
	struct policy_result res;
	char hosts[64];
	unsigned port;
	pid_t sink;
	struct timeval tv = { 0, 300000 };

	memset(&t, 0, sizeof(t));
	port = prt_sink(&t);
	sink = t.sink;
	snprintf(hosts, sizeof(hosts), "127.0.0.1:%u", port);
	prt_callout_setup(&t, hosts);
	t.sink = sink;
	t.f.rcpt = "alice@example.test";
	CHECK_INT(policy_run(t.p, POLICY_STAGE_RCPT, &t.f, &res, prt_done, &t, &run), 1);
	event_base_loop(t.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	policy_run_cancel(run);
	event_base_loopexit(t.base, &tv);
	event_base_dispatch(t.base);
	CHECK_INT(t.calls, 0);
	prt_teardown(&t);
}

static const char greylist_conf[] =
	"[server]\nhostname = gw.test\ndata_dir = %s\n"
	"[greylist]\nenabled = yes\ndelay = 5m\nwindow = 4h\nwhitelist_ttl = 36d\n";

TEST(greylist_triple_lifecycle)
{
	struct prt t;
	const struct policy_result *r;
	time_t first;

	prt_setup(&t, greylist_conf);
	prt_client(&t, "192.0.2.10");
	first = t.now;
	r = prt_rcpt(&t, "rcpt@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_DEFER);
	CHECK_STR(r->reply, "451 4.7.1 Greylisted, please try again later");
	CHECK_STR(r->engine, "greylist");
	/* too early */
	t.now = first + 60;
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	CHECK(!greylist_network_whitelisted(t.pt.policy_state->greylist, "192.0.2.0/24"));
	/* after the delay: passes, the network is whitelisted */
	t.now = first + 301;
	CHECK_INT(prt_rcpt(&t, "RCPT@example.test", NULL)->verdict, POLICY_PASS);
	CHECK(greylist_network_whitelisted(t.pt.policy_state->greylist, "192.0.2.0/24"));
	/* the same /24, another sender: whitelisted */
	prt_client(&t, "192.0.2.77");
	t.f.sender = "other@origin.test";
	CHECK_INT(prt_rcpt(&t, "rcpt2@example.test", NULL)->verdict, POLICY_PASS);
	/* another network is greylisted */
	prt_client(&t, "198.51.100.1");
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	/* the null sender from a whitelisted network passes too */
	prt_client(&t, "192.0.2.10");
	t.f.sender = "";
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_PASS);
	/* allow-listed sessions are never greylisted */
	prt_client(&t, "203.0.113.1");
	t.f.allowlisted = true;
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_PASS);
	t.f.allowlisted = false;

	/* everything expires: the whitelist after 36 days, the passed triple too */
	t.now = first + 37 * 86400;
	CHECK(!greylist_network_whitelisted(t.pt.policy_state->greylist, "192.0.2.0/24"));
	CHECK(greylist_expire(t.pt.policy_state->greylist) > 0);
	prt_client(&t, "192.0.2.10");
	t.f.sender = "someone@origin.test";
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	prt_teardown(&t);
}

TEST(greylist_missed_window_starts_over)
{
	struct prt t;

	prt_setup(&t, greylist_conf);
	prt_client(&t, "192.0.2.10");
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	t.now += 4 * 3600 + 1;
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	t.now += 301;
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_PASS);
	prt_teardown(&t);
}

/* A whitelisted network that starts too many new conversations within an hour is greylisted again. */
TEST(greylist_abnormal_rate)
{
	struct greylist_params p = { .delay = 300, .window = 4 * 3600, .whitelist_ttl = 36 * 86400 };
	char path[PATH_MAX], err[256], rcpt[64];
	time_t now = 1700000000 / 3600 * 3600;
	struct greylist *g;

	snprintf(path, sizeof(path), "%s/greylist.db", unit_tmpdir());
	g = greylist_open(path, err, sizeof(err));
	CHECK(g != NULL);
	greylist_set_clock(g, prt_clock, &now);
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "r@y.test"), GREYLIST_NEW);
	now += 400;
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "r@y.test"), GREYLIST_RETRIED);
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "r@y.test"), GREYLIST_KNOWN);
	/* one new triple already counted this hour */
	for (int i = 2; i <= GREYLIST_NEW_TRIPLES_PER_HOUR; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%d@y.test", i);
		CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", rcpt), GREYLIST_WHITELISTED);
	}
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "one-too-many@y.test"), GREYLIST_NEW);
	/* known triples still pass */
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "r2@y.test"), GREYLIST_KNOWN);
	/* the next hour the whitelist counts again */
	now += 3600;
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "fresh@y.test"), GREYLIST_WHITELISTED);
	greylist_unref(g);

	/* the state is on disk */
	g = greylist_open(path, err, sizeof(err));
	CHECK(g != NULL);
	greylist_set_clock(g, prt_clock, &now);
	CHECK_INT(greylist_check(g, &p, "192.0.2.0/24", "a@x.test", "fresh@y.test"), GREYLIST_KNOWN);
	greylist_unref(g);
}

TEST(greylist_networks)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	char out[64];

	inet_pton(AF_INET, "192.0.2.200", &sin.sin_addr);
	CHECK_INT(greylist_network((struct sockaddr *)&sin, 24, 64, out, sizeof(out)), 0);
	CHECK_STR(out, "192.0.2.0/24");
	CHECK_INT(greylist_network((struct sockaddr *)&sin, 28, 64, out, sizeof(out)), 0);
	CHECK_STR(out, "192.0.2.192/28");
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &sin6.sin6_addr);
	CHECK_INT(greylist_network((struct sockaddr *)&sin6, 24, 64, out, sizeof(out)), 0);
	CHECK_STR(out, "2001:db8:1:2::/64");
	CHECK_INT(greylist_network((struct sockaddr *)&sin6, 24, 52, out, sizeof(out)), 0);
	CHECK_STR(out, "2001:db8:1::/52");
	inet_pton(AF_INET6, "::ffff:198.51.100.9", &sin6.sin6_addr);
	CHECK_INT(greylist_network((struct sockaddr *)&sin6, 24, 64, out, sizeof(out)), 0);
	CHECK_STR(out, "198.51.100.0/24");
}

/* A reload keeps the open database; a new data_dir moves it. */
TEST(greylist_store_survives_reload)
{
	struct prt t;
	struct greylist *g;
	struct policy *p2;
	char err[256];

	prt_setup(&t, greylist_conf);
	g = t.pt.policy_state->greylist;
	p2 = policy_new(&t.pt, t.cfg, err, sizeof(err));
	CHECK(p2 != NULL);
	CHECK(t.pt.policy_state->greylist == g);
	policy_unref(p2);
	prt_client(&t, "192.0.2.10");
	CHECK_INT(prt_rcpt(&t, "rcpt@example.test", NULL)->verdict, POLICY_DEFER);
	prt_teardown(&t);
}

static void prt_callout_answer(void *arg, enum callout_answer answer, const char *detail)
{
	struct prt *t = arg;

	t->calls++;
	t->res.verdict = answer == CALLOUT_VALID ? POLICY_PASS : answer == CALLOUT_UNKNOWN ? POLICY_REJECT
											   : POLICY_DEFER;
	snprintf(t->res.reply, sizeof(t->res.reply), "%s", detail);
}

/* A host that accepts connections but never greets is skipped after the connect timeout. */
TEST(callout_skips_silent_host)
{
	struct prt t;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct hostport hosts[2];
	struct callout_params p = {
		.helo = "gw.test", .hosts = hosts, .nhosts = 2, .connect_timeout_ms = 300,
		.deadline_ms = 10000,
	};
	socklen_t len = sizeof(sin);
	struct timeval tv = { 15, 0 };
	char err[256];
	int silent;

	memset(&t, 0, sizeof(t));
	t.base = event_base_new();
	t.pt.dns = dns_resolver_new(t.base, "127.0.0.1:9", 500, 1, err, sizeof(err));
	CHECK(t.pt.dns != NULL);
	silent = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(silent, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(listen(silent, 8) == 0);
	CHECK(getsockname(silent, (struct sockaddr *)&sin, &len) == 0);
	hosts[0].host = "127.0.0.1";
	hosts[0].port = ntohs(sin.sin_port);
	hosts[1].host = "127.0.0.1";
	hosts[1].port = (uint16_t)prt_sink(&t);

	CHECK(callout_start(t.base, t.pt.dns, &p, "reject-x@example.test", prt_callout_answer, &t) != NULL);
	CHECK_INT(t.calls, 0);
	event_base_loopexit(t.base, &tv);
	while (t.calls == 0 && event_base_loop(t.base, EVLOOP_ONCE) == 0 && !event_base_got_exit(t.base))
		;
	CHECK_INT(t.calls, 1);
	CHECK_INT(t.res.verdict, POLICY_REJECT);
	CHECK(strstr(t.res.reply, "550 5.1.1") != NULL);
	close(silent);
	dns_resolver_free(t.pt.dns);
	event_base_free(t.base);
	testpeer_stop(t.sink);
}

/* With action tag an unknown recipient passes with a symbol for the content stage. */
TEST(rcpt_unknown_tagged)
{
	struct prt t;
	const struct policy_result *r;

	prt_setup(&t, "[server]\nhostname = gw.test\ndata_dir = %s\n"
		      "[domain \"example.test\"]\nhosts = 127.0.0.1:2525\n"
		      "[recipients]\nvalidation = list\nlist = alice@example.test\naction = tag\nscore = 2.5\n");
	prt_client(&t, "192.0.2.1");
	r = prt_rcpt(&t, "bob@example.test", NULL);
	CHECK_INT(r->verdict, POLICY_PASS);
	CHECK_INT(t.f.rcpts_unknown, 1);
	CHECK_INT(t.symbols.count, 1);
	CHECK_STR(t.symbols.items[0].symbol, "RCPT_UNKNOWN");
	CHECK(t.symbols.items[0].score == 2.5);
	prt_teardown(&t);
}
