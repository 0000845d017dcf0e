#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/un.h>

#include "core/cidr.h"

static void list_of(struct cidr_list *l, const char *const *items)
{
	memset(l, 0, sizeof(*l));
	for (; *items; items++) {
		if (cidr_list_add(l, *items) < 0)
			unit_fail(__FILE__, __LINE__, "cidr_list_add(\"%s\") failed", *items);
	}
	cidr_list_finish(l);
}

/* The list as cidr_list_format prints it (caller frees). */
static char *formatted(const struct cidr_list *l)
{
	struct strbuf sb;

	strbuf_init(&sb, 1 << 20);
	CHECK_INT(cidr_list_format(l, &sb), 0);
	return strbuf_detach(&sb, NULL);
}

TEST(cidr_single_ipv4)
{
	struct cidr_list l;

	list_of(&l, (const char *const[]){ "192.0.2.7", NULL });
	CHECK(cidr_list_contains_text(&l, "192.0.2.7"));
	CHECK(!cidr_list_contains_text(&l, "192.0.2.6"));
	CHECK(!cidr_list_contains_text(&l, "192.0.2.8"));
	CHECK(cidr_list_contains_text(&l, "::ffff:192.0.2.7"));
	CHECK(!cidr_list_contains_text(&l, "::192.0.2.7"));
	cidr_list_free(&l);
}

TEST(cidr_ipv4_prefix_bounds)
{
	struct cidr_list l;

	list_of(&l, (const char *const[]){ "192.0.2.0/24", NULL });
	CHECK(cidr_list_contains_text(&l, "192.0.2.0"));
	CHECK(cidr_list_contains_text(&l, "192.0.2.255"));
	CHECK(!cidr_list_contains_text(&l, "192.0.1.255"));
	CHECK(!cidr_list_contains_text(&l, "192.0.3.0"));
	CHECK(!cidr_list_contains_text(&l, "2001:db8::1"));
	cidr_list_free(&l);
}

