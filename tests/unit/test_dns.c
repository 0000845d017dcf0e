/*
 * The resolver against a real DNS server: tests/tools/dnsd.py on a free
 * port, with a zone written per test.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/time.h>

#include "dns/dns.h"
#include "testpeer.h"
#include "unit.h"

static const char dns_zone[] =
	"# MX records out of order, two of equal preference\n"
	"example.com MX 20 mx-b.example.com\n"
	"example.com MX 10 mx-a1.example.com\n"
	"example.com MX 30 mx-c.example.com ttl=60\n"
	"example.com MX 10 mx-a2.example.com\n"
	"mx-a1.example.com A 127.0.0.1\n"
	"dual.example.com A 192.0.2.7\n"
	"dual.example.com AAAA 2001:db8::7\n"
	"nullmx.example.com MX 0 .\n"
	"spf.example.com TXT \"v=spf1 ip4:192.0.2.0/24\" \" -all\"\n"
	"slow.example.com TIMEOUT\n"
	"broken.example.com SERVFAIL\n"
	"short.example.com A 192.0.2.9 ttl=5\n"
	"zero.example.com A 192.0.2.10 ttl=0\n"
	"lru-a.example.com A 192.0.2.11\n"
	"lru-b.example.com A 192.0.2.12\n"
	"lru-c.example.com A 192.0.2.13\n";

struct dns_fixture {
	struct event_base *base;
	struct dns_resolver *r;
	pid_t dnsd;
	int calls;
	enum dns_status st;
	size_t n;
	struct dns_mx mx[8];
	struct dns_addr addrs[8];
	char txt[256];
	time_t now;                  /* the cache's clock */
};

static time_t dns_fixture_clock(void *arg)
{
	return ((struct dns_fixture *)arg)->now;
}

static void dns_fixture_setup(struct dns_fixture *f, unsigned timeout_ms, unsigned tries)
{
	char servers[64], err[256] = "";
	unsigned port = 0;

	memset(f, 0, sizeof(*f));
	f->dnsd = testpeer_dnsd(dns_zone, &port);
	CHECK(f->dnsd > 0);
	f->base = event_base_new();
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
	f->r = dns_resolver_new(f->base, servers, timeout_ms, tries, err, sizeof(err));
	CHECK(f->r != NULL);
	if (f->r == NULL) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	f->now = 1000;
	dns_resolver_set_clock(f->r, dns_fixture_clock, f);
}

static void dns_fixture_teardown(struct dns_fixture *f)
{
	dns_resolver_free(f->r);
	event_base_free(f->base);
	testpeer_stop(f->dnsd);
}

/* Run the loop until `calls` callbacks have come in, or seconds passed. */
static void dns_run(struct dns_fixture *f, int calls, int seconds)
{
	struct timeval tv = { seconds, 0 };

	event_base_loopexit(f->base, &tv);
	while (f->calls < calls && event_base_loop(f->base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(f->base))
		;
}

static void on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n)
{
	struct dns_fixture *f = arg;

	f->calls++;
	f->st = st;
	f->n = n;
	for (size_t i = 0; i < n && i < 8; i++)
		f->mx[i] = mx[i];
}

static void on_addr(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct dns_fixture *f = arg;

	f->calls++;
	f->st = st;
	f->n = n;
	for (size_t i = 0; i < n && i < 8; i++)
		f->addrs[i] = addrs[i];
}

static void on_raw(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct dns_fixture *f = arg;
	struct ares_txt_ext *txt, *t;

	f->calls++;
	f->st = st;
	f->n = len;
	if (st != DNS_OK || ares_parse_txt_reply_ext(answer, (int)len, &txt) != ARES_SUCCESS)
		return;
	for (t = txt; t != NULL; t = t->next) {
		strncat(f->txt, t->record_start ? "[" : "|", sizeof(f->txt) - strlen(f->txt) - 1);
		strncat(f->txt, (const char *)t->txt, sizeof(f->txt) - strlen(f->txt) - 1);
	}
	ares_free_data(txt);
}

