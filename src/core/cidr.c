#define LOG_MODULE "cidr"
#include "core/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

#define CIDR_TEXT_MAX 64     /* longest "ffff:...:ffff/128" plus slack */

static const unsigned char v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* IPv4 lives inside ::ffff:0:0/96 so one sorted array holds both families. */
static void cidr_map_v4(const void *v4, unsigned char out[16])
{
	memcpy(out, v4mapped_prefix, 12);
	memcpy(out + 12, v4, 4);
}

/* Parse "0".."max" with no sign, no blanks and at most three digits. */
static int cidr_parse_prefix(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n == 3)
			return -1;
		v = v * 10 + (unsigned)(s[n] - '0');
	}
	if (n == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * Host bits below the prefix are accepted and cleared ("10.1.2.3/8" means
 * 10.0.0.0/8), like Postfix does after its warning: the operator's intent
 * is the network, and refusing would only make a typo fatal.
 */
static void cidr_range_from_prefix(const unsigned char addr[16], unsigned bits, struct cidr_range *r)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
		unsigned char mask = (unsigned char)(keep ? 0xff << (8 - keep) : 0);

		r->lo[i] = addr[i] & mask;
		r->hi[i] = (unsigned char)(addr[i] | (unsigned char)~mask);
	}
}

int cidr_list_add(struct cidr_list *list, const char *text)
{
	char buf[CIDR_TEXT_MAX];
	unsigned char addr[16];
	unsigned char v4[4];
	unsigned bits, maxbits;
	size_t len = strlen(text);
	char *slash;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, text, len + 1);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, v4) == 1) {
		cidr_map_v4(v4, addr);
		maxbits = 32;
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		maxbits = 128;
	} else {
		return -1;
	}
	bits = maxbits;
	if (slash != NULL && cidr_parse_prefix(slash + 1, maxbits, &bits) < 0)
		return -1;
	if (maxbits == 32)
		bits += 96;
	if (list->count == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 8;
		list->ranges = xreallocarray(list->ranges, list->cap, sizeof(*list->ranges));
	}
	cidr_range_from_prefix(addr, bits, &list->ranges[list->count++]);
	return 0;
}

static int cidr_range_cmp(const void *a, const void *b)
{
	const struct cidr_range *ra = a, *rb = b;
	int c = memcmp(ra->lo, rb->lo, 16);

	return c != 0 ? c : memcmp(ra->hi, rb->hi, 16);
}

/* True when b starts at or right after a's end, so the two can be one range. */
static bool cidr_range_touches(const struct cidr_range *a, const struct cidr_range *b)
{
	unsigned char next[16];
	int i;

	if (memcmp(b->lo, a->hi, 16) <= 0)
		return true;
	memcpy(next, a->hi, 16);
	for (i = 15; i >= 0; i--) {
		if (++next[i] != 0)
			break;
	}
	return i >= 0 && memcmp(next, b->lo, 16) == 0;
}

void cidr_list_finish(struct cidr_list *list)
{
	size_t out = 0;

	if (list->count == 0)
		return;
	qsort(list->ranges, list->count, sizeof(*list->ranges), cidr_range_cmp);
	for (size_t i = 1; i < list->count; i++) {
		struct cidr_range *last = &list->ranges[out];

		if (cidr_range_touches(last, &list->ranges[i])) {
			if (memcmp(list->ranges[i].hi, last->hi, 16) > 0)
				memcpy(last->hi, list->ranges[i].hi, 16);
		} else {
			list->ranges[++out] = list->ranges[i];
		}
	}
	list->count = out + 1;
}

/* Binary search for the last range starting at or before addr. */
static bool cidr_list_contains_addr(const struct cidr_list *list, const unsigned char addr[16])
{
	size_t lo = 0, hi = list->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(list->ranges[mid].lo, addr, 16) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && memcmp(addr, list->ranges[lo - 1].hi, 16) <= 0;
}

bool cidr_list_contains(const struct cidr_list *list, const struct sockaddr *sa)
{
	unsigned char addr[16];

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		cidr_map_v4(&sin->sin_addr, addr);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(addr, &sin6->sin6_addr, 16);
	} else {
		return false;
	}
	return cidr_list_contains_addr(list, addr);
}

bool cidr_list_contains_text(const struct cidr_list *list, const char *text)
{
	unsigned char addr[16];
	unsigned char v4[4];

	if (inet_pton(AF_INET, text, v4) == 1)
		cidr_map_v4(v4, addr);
	else if (inet_pton(AF_INET6, text, addr) != 1)
		return false;
	return cidr_list_contains_addr(list, addr);
}

/* Length of the longest aligned block starting at lo that does not pass hi. */
static unsigned cidr_block_bits(const unsigned char lo[16], const unsigned char hi[16])
{
	for (unsigned bits = 0; bits <= 128; bits++) {
		struct cidr_range r;

		cidr_range_from_prefix(lo, bits, &r);
		if (memcmp(r.lo, lo, 16) == 0 && memcmp(r.hi, hi, 16) <= 0)
			return bits;
	}
	panic("no block fits between the bounds of a range");
}

static int cidr_append_block(struct strbuf *out, const unsigned char addr[16], unsigned bits)
{
	char text[INET6_ADDRSTRLEN];
	bool v4 = bits >= 96 && memcmp(addr, v4mapped_prefix, 12) == 0;

	if (out->len > 0 && strbuf_appends(out, ", ") < 0)
		return -1;
	if (v4) {
		inet_ntop(AF_INET, addr + 12, text, sizeof(text));
		bits -= 96;
	} else {
		inet_ntop(AF_INET6, addr, text, sizeof(text));
	}
	if (bits == (v4 ? 32u : 128u))
		return strbuf_appends(out, text);
	return strbuf_appendf(out, "%s/%u", text, bits);
}

/*
 * A merged range rarely is one prefix: cover it with the fewest aligned
 * blocks, the classic range-to-CIDR walk. Only the blocks of one family
 * (IPv4 or not) are printed per call.
 */
static int cidr_format_range(const struct cidr_range *range, bool v4, struct strbuf *out)
{
	unsigned char cur[16];

	memcpy(cur, range->lo, 16);
	for (;;) {
		unsigned bits = cidr_block_bits(cur, range->hi);
		struct cidr_range block;
		int b;

		if ((bits >= 96 && memcmp(cur, v4mapped_prefix, 12) == 0) == v4 &&
		    cidr_append_block(out, cur, bits) < 0)
			return -1;
		cidr_range_from_prefix(cur, bits, &block);
		if (memcmp(block.hi, range->hi, 16) == 0)
			return 0;
		memcpy(cur, block.hi, 16);
		for (b = 15; b >= 0 && ++cur[b] == 0; b--)
			;
	}
}

/* IPv4 first: people write "127.0.0.0/8, ::1", not the sorted order. */
int cidr_list_format(const struct cidr_list *list, struct strbuf *out)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < list->count; i++) {
			if (cidr_format_range(&list->ranges[i], pass == 0, out) < 0)
				return -1;
		}
	}
	return 0;
}

void cidr_list_free(struct cidr_list *list)
{
	free(list->ranges);
	list->ranges = NULL;
	list->count = list->cap = 0;
}
