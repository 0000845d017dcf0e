/*
 * DNSBL/RHSBL checks against a real DNS server (tests/tools/dnsd.py on a
 * free port), with an injected clock for the cache.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/time.h>

#include "dns/dns.h"
#include "policy/dnsbl.h"
#include "testpeer.h"
#include "unit.h"

#define V6_PREFIX "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"

static const char dnsbl_zone[] =
	"# 192.0.2.10: listed everywhere, two codes on multi.test\n"
	"10.2.0.192.bl.test A 127.0.0.2 ttl=120\n"
	"10.2.0.192.bl.test TXT \"Listed: see https://bl.test/q/192.0.2.10\"\n"
	"10.2.0.192.multi.test A 127.0.0.4\n"
	"10.2.0.192.multi.test A 127.0.0.10\n"
	"10.2.0.192.other.test A 127.0.0.3\n"
	"10.2.0.192.slow.test TIMEOUT\n"
	"10.2.0.192.broken.test SERVFAIL\n"
	"10.2.0.192.refusing.test A 127.255.255.254\n"
	"10.2.0.192.hijacked.test A 203.0.113.5\n"
	"10.2.0.192.nasty.test A 127.0.0.2\n"
	"10.2.0.192.nasty.test TXT \"bad\tword \xc3\xa9\"\n"
	V6_PREFIX ".bl.test A 127.0.0.2\n"
	"spammer.example.dbl.test A 127.0.1.2\n";

struct dnsbl_fixture {
	struct event_base *base;
	struct dns_resolver *r;
	struct dnsbl *d;
	pid_t dnsd;
	time_t now;
	int calls;
	size_t n;
	struct dnsbl_result res[8];
	int hit;                  /* index of the hit, -1 for none */
	char names[8][32];        /* results[i].list->name: the list dies with the check */
};

static time_t fixture_clock(void *arg)
{
	return *(time_t *)arg;
}

static void dnsbl_fixture_setup(struct dnsbl_fixture *f, unsigned deadline_ms)
{
	char servers[64], err[256] = "";
	unsigned port = 0;
	struct dnsbl_options o = {
		.deadline_ms = deadline_ms, .cache_max = 100, .neg_ttl = 60, .max_ttl = 3600,
		.clock = fixture_clock,
	};

	memset(f, 0, sizeof(*f));
	f->now = 10000;
	o.clock_arg = &f->now;
	f->dnsd = testpeer_dnsd(dnsbl_zone, &port);
	CHECK(f->dnsd > 0);
	f->base = event_base_new();
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
	f->r = dns_resolver_new(f->base, servers, 1000, 2, err, sizeof(err));
	CHECK(f->r != NULL);
	if (f->r != NULL)          /* the resolver caches answers too: same clock */
		dns_resolver_set_clock(f->r, fixture_clock, &f->now);
	f->d = dnsbl_new(f->base, f->r, &o);
}

static void dnsbl_fixture_teardown(struct dnsbl_fixture *f)
{
	dnsbl_free(f->d);
	dns_resolver_free(f->r);
	event_base_free(f->base);
	if (f->dnsd > 0)
		testpeer_stop(f->dnsd);
}

static void dnsbl_run(struct dnsbl_fixture *f, int calls, int seconds)
{
	struct timeval tv = { seconds, 0 };

	event_base_loopexit(f->base, &tv);
	while (f->calls < calls && event_base_loop(f->base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(f->base))
		;
}

static void on_result(void *arg, const struct dnsbl_result *results, size_t n,
		      const struct dnsbl_result *hit)
{
	struct dnsbl_fixture *f = arg;

	f->calls++;
	f->n = n;
	for (size_t i = 0; i < n && i < 8; i++) {
		f->res[i] = results[i];
		f->res[i].list = NULL;
		snprintf(f->names[i], sizeof(f->names[i]), "%s", results[i].list->name);
	}
	f->hit = hit != NULL ? (int)(hit - results) : -1;
}

static struct sockaddr_storage ip_of(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		ss.ss_family = AF_INET6;
		CHECK(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1);
	} else {
		ss.ss_family = AF_INET;
		CHECK(inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1);
	}
	return ss;
}