static const char *dns_addr_str(const struct dns_addr *a, char *buf, size_t len)
{
	const void *p = a->ss.ss_family == AF_INET
		? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
		: (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;

	return inet_ntop(a->ss.ss_family, p, buf, (socklen_t)len);
}

TEST(dns_mx_sorted_by_preference)
{
	struct dns_fixture f;
	bool seen_a1_first = false, seen_a2_first = false;

	dns_fixture_setup(&f, 1000, 2);
	/* ties are shuffled: over 24 look-ups both orders of the 10s show up */
	for (int i = 0; i < 24; i++) {
		int calls = f.calls;

		dns_lookup_mx(f.r, "example.com", on_mx, &f);
		dns_run(&f, calls + 1, 5);
		CHECK_INT(f.st, DNS_OK);
		CHECK_INT(f.n, 4);
		CHECK_INT(f.mx[0].preference, 10);
		CHECK_INT(f.mx[1].preference, 10);
		CHECK_STR(f.mx[2].host, "mx-b.example.com");
		CHECK_INT(f.mx[2].preference, 20);
		CHECK_STR(f.mx[3].host, "mx-c.example.com");
		seen_a1_first |= strcmp(f.mx[0].host, "mx-a1.example.com") == 0;
		seen_a2_first |= strcmp(f.mx[0].host, "mx-a2.example.com") == 0;
	}
	CHECK(seen_a1_first);
	CHECK(seen_a2_first);
	dns_fixture_teardown(&f);
}

TEST(dns_null_mx)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_mx(f.r, "nullmx.example.com", on_mx, &f);
	dns_run(&f, 1, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 1);
	CHECK_STR(f.mx[0].host, ".");
	CHECK_INT(f.mx[0].preference, 0);
	dns_fixture_teardown(&f);
}

