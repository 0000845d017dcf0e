/*
 * A set of IPv4/IPv6 networks. Lookups are a binary search over sorted,
 * merged ranges, so a list of 100,000 entries stays fast.
 */
#ifndef POSTERN_CIDR_H
#define POSTERN_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/strbuf.h"

struct cidr_range {
	unsigned char lo[16];        /* IPv4 as IPv4-mapped IPv6 */
	unsigned char hi[16];
};

struct cidr_list {
	struct cidr_range *ranges;
	size_t count;
	size_t cap;
};

/*
 * Add "192.0.2.0/24", "2001:db8::/32" or a single address; -1 if malformed.
 * Host bits below the prefix are cleared: "10.1.2.3/8" adds 10.0.0.0/8.
 */
int cidr_list_add(struct cidr_list *list, const char *text);
/* Sort and merge overlapping ranges; call once after the last add. */
void cidr_list_finish(struct cidr_list *list);
bool cidr_list_contains(const struct cidr_list *list, const struct sockaddr *sa);
bool cidr_list_contains_text(const struct cidr_list *list, const char *addr);
/*
 * Append the finished list as "10.0.0.0/8, ::1" (IPv4 shown as IPv4, merged
 * ranges as the fewest prefixes covering them); -1 if out's limit is hit.
 */
int cidr_list_format(const struct cidr_list *list, struct strbuf *out);
void cidr_list_free(struct cidr_list *list);

#endif