static void check_ip(struct dnsbl_fixture *f, const struct dnsbl_list *lists, size_t n,
		     const char *ip)
{
	struct sockaddr_storage ss = ip_of(ip);
	int calls = f->calls;

	CHECK(dnsbl_check_ip(f->d, lists, n, (struct sockaddr *)&ss, on_result, f) != NULL);
	CHECK_INT(f->calls, calls);            /* never inside the call */
	dnsbl_run(f, calls + 1, 10);
	CHECK_INT(f->calls, calls + 1);
}

TEST(dnsbl_listed_and_not_listed)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "bl.test", .name = "example-bl" },
	};

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 1, "192.0.2.10");
	CHECK_INT(f.n, 1);
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_INT(f.res[0].ncodes, 1);
	CHECK_INT(f.res[0].codes[0], 0x7f000002);
	CHECK_STR(f.names[0], "example-bl");
	CHECK_STR(f.res[0].reason, "");        /* not asked for */
	CHECK(!f.res[0].from_cache);
	CHECK_INT(f.hit, 0);

	check_ip(&f, lists, 1, "192.0.2.99");
	CHECK_INT(f.res[0].status, DNSBL_NOT_LISTED);
	CHECK_INT(f.res[0].ncodes, 0);
	CHECK_INT(f.hit, -1);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_mask_and_codes)
{
	struct dnsbl_fixture f;
	uint32_t want10[] = { 0x7f00000a }, want3[] = { 0x7f000003, 0x7f000005 };
	struct dnsbl_list lists[] = {
		{ .zone = "multi.test", .match = DNSBL_MATCH_MASK, .mask = 0x4 },
		{ .zone = "multi.test", .match = DNSBL_MATCH_MASK, .mask = 0x1 },
		{ .zone = "multi.test", .match = DNSBL_MATCH_CODES, .codes = want10, .ncodes = 1 },
		{ .zone = "multi.test", .match = DNSBL_MATCH_CODES, .codes = want3, .ncodes = 2 },
	};

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 4, "192.0.2.10");
	CHECK_INT(f.n, 4);
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_INT(f.res[1].status, DNSBL_NOT_LISTED);   /* 4 and 10 have no bit 0 */
	CHECK_INT(f.res[1].ncodes, 2);                  /* but the codes are reported */
	CHECK_INT(f.res[2].status, DNSBL_LISTED);
	CHECK_INT(f.res[3].status, DNSBL_NOT_LISTED);
	CHECK_INT(f.hit, 0);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_ipv6_nibbles_and_mapped_ipv4)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = { { .zone = "bl.test" } };
	struct sockaddr_storage ss = ip_of("2001:db8::1");
	char prefix[80];

	CHECK_INT(dnsbl_ip_prefix((struct sockaddr *)&ss, prefix, sizeof(prefix)), 0);
	CHECK_STR(prefix, V6_PREFIX);
	ss = ip_of("::ffff:192.0.2.10");
	CHECK_INT(dnsbl_ip_prefix((struct sockaddr *)&ss, prefix, sizeof(prefix)), 0);
	CHECK_STR(prefix, "10.2.0.192");

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 1, "2001:db8::1");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	check_ip(&f, lists, 1, "2001:db8::2");
	CHECK_INT(f.res[0].status, DNSBL_NOT_LISTED);
	check_ip(&f, lists, 1, "::ffff:192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_timeout_is_bounded_and_not_listed)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "slow.test" },
		{ .zone = "bl.test" },
		{ .zone = "broken.test" },
	};
	struct timeval t0, t1;
	long ms;

	dnsbl_fixture_setup(&f, 400);          /* the resolver alone would wait 3 s */
	gettimeofday(&t0, NULL);
	check_ip(&f, lists, 3, "192.0.2.10");
	gettimeofday(&t1, NULL);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
	CHECK(ms >= 350);
	CHECK(ms < 1500);
	CHECK_INT(f.res[0].status, DNSBL_ERROR);
	CHECK(f.res[0].error != NULL);
	CHECK_INT(f.res[1].status, DNSBL_LISTED);
	CHECK_INT(f.res[2].status, DNSBL_ERROR);
	CHECK_INT(f.hit, 1);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_refusal_and_foreign_answers_are_not_listings)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "refusing.test" },
		{ .zone = "hijacked.test" },
	};

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 2, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_ERROR);
	CHECK(strstr(f.res[0].error, "refused") != NULL);
	CHECK_INT(f.res[1].status, DNSBL_NOT_LISTED);
	CHECK_INT(f.res[1].ncodes, 0);
	CHECK_INT(f.hit, -1);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_priority_picks_the_hit)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "bl.test", .priority = 20 },
		{ .zone = "other.test", .priority = 10 },
		{ .zone = "multi.test", .priority = 10 },
	};

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 3, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_INT(f.res[1].status, DNSBL_LISTED);
	CHECK_INT(f.res[2].status, DNSBL_LISTED);
	CHECK_STR(f.names[2], "multi.test");      /* a list without a name goes by its zone */
	CHECK_INT(f.hit, 1);                    /* smallest priority, earlier on a tie */
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_txt_reason_is_fetched_and_cleaned)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "bl.test", .want_txt = true },
		{ .zone = "nasty.test", .want_txt = true },
		{ .zone = "other.test", .want_txt = true },   /* listed, no TXT */
	};

	dnsbl_fixture_setup(&f, 3000);
	check_ip(&f, lists, 3, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_STR(f.res[0].reason, "Listed: see https://bl.test/q/192.0.2.10");
	CHECK_STR(f.res[1].reason, "bad?word ??");
	CHECK_INT(f.res[2].status, DNSBL_LISTED);
	CHECK_STR(f.res[2].reason, "");

	/* the reason is cached with the listing */
	testpeer_stop(f.dnsd);
	f.dnsd = -1;
	check_ip(&f, lists, 1, "192.0.2.10");
	CHECK(f.res[0].from_cache);
	CHECK_STR(f.res[0].reason, "Listed: see https://bl.test/q/192.0.2.10");
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_cache_answers_without_dns_until_ttl)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = {
		{ .zone = "bl.test" },
		{ .zone = "other.test", .match = DNSBL_MATCH_CODES },   /* no codes: never listed */
	};

	dnsbl_fixture_setup(&f, 1000);
	check_ip(&f, lists, 2, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_INT(f.res[1].status, DNSBL_NOT_LISTED);
	check_ip(&f, lists, 1, "192.0.2.99");
	CHECK_INT(f.res[0].status, DNSBL_NOT_LISTED);

	testpeer_stop(f.dnsd);
	f.dnsd = -1;
	f.now += 59;
	check_ip(&f, lists, 2, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK(f.res[0].from_cache);
	CHECK_INT(f.res[0].codes[0], 0x7f000002);
	CHECK(f.res[1].from_cache);
	check_ip(&f, lists, 1, "192.0.2.99");  /* NXDOMAIN, cached for neg_ttl */
	CHECK_INT(f.res[0].status, DNSBL_NOT_LISTED);
	CHECK(f.res[0].from_cache);

	f.now += 1;                             /* neg_ttl (60 s) is over */
	check_ip(&f, lists, 1, "192.0.2.99");
	CHECK_INT(f.res[0].status, DNSBL_ERROR);
	f.now += 60;                            /* the listing's TTL (120 s) too */
	check_ip(&f, lists, 1, "192.0.2.10");
	CHECK_INT(f.res[0].status, DNSBL_ERROR);
	CHECK(!f.res[0].from_cache);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_rhsbl_domain)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = { { .zone = "dbl.test" } };
	char long_label[80];
	int calls;

	dnsbl_fixture_setup(&f, 3000);
	calls = f.calls;
	CHECK(dnsbl_check_domain(f.d, lists, 1, "Spammer.Example.", on_result, &f) != NULL);
	dnsbl_run(&f, calls + 1, 10);
	CHECK_INT(f.res[0].status, DNSBL_LISTED);
	CHECK_INT(f.res[0].codes[0], 0x7f000102);

	CHECK(dnsbl_check_domain(f.d, lists, 1, "ham.example", on_result, &f) != NULL);
	dnsbl_run(&f, calls + 2, 10);
	CHECK_INT(f.res[0].status, DNSBL_NOT_LISTED);

	memset(long_label, 'a', sizeof(long_label) - 1);
	long_label[sizeof(long_label) - 1] = '\0';
	CHECK(dnsbl_check_domain(f.d, lists, 1, "[192.0.2.1]", on_result, &f) == NULL);
	CHECK(dnsbl_check_domain(f.d, lists, 1, "a..example", on_result, &f) == NULL);
	CHECK(dnsbl_check_domain(f.d, lists, 1, "", on_result, &f) == NULL);
	CHECK(dnsbl_check_domain(f.d, lists, 1, long_label, on_result, &f) == NULL);
	CHECK(dnsbl_check_domain(f.d, lists, 0, "ham.example", on_result, &f) == NULL);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_cancel_never_calls_back)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = { { .zone = "slow.test" }, { .zone = "bl.test" } };
	struct sockaddr_storage ss = ip_of("192.0.2.10");
	struct dnsbl_check *c;

	dnsbl_fixture_setup(&f, 300);
	c = dnsbl_check_ip(f.d, lists, 2, (struct sockaddr *)&ss, on_result, &f);
	CHECK(c != NULL);
	dnsbl_cancel(c);
	dnsbl_run(&f, 1, 1);
	CHECK_INT(f.calls, 0);

	/* a check answered from the cache alone can be cancelled too */
	check_ip(&f, lists + 1, 1, "192.0.2.10");
	c = dnsbl_check_ip(f.d, lists + 1, 1, (struct sockaddr *)&ss, on_result, &f);
	dnsbl_cancel(c);
	dnsbl_run(&f, 2, 1);
	CHECK_INT(f.calls, 1);

	/* and freeing drops what is in flight */
	dnsbl_check_ip(f.d, lists, 2, (struct sockaddr *)&ss, on_result, &f);
	dnsbl_free(f.d);
	f.d = NULL;
	dnsbl_run(&f, 2, 1);
	CHECK_INT(f.calls, 1);
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_unsupported_input)
{
	struct dnsbl_fixture f;
	struct dnsbl_list lists[] = { { .zone = "bl.test" } };
	struct sockaddr_storage ss;
	char zone[300];

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	dnsbl_fixture_setup(&f, 3000);
	CHECK(dnsbl_check_ip(f.d, lists, 1, (struct sockaddr *)&ss, on_result, &f) == NULL);
	ss = ip_of("192.0.2.10");
	CHECK(dnsbl_check_ip(f.d, lists, 0, (struct sockaddr *)&ss, on_result, &f) == NULL);

	/* a zone making the name too long fails that list only */
	memset(zone, 'z', sizeof(zone) - 1);
	zone[sizeof(zone) - 1] = '\0';
	{
		struct dnsbl_list two[] = { { .zone = zone }, { .zone = "bl.test" } };

		check_ip(&f, two, 2, "192.0.2.10");
		CHECK_INT(f.res[0].status, DNSBL_ERROR);
		CHECK_INT(f.res[1].status, DNSBL_LISTED);
	}
	dnsbl_fixture_teardown(&f);
}

