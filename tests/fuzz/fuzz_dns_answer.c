/*
 * Raw DNS answers come from the network, and whoever runs a DNSBL or the
 * sender's domain controls them. Every parser the project points at them
 * runs on the same bytes: postern's DNSBL parsers (checking their
 * promises: codes in 127/8, counts within bounds, reasons printable and
 * terminated) and the c-ares parsers used by dns.c and the engines (A,
 * AAAA, MX, TXT), whose results are walked in full so that a bad pointer
 * shows.
 */
#include <ares.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/dnsbl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ADDRS_MAX 16

static void fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_dnsbl_parsers(const uint8_t *data, size_t size)
{
	uint32_t codes[DNSBL_CODES_MAX];
	char reason[DNSBL_REASON_MAX];
	size_t cap = 1 + size % DNSBL_CODES_MAX, n = cap;
	size_t reasonlen = 1 + size % sizeof(reason);
	unsigned ttl;

	if (dnsbl_parse_a(data, size, codes, &n, &ttl) == 0) {
		fuzz_assert(n <= cap);
		for (size_t i = 0; i < n; i++)
			fuzz_assert((codes[i] >> 24) == 127);
	} else {
		fuzz_assert(n == 0);
	}
	memset(reason, 'x', sizeof(reason));
	if (dnsbl_parse_txt(data, size, reason, reasonlen) == 0) {
		size_t len = strnlen(reason, reasonlen);

		fuzz_assert(len < reasonlen);
		for (size_t i = 0; i < len; i++)
			fuzz_assert(reason[i] >= 0x20 && reason[i] < 0x7f);
	}
}

static size_t fuzz_hostent_walk(const struct hostent *h)
{
	size_t sum = strlen(h->h_name);

	for (char **a = h->h_aliases; a != NULL && *a != NULL; a++)
		sum += strlen(*a);
	for (char **a = h->h_addr_list; a != NULL && *a != NULL; a++)
		sum += (unsigned char)(*a)[h->h_length - 1];
	return sum;
}

static void fuzz_ares_parsers(const uint8_t *data, int len)
{
	struct hostent *h = NULL;
	struct ares_addrttl a[FUZZ_ADDRS_MAX];
	struct ares_addr6ttl a6[FUZZ_ADDRS_MAX];
	struct ares_mx_reply *mx = NULL;
	struct ares_txt_ext *txt = NULL;
	int n = FUZZ_ADDRS_MAX;
	volatile size_t sink = 0;

	if (ares_parse_a_reply(data, len, &h, a, &n) == ARES_SUCCESS) {
		fuzz_assert(n >= 0 && n <= FUZZ_ADDRS_MAX);
		sink += fuzz_hostent_walk(h);
	}
	if (h != NULL)
		ares_free_hostent(h);
	h = NULL;
	n = FUZZ_ADDRS_MAX;
	if (ares_parse_aaaa_reply(data, len, &h, a6, &n) == ARES_SUCCESS) {
		fuzz_assert(n >= 0 && n <= FUZZ_ADDRS_MAX);
		sink += fuzz_hostent_walk(h);
	}
	if (h != NULL)
		ares_free_hostent(h);
	if (ares_parse_mx_reply(data, len, &mx) == ARES_SUCCESS) {
		for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
			sink += strlen(m->host) + m->priority;
		ares_free_data(mx);
	}
	if (ares_parse_txt_reply_ext(data, len, &txt) == ARES_SUCCESS) {
		for (struct ares_txt_ext *t = txt; t != NULL; t = t->next)
			sink += t->length + (t->length > 0 ? t->txt[t->length - 1] : 0);
		ares_free_data(txt);
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65535)       /* a DNS message never is longer */
		return 0;
	fuzz_dnsbl_parsers(data, size);
	fuzz_ares_parsers(data, (int)size);
	return 0;
}
