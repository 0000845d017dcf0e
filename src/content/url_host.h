/*
 * The host a URL leads to, read the way a browser reads it, and what kind
 * of host that is. Mail filters that take the host from a URL with a
 * stricter parser than the browser's are fooled by "http:\\evil.example",
 * "http://paypal.com@evil.example/", "%65vil.example" or "http://3232235777/";
 * this module follows the browser (WHATWG URL) on each of them.
 */
#ifndef POSTERN_CONTENT_URL_HOST_H
#define POSTERN_CONTENT_URL_HOST_H

#include <stdbool.h>
#include <stddef.h>

#define URL_HOST_MAX 253         /* bytes of a host name, without its NUL */

/* The parts of a URL's authority, pointing into the URL. */
struct url_parts {
	const char *host;            /* raw: not yet decoded nor lower-cased */
	size_t host_len;
	const char *user;            /* userinfo before '@', NULL if none */
	size_t user_len;
	bool web;                    /* http(s) or a scheme-less web address */
};

/*
 * Split url into its raw authority parts, for callers that judge the
 * userinfo itself rather than only whether there is one. false when url
 * has no host a browser would go to (mailto:, javascript:, relative links).
 */
bool url_split(const char *url, struct url_parts *p);

/*
 * The host of a URL as a browser would go to it, so that it can be
 * compared with domain lists: scheme-less "www." forms accepted, userinfo
 * and port dropped, percent-escapes decoded, lower case, trailing dot
 * removed. false when there is no host or it does not fit in out
 * (URL_HOST_MAX + 1 always does). *has_userinfo (may be NULL) tells
 * whether an "x@" came before the host.
 */
bool url_host(const char *url, char *out, size_t outlen, bool *has_userinfo);

/*
 * An IPv4 (dotted, or one decimal/hex/octal number) or IPv6 literal host:
 * a link that names no domain, whose owner no list or reputation knows.
 */
bool url_host_is_ip(const char *host);

/*
 * A private, loopback or link-local address written plainly, as technical
 * mail shows the reader's own machine or network; encoded forms never
 * count, since they are hiding something.
 */
bool url_host_is_plain_local(const char *host);

/*
 * host (lower case) is domain or one of its subdomains: the test every
 * domain list (brands, shorteners, redirectors) is matched with.
 */
bool url_host_within(const char *host, const char *domain);

#endif