TEST(dnsbl_format_reply_expands_and_refuses)
{
	char out[128];

	CHECK_INT(dnsbl_format_reply("%0 is listed on %1 (%2), 100%% sure", "192.0.2.10",
				     "spamhaus", "zen.spamhaus.org", out, sizeof(out)), 0);
	CHECK_STR(out, "192.0.2.10 is listed on spamhaus (zen.spamhaus.org), 100% sure");
	CHECK_INT(dnsbl_format_reply("see https://x/%0", "2001:db8::1", "r", "z", out,
				     sizeof(out)), 0);
	CHECK_STR(out, "see https://x/2001:db8::1");
	CHECK_INT(dnsbl_format_reply("bad %3", "ip", "r", "z", out, sizeof(out)), -1);
	CHECK_STR(out, "");
	CHECK_INT(dnsbl_format_reply("trailing %", "ip", "r", "z", out, sizeof(out)), -1);
	CHECK_INT(dnsbl_format_reply("line\r\n250 ok", "ip", "r", "z", out, sizeof(out)), -1);
	CHECK_INT(dnsbl_format_reply("rule %1", "ip", "r\nx", "z", out, sizeof(out)), -1);
	CHECK_INT(dnsbl_format_reply("%0%0%0", "0123456789", "r", "z", out, 30), -1);
	CHECK_INT(dnsbl_format_reply("%0%0%0", "0123456789", "r", "z", out, 31), 0);
	CHECK_INT(strlen(out), 30);
	CHECK_INT(dnsbl_format_reply("", "ip", "r", "z", out, sizeof(out)), 0);
	CHECK_STR(out, "");
}