TEST(cidr_ipv6_prefix)
{
	struct cidr_list l;

	list_of(&l, (const char *const[]){ "2001:db8::/32", "::1", NULL });
	CHECK(cidr_list_contains_text(&l, "2001:db8::"));
	CHECK(cidr_list_contains_text(&l, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
	CHECK(!cidr_list_contains_text(&l, "2001:db9::"));
	CHECK(!cidr_list_contains_text(&l, "2001:db7:ffff::1"));
	CHECK(cidr_list_contains_text(&l, "::1"));
	CHECK(!cidr_list_contains_text(&l, "::2"));
	CHECK(!cidr_list_contains_text(&l, "127.0.0.1"));
	cidr_list_free(&l);
}

TEST(cidr_zero_prefix)
{
	struct cidr_list v4, v6;

	list_of(&v4, (const char *const[]){ "0.0.0.0/0", NULL });
	CHECK(cidr_list_contains_text(&v4, "0.0.0.0"));
	CHECK(cidr_list_contains_text(&v4, "255.255.255.255"));
	CHECK(cidr_list_contains_text(&v4, "10.1.2.3"));
	CHECK(!cidr_list_contains_text(&v4, "2001:db8::1"));
	list_of(&v6, (const char *const[]){ "::/0", NULL });
	CHECK(cidr_list_contains_text(&v6, "::"));
	CHECK(cidr_list_contains_text(&v6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	CHECK(cidr_list_contains_text(&v6, "10.1.2.3"));
	cidr_list_free(&v4);
	cidr_list_free(&v6);
}

/* Our choice: host bits are cleared, as Postfix does after its warning. */
TEST(cidr_host_bits_are_masked)
{
	struct cidr_list l;
	char *text;

	list_of(&l, (const char *const[]){ "10.1.2.3/8", "2001:db8::1/32", NULL });
	CHECK(cidr_list_contains_text(&l, "10.200.0.1"));
	CHECK(cidr_list_contains_text(&l, "10.0.0.0"));
	CHECK(!cidr_list_contains_text(&l, "11.0.0.0"));
	CHECK(cidr_list_contains_text(&l, "2001:db8:1::"));
	text = formatted(&l);
	CHECK_STR(text, "10.0.0.0/8, 2001:db8::/32");
	free(text);
	cidr_list_free(&l);
}

TEST(cidr_malformed)
{
	static const char *const bad[] = {
		"", "abc", "1.2.3", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/ 8",
		"1.2.3.4/8x", "1.2.3.4/0008", "::/129", "::1/", "1.2.3.4/8/8", " 1.2.3.4", "1.2.3.4 ",
		"256.0.0.0", "01.2.3.4", "[::1]", "2001:db8::/32/", "example.com", "1.2.3.4/999",
		"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
		NULL,
	};
	struct cidr_list l = { 0 };

	for (const char *const *b = bad; *b; b++) {
		if (cidr_list_add(&l, *b) != -1)
			unit_fail(__FILE__, __LINE__, "\"%s\" was accepted", *b);
	}
	CHECK_INT(l.count, 0);
	CHECK_INT(cidr_list_add(&l, "1.2.3.4/08"), 0);
	CHECK_INT(cidr_list_add(&l, "::/0"), 0);
	CHECK_INT(cidr_list_add(&l, "0.0.0.0/32"), 0);
	cidr_list_free(&l);
}

TEST(cidr_merge_overlapping_and_adjacent)
{
	struct cidr_list l;
	char *text;

	list_of(&l, (const char *const[]){ "10.0.0.128/25", "10.0.0.0/25", "10.0.0.7", "10.0.1.0/24",
					  "10.0.0.0/24", NULL });
	CHECK_INT(l.count, 1);
	text = formatted(&l);
	CHECK_STR(text, "10.0.0.0/23");
	free(text);
	cidr_list_free(&l);

	list_of(&l, (const char *const[]){ "10.0.0.1", "10.0.0.2", "10.0.0.4", NULL });
	CHECK_INT(l.count, 2);
	text = formatted(&l);
	CHECK_STR(text, "10.0.0.1, 10.0.0.2, 10.0.0.4");
	free(text);
	CHECK(!cidr_list_contains_text(&l, "10.0.0.3"));
	CHECK(cidr_list_contains_text(&l, "10.0.0.2"));
	cidr_list_free(&l);

	/* The top of the address space must not wrap around when merging. */
	list_of(&l, (const char *const[]){ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", "::/0", NULL });
	CHECK_INT(l.count, 1);
	text = formatted(&l);
	CHECK_STR(text, "::/0");
	free(text);
	cidr_list_free(&l);
}

TEST(cidr_format_mixed)
{
	struct cidr_list l;
	char *text;

	list_of(&l, (const char *const[]){ "::1", "127.0.0.0/8", "0.0.0.0/0", "fe80::/10", NULL });
	text = formatted(&l);
	CHECK_STR(text, "0.0.0.0/0, ::1, fe80::/10");
	free(text);
	cidr_list_free(&l);

	memset(&l, 0, sizeof(l));
	cidr_list_finish(&l);
	text = formatted(&l);
	CHECK_STR(text, "");
	free(text);
	CHECK(!cidr_list_contains_text(&l, "127.0.0.1"));
	CHECK(!cidr_list_contains_text(&l, "not an address"));
	cidr_list_free(&l);
}

TEST(cidr_format_limit)
{
	struct cidr_list l;
	struct strbuf sb;

	list_of(&l, (const char *const[]){ "192.0.2.1", "192.0.2.3", NULL });
	strbuf_init(&sb, 12);
	CHECK_INT(cidr_list_format(&l, &sb), -1);
	strbuf_free(&sb);
	cidr_list_free(&l);
}

TEST(cidr_sockaddr)
{
	struct cidr_list l;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	list_of(&l, (const char *const[]){ "127.0.0.0/8", "2001:db8::/48", NULL });
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	CHECK(cidr_list_contains(&l, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "128.0.0.1", &sin.sin_addr);
	CHECK(!cidr_list_contains(&l, (struct sockaddr *)&sin));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
	CHECK(cidr_list_contains(&l, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8:0:ffff::1", &sin6.sin6_addr);
	CHECK(cidr_list_contains(&l, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8:1::1", &sin6.sin6_addr);
	CHECK(!cidr_list_contains(&l, (struct sockaddr *)&sin6));
	CHECK(!cidr_list_contains(&l, (struct sockaddr *)&sun));
	CHECK(!cidr_list_contains(&l, NULL));
	cidr_list_free(&l);
}

/* xorshift: deterministic, so a failure reproduces. */
static uint32_t next_random(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

static void bitmap_mark(unsigned char *bits, uint32_t from, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		bits[(from + i) >> 3] |= (unsigned char)(1u << ((from + i) & 7));
}

static int bitmap_test(const unsigned char *bits, uint32_t i)
{
	return (bits[i >> 3] >> (i & 7)) & 1;
}

/*
 * 100,000 networks inside 10.0.0.0/8 checked against a bitmap of that /8:
 * every lookup must agree, including each network's edges.
 */
TEST(cidr_hundred_thousand_entries)
{
	static const unsigned prefixes[] = { 32, 32, 32, 30, 28, 24, 20 };
	unsigned char *bits = calloc(1, (1u << 24) / 8);
	struct cidr_list l = { 0 };
	uint32_t state = 2463534242u, mismatches = 0;
	char text[64];

	for (int i = 0; i < 100000; i++) {
		unsigned plen = prefixes[next_random(&state) % 7];
		uint32_t size = 1u << (32 - plen);
		uint32_t host = next_random(&state) & 0xffffff & ~(size - 1);

		snprintf(text, sizeof(text), "10.%u.%u.%u/%u", host >> 16, (host >> 8) & 0xff, host & 0xff, plen);
		CHECK_INT(cidr_list_add(&l, text), 0);
		bitmap_mark(bits, host, size);
	}
	cidr_list_finish(&l);
	CHECK(l.count > 1000);
	for (int i = 0; i < 1000000; i++) {
		uint32_t host = next_random(&state) & 0xffffff;
		struct sockaddr_in sin = { .sin_family = AF_INET };

		sin.sin_addr.s_addr = htonl(0x0a000000u | host);
		if (cidr_list_contains(&l, (struct sockaddr *)&sin) != bitmap_test(bits, host))
			mismatches++;
	}
	for (size_t i = 0; i < l.count; i++) {
		uint32_t lo = ((uint32_t)l.ranges[i].lo[13] << 16) | ((uint32_t)l.ranges[i].lo[14] << 8) | l.ranges[i].lo[15];
		uint32_t hi = ((uint32_t)l.ranges[i].hi[13] << 16) | ((uint32_t)l.ranges[i].hi[14] << 8) | l.ranges[i].hi[15];

		mismatches += !bitmap_test(bits, lo) + !bitmap_test(bits, hi);
		if (lo > 0)
			mismatches += bitmap_test(bits, lo - 1);
		if (hi < 0xffffff)
			mismatches += bitmap_test(bits, hi + 1);
	}
	CHECK_INT(mismatches, 0);
	CHECK(!cidr_list_contains_text(&l, "11.0.0.0"));
	CHECK(!cidr_list_contains_text(&l, "9.255.255.255"));
	cidr_list_free(&l);
	free(bits);
}