TEST(dns_addr_families)
{
	struct dns_fixture f;
	char a[64], b[64];

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_addr(f.r, "dual.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 1, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 1);
	CHECK_STR(dns_addr_str(&f.addrs[0], a, sizeof(a)), "192.0.2.7");

	dns_lookup_addr(f.r, "dual.example.com", AF_INET6, on_addr, &f);
	dns_run(&f, 2, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 1);
	CHECK_STR(dns_addr_str(&f.addrs[0], a, sizeof(a)), "2001:db8::7");

	dns_lookup_addr(f.r, "dual.example.com", AF_UNSPEC, on_addr, &f);
	dns_run(&f, 3, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 2);
	dns_addr_str(&f.addrs[0], a, sizeof(a));
	dns_addr_str(&f.addrs[1], b, sizeof(b));
	CHECK((strcmp(a, "192.0.2.7") == 0 && strcmp(b, "2001:db8::7") == 0) ||
	      (strcmp(b, "192.0.2.7") == 0 && strcmp(a, "2001:db8::7") == 0));
	CHECK_INT(((struct sockaddr_in *)&f.addrs[0].ss)->sin_port, 0);
	dns_fixture_teardown(&f);
}

TEST(dns_ip_literal_answers_from_the_loop)
{
	struct dns_fixture f;
	char a[64];

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_addr(f.r, "::1", AF_UNSPEC, on_addr, &f);
	CHECK_INT(f.calls, 0);      /* never inside the call */
	dns_run(&f, 1, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 1);
	CHECK_STR(dns_addr_str(&f.addrs[0], a, sizeof(a)), "::1");
	CHECK_INT(f.addrs[0].len, sizeof(struct sockaddr_in6));
	dns_fixture_teardown(&f);
}

TEST(dns_nxdomain_and_nodata)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_mx(f.r, "nowhere.example.com", on_mx, &f);
	dns_run(&f, 1, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);
	CHECK_INT(f.n, 0);

	dns_lookup_addr(f.r, "nowhere.example.com", AF_UNSPEC, on_addr, &f);
	dns_run(&f, 2, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);

	dns_lookup_mx(f.r, "mx-a1.example.com", on_mx, &f);
	dns_run(&f, 3, 5);
	CHECK_INT(f.st, DNS_NODATA);

	dns_lookup_addr(f.r, "nullmx.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 4, 5);
	CHECK_INT(f.st, DNS_NODATA);
	CHECK_INT(f.n, 0);
	dns_fixture_teardown(&f);
}

TEST(dns_timeout_and_servfail_are_tempfail)
{
	struct dns_fixture f;
	struct timeval t0, t1;
	long ms;

	/* 300 ms, two tries: c-ares doubles the second, so 900 ms in all */
	dns_fixture_setup(&f, 300, 2);
	gettimeofday(&t0, NULL);
	dns_lookup_mx(f.r, "slow.example.com", on_mx, &f);
	dns_run(&f, 1, 10);
	gettimeofday(&t1, NULL);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
	CHECK_INT(f.calls, 1);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	CHECK(ms >= 250);
	CHECK(ms < 2000);

	dns_lookup_addr(f.r, "broken.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 2, 5);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	dns_fixture_teardown(&f);
}

TEST(dns_raw_txt)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 1000, 2);
	dns_query_raw(f.r, "spf.example.com", ns_t_txt, on_raw, &f);
	dns_run(&f, 1, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK(f.n > 12);
	CHECK_STR(f.txt, "[v=spf1 ip4:192.0.2.0/24| -all");

	dns_query_raw(f.r, "nowhere.example.com", ns_t_txt, on_raw, &f);
	dns_run(&f, 2, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);
	CHECK_INT(f.n, 0);
	dns_fixture_teardown(&f);
}

TEST(dns_cancel_never_calls_back)
{
	struct dns_fixture f;
	struct dns_request *slow, *fast, *literal;

	dns_fixture_setup(&f, 300, 1);
	slow = dns_lookup_mx(f.r, "slow.example.com", on_mx, &f);
	fast = dns_lookup_addr(f.r, "dual.example.com", AF_UNSPEC, on_addr, &f);
	literal = dns_lookup_addr(f.r, "127.0.0.1", AF_INET, on_addr, &f);
	dns_cancel(slow);
	dns_cancel(fast);
	dns_cancel(literal);
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_run(&f, 2, 2);
	CHECK_INT(f.calls, 1);      /* only the one not cancelled */
	CHECK_INT(f.n, 4);
	dns_fixture_teardown(&f);
}

TEST(dns_free_drops_outstanding_requests)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 5000, 2);
	dns_lookup_mx(f.r, "slow.example.com", on_mx, &f);
	dns_lookup_addr(f.r, "dual.example.com", AF_UNSPEC, on_addr, &f);
	dns_lookup_addr(f.r, "192.0.2.1", AF_UNSPEC, on_addr, &f);
	dns_resolver_free(f.r);
	f.r = NULL;
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	CHECK_INT(f.calls, 0);
	dns_fixture_teardown(&f);
}

static void on_mx_free_resolver(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n)
{
	struct dns_fixture *f = arg;

	f->calls++;
	f->st = st;
	dns_resolver_free(f->r);
	f->r = NULL;
}

TEST(dns_free_from_inside_a_callback)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_mx(f.r, "example.com", on_mx_free_resolver, &f);
	dns_lookup_mx(f.r, "slow.example.com", on_mx, &f);
	dns_run(&f, 1, 5);
	CHECK_INT(f.calls, 1);
	CHECK_INT(f.st, DNS_OK);
	dns_fixture_teardown(&f);
}