/* Two TXT records, the first of two strings, one with CR LF inside (dnslib). */
static const unsigned char txt_answer[] = {
	0x12, 0x34, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x31,
	0x30, 0x01, 0x32, 0x01, 0x30, 0x03, 0x31, 0x39, 0x32, 0x02, 0x62, 0x6c, 0x04, 0x74,
	0x65, 0x73, 0x74, 0x00, 0x00, 0x10, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x10, 0x00, 0x01,
	0x00, 0x00, 0x01, 0x2c, 0x00, 0x12, 0x0b, 0x62, 0x61, 0x64, 0x0d, 0x0a, 0x32, 0x35,
	0x30, 0x20, 0x6f, 0x6b, 0x05, 0x20, 0x6d, 0x6f, 0x72, 0x65, 0xc0, 0x0c, 0x00, 0x10,
	0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x0e, 0x0d, 0x73, 0x65, 0x63, 0x6f, 0x6e,
	0x64, 0x20, 0x72, 0x65, 0x63, 0x6f, 0x72, 0x64,
};

/* A records 127.0.0.4 (ttl 300), 198.51.100.1 (ttl 45), 127.0.0.10 (ttl 900). */
static const unsigned char a_answer[] = {
	0x12, 0x34, 0x85, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x02, 0x31,
	0x30, 0x01, 0x32, 0x01, 0x30, 0x03, 0x31, 0x39, 0x32, 0x02, 0x62, 0x6c, 0x04, 0x74,
	0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01,
	0x00, 0x00, 0x01, 0x2c, 0x00, 0x04, 0x7f, 0x00, 0x00, 0x04, 0xc0, 0x0c, 0x00, 0x01,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x04, 0xc6, 0x33, 0x64, 0x01, 0xc0, 0x0c,
	0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x03, 0x84, 0x00, 0x04, 0x7f, 0x00, 0x00, 0x0a,
};

