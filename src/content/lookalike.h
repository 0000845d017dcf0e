/*
 * Host names that imitate a brand's domain without being it. Names are
 * compared on "skeletons": labels with punycode decoded (RFC 3492) and
 * confusable characters folded to the ASCII letter they pass for, so
 * "xn--pypal-4ve" (Cyrillic a), "paypa1" and "paypal" all read "paypal".
 * A host imitates a brand when it is not the brand nor one of its
 * subdomains, yet has the same skeleton, is one visible edit away in the
 * registrable label, or carries the brand's name as a word in front of
 * another registrable domain ("paypal.com.example.net", "paypal-secure.net").
 */
#ifndef POSTERN_CONTENT_LOOKALIKE_H
#define POSTERN_CONTENT_LOOKALIKE_H

#include <stdbool.h>
#include <stddef.h>

#include "content/url_host.h"

/*
 * A host name prepared for lookalike tests: its registrable domain and
 * their skeletons. A brand's view is made once when the brand list is
 * loaded, instead of once per link.
 */
struct lookalike_view {
	const char *host;                    /* borrowed: must outlive the view */
	char rd[URL_HOST_MAX + 1];           /* registrable domain; the host itself when it has none */
	size_t label_len;                    /* bytes of rd's first label, the name a brand is known by */
	char label_skel[URL_HOST_MAX + 1];
	char rd_skel[URL_HOST_MAX + 1];
};

/* Prepare host (lower case, at most URL_HOST_MAX bytes) for lookalike_view_imitates. */
void lookalike_view_init(struct lookalike_view *v, const char *host);

/*
 * Whether the host of view h imitates the brand of view b: the decision
 * on prepared views, so a host can be judged against a whole brand table
 * at the cost of one skeleton.
 */
bool lookalike_view_imitates(const struct lookalike_view *h, const struct lookalike_view *b);

/*
 * Whether host imitates brand (both lower-case host names), for callers
 * with a single pair; false for empty or over-long names.
 */
bool lookalike_of(const char *host, const char *brand);

#endif