TEST(dns_bad_server_list)
{
	struct event_base *base = event_base_new();
	char err[256] = "";

	CHECK(dns_resolver_new(base, "not an address", 1000, 2, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not an address") != NULL);
	event_base_free(base);
}

static void dns_check_stats(struct dns_fixture *f, uint64_t hits, uint64_t misses)
{
	struct dns_cache_stats st;

	dns_cache_get_stats(f->r, &st);
	CHECK_INT(st.hits, hits);
	CHECK_INT(st.misses, misses);
}

/* Stop the server: from now on only the cache can answer (quickly). */
static void dns_fixture_stop_server(struct dns_fixture *f)
{
	testpeer_stop(f->dnsd);
	f->dnsd = -1;
}

TEST(dns_cache_answers_the_second_lookup)
{
	struct dns_fixture f;
	char a[64];

	dns_fixture_setup(&f, 200, 1);
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_query_raw(f.r, "spf.example.com", ns_t_txt, on_raw, &f);
	dns_lookup_addr(f.r, "dual.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 3, 5);
	CHECK_INT(f.calls, 3);
	dns_check_stats(&f, 0, 3);
	dns_fixture_stop_server(&f);
	f.txt[0] = '\0';

	dns_lookup_mx(f.r, "EXAMPLE.com.", on_mx, &f);
	CHECK_INT(f.calls, 3);      /* a hit still answers from the loop */
	dns_run(&f, 4, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 4);
	CHECK_INT(f.mx[0].preference, 10);
	CHECK_STR(f.mx[3].host, "mx-c.example.com");

	dns_query_raw(f.r, "spf.example.com", ns_t_txt, on_raw, &f);
	dns_run(&f, 5, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_STR(f.txt, "[v=spf1 ip4:192.0.2.0/24| -all");

	dns_lookup_addr(f.r, "dual.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 6, 5);
	CHECK_INT(f.st, DNS_OK);
	CHECK_INT(f.n, 1);
	CHECK_STR(dns_addr_str(&f.addrs[0], a, sizeof(a)), "192.0.2.7");
	dns_check_stats(&f, 3, 3);

	/* another family is another question: the server is gone */
	dns_lookup_addr(f.r, "dual.example.com", AF_INET6, on_addr, &f);
	dns_run(&f, 7, 5);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	dns_check_stats(&f, 3, 4);
	dns_fixture_teardown(&f);
}

TEST(dns_cache_expires_with_the_ttl)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 1000, 2);
	/* the smallest TTL of the answer counts: example.com has one MX at 60 s */
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_lookup_addr(f.r, "short.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 2, 5);
	f.now += 4;
	dns_lookup_addr(f.r, "short.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 3, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 1, 2);
	f.now += 1;
	dns_lookup_addr(f.r, "short.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 4, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 1, 3);

	f.now = 1059;
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_run(&f, 5, 5);
	dns_check_stats(&f, 2, 3);
	f.now = 1060;
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_run(&f, 6, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 2, 4);

	/* TTL 0: never kept */
	dns_lookup_addr(f.r, "zero.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 7, 5);
	dns_lookup_addr(f.r, "zero.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 8, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 2, 6);
	dns_fixture_teardown(&f);
}

TEST(dns_cache_keeps_negative_answers)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 200, 1);
	dns_lookup_mx(f.r, "nowhere.example.com", on_mx, &f);
	dns_query_raw(f.r, "mx-a1.example.com", ns_t_txt, on_raw, &f);
	dns_lookup_addr(f.r, "nowhere.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 3, 5);
	dns_fixture_stop_server(&f);

	dns_lookup_mx(f.r, "nowhere.example.com", on_mx, &f);
	dns_run(&f, 4, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);
	CHECK_INT(f.n, 0);
	dns_query_raw(f.r, "mx-a1.example.com", ns_t_txt, on_raw, &f);
	dns_run(&f, 5, 5);
	CHECK_INT(f.st, DNS_NODATA);
	CHECK_INT(f.n, 0);
	dns_lookup_addr(f.r, "nowhere.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 6, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);
	dns_check_stats(&f, 3, 3);

	/* no SOA in dnsd's answers: the default negative TTL */
	f.now += DNS_CACHE_NEGATIVE_TTL - 1;
	dns_lookup_mx(f.r, "nowhere.example.com", on_mx, &f);
	dns_run(&f, 7, 5);
	CHECK_INT(f.st, DNS_NXDOMAIN);
	f.now += 1;
	dns_lookup_mx(f.r, "nowhere.example.com", on_mx, &f);
	dns_run(&f, 8, 5);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	dns_check_stats(&f, 4, 4);
	dns_fixture_teardown(&f);
}

TEST(dns_cache_never_keeps_failures)
{
	struct dns_fixture f;

	dns_fixture_setup(&f, 200, 1);
	for (int i = 1; i <= 2; i++) {
		dns_lookup_mx(f.r, "broken.example.com", on_mx, &f);
		dns_run(&f, i, 5);
		CHECK_INT(f.st, DNS_TEMPFAIL);
	}
	dns_lookup_addr(f.r, "slow.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 3, 5);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	dns_lookup_addr(f.r, "slow.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 4, 5);
	CHECK_INT(f.st, DNS_TEMPFAIL);
	dns_check_stats(&f, 0, 4);
	dns_fixture_teardown(&f);
}

TEST(dns_cache_evicts_the_least_recently_used)
{
	struct dns_fixture f;
	struct dns_cache_stats st;

	dns_fixture_setup(&f, 1000, 2);
	dns_cache_set_limit(f.r, 2);
	dns_lookup_addr(f.r, "lru-a.example.com", AF_INET, on_addr, &f);
	dns_lookup_addr(f.r, "lru-b.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 2, 5);
	dns_lookup_addr(f.r, "lru-a.example.com", AF_INET, on_addr, &f);   /* a is now newest */
	dns_run(&f, 3, 5);
	dns_lookup_addr(f.r, "lru-c.example.com", AF_INET, on_addr, &f);   /* b goes */
	dns_run(&f, 4, 5);
	dns_cache_get_stats(f.r, &st);
	CHECK_INT(st.entries, 2);
	CHECK_INT(st.evictions, 1);
	dns_check_stats(&f, 1, 3);
	dns_lookup_addr(f.r, "lru-a.example.com", AF_INET, on_addr, &f);
	dns_lookup_addr(f.r, "lru-c.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 6, 5);
	dns_check_stats(&f, 3, 3);
	dns_lookup_addr(f.r, "lru-b.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 7, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 3, 4);
	dns_cache_get_stats(f.r, &st);
	CHECK_INT(st.entries, 2);

	dns_cache_set_limit(f.r, 0);     /* no cache at all */
	dns_cache_get_stats(f.r, &st);
	CHECK_INT(st.entries, 0);
	dns_lookup_addr(f.r, "lru-b.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 8, 5);
	dns_lookup_addr(f.r, "lru-b.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 9, 5);
	CHECK_INT(f.st, DNS_OK);
	dns_check_stats(&f, 3, 6);
	dns_fixture_teardown(&f);
}

TEST(dns_cache_hit_can_be_cancelled)
{
	struct dns_fixture f;
	struct dns_request *req;

	dns_fixture_setup(&f, 1000, 2);
	dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_lookup_addr(f.r, "dual.example.com", AF_INET, on_addr, &f);
	dns_run(&f, 2, 5);
	req = dns_lookup_mx(f.r, "example.com", on_mx, &f);
	dns_cancel(req);
	req = dns_lookup_addr(f.r, "dual.example.com", AF_INET, on_addr, &f);
	dns_cancel(req);
	dns_query_raw(f.r, "spf.example.com", ns_t_txt, on_raw, &f);
	dns_run(&f, 3, 2);
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	CHECK_INT(f.calls, 3);      /* only the TXT look-up called back */
	CHECK_STR(f.txt, "[v=spf1 ip4:192.0.2.0/24| -all");
	dns_check_stats(&f, 2, 3);
	dns_fixture_teardown(&f);
}