TEST(dnsbl_parse_raw_answers)
{
	char reason[DNSBL_REASON_MAX];
	uint32_t codes[DNSBL_CODES_MAX];
	size_t n = DNSBL_CODES_MAX;
	unsigned ttl = 0;

	CHECK_INT(dnsbl_parse_txt(txt_answer, sizeof(txt_answer), reason, sizeof(reason)), 0);
	CHECK_STR(reason, "bad??250 ok more");          /* first record only, CR LF gone */
	CHECK_INT(dnsbl_parse_txt(txt_answer, sizeof(txt_answer), reason, 6), 0);
	CHECK_STR(reason, "bad??");
	CHECK_INT(dnsbl_parse_txt(txt_answer, 20, reason, sizeof(reason)), -1);
	CHECK_INT(dnsbl_parse_txt(a_answer, sizeof(a_answer), reason, sizeof(reason)), -1);

	CHECK_INT(dnsbl_parse_a(a_answer, sizeof(a_answer), codes, &n, &ttl), 0);
	CHECK_INT(n, 2);
	CHECK_INT(codes[0], 0x7f000004);
	CHECK_INT(codes[1], 0x7f00000a);
	CHECK_INT(ttl, 45);
	n = 1;
	CHECK_INT(dnsbl_parse_a(a_answer, sizeof(a_answer), codes, &n, &ttl), 0);
	CHECK_INT(n, 1);
	n = DNSBL_CODES_MAX;
	CHECK_INT(dnsbl_parse_a(a_answer, sizeof(a_answer) - 3, codes, &n, &ttl), -1);
	CHECK_INT(n, 0);
	n = DNSBL_CODES_MAX;
	CHECK_INT(dnsbl_parse_a(txt_answer, sizeof(txt_answer), codes, &n, &ttl), 0);
	CHECK_INT(n, 0);                                /* no A records: nothing listed */
}
