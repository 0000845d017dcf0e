/*
 * URL hosts as a browser reads them (see content/url_host.h): the WHATWG
 * URL rules that matter for where a link goes, IPv4 hosts in every
 * encoding browsers accept, and IPv6 literals.
 */
#include "content/url_host.h"

#include <arpa/inet.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define HOST_BUF (URL_HOST_MAX + 1)

static bool is_scheme_char(int c)
{
	return g_ascii_isalnum(c) || c == '+' || c == '.' || c == '-';
}

/* host is domain or one of its subdomains. */
bool url_host_within(const char *host, const char *domain)
{
	size_t hl = strlen(host), dl = strlen(domain);

	if (hl == dl)
		return strcmp(host, domain) == 0;
	return hl > dl && host[hl - dl - 1] == '.' && strcmp(host + hl - dl, domain) == 0;
}

/*
 * Scheme and authority the way a browser reads them: the special schemes
 * take any run of '/' and '\' after the colon ("http:\\evil.example"),
 * "//host" and "www.host" need no scheme, and the last '@' ends userinfo.
 */
bool url_split(const char *url, struct url_parts *p)
{
	const char *s = url, *auth, *end, *at = NULL;
	size_t n;

	memset(p, 0, sizeof(*p));
	while (*s != '\0' && (unsigned char)*s <= ' ')
		s++;
	if (strncasecmp(s, "www.", 4) == 0) {
		auth = s;
		p->web = true;
	} else if ((s[0] == '/' || s[0] == '\\') && (s[1] == '/' || s[1] == '\\')) {
		auth = s + 2;
		p->web = true;
	} else {
		for (n = 0; g_ascii_isalpha(s[n]) || (n > 0 && is_scheme_char(s[n])); n++)
			;
		if (n == 0 || s[n] != ':')
			return false;
		if ((n == 4 && strncasecmp(s, "http", 4) == 0) || (n == 5 && strncasecmp(s, "https", 5) == 0))
			p->web = true;
		else if (!((n == 3 && strncasecmp(s, "ftp", 3) == 0) || (n == 2 && strncasecmp(s, "ws", 2) == 0) ||
			   (n == 3 && strncasecmp(s, "wss", 3) == 0)))
			return false;
		auth = s + n + 1;
		while (*auth == '/' || *auth == '\\')
			auth++;
	}
	end = auth + strcspn(auth, "/\\?#");
	for (const char *c = auth; c < end; c++)
		if (*c == '@')
			at = c;
	if (at != NULL) {
		p->user = auth;
		p->user_len = (size_t)(at - auth);
		auth = at + 1;
	}
	if (*auth == '[') {
		const char *close = memchr(auth, ']', (size_t)(end - auth));

		if (close == NULL)
			return false;
		p->host_len = (size_t)(close - auth) + 1;
	} else {
		const char *colon = memchr(auth, ':', (size_t)(end - auth));

		p->host_len = (size_t)((colon != NULL ? colon : end) - auth);
	}
	p->host = auth;
	return p->host_len > 0;
}

/* The ideographic and fullwidth full stops browsers take for '.': their UTF-8 length at s, or 0. */
static size_t dot_lookalike(const unsigned char *s, size_t left)
{
	if (left >= 3 && ((s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x82) ||
			  (s[0] == 0xEF && s[1] == 0xBC && s[2] == 0x8E) ||
			  (s[0] == 0xEF && s[1] == 0xBD && s[2] == 0xA1)))
		return 3;
	return 0;
}

static bool host_char_ok(unsigned char c, bool bracketed)
{
	if (bracketed)
		return g_ascii_isdigit(c) || (c >= 'a' && c <= 'f') || c == ':' || c == '.' || c == '[' || c == ']';
	return c > ' ' && c != 0x7f && strchr("#%/:<>?@[\\]^|\"'", c) == NULL;
}

/* Percent-decode and lower-case a raw host into out; false when invalid or too long. */
static bool host_normalize(const char *raw, size_t len, char *out, size_t outlen)
{
	unsigned char buf[HOST_BUF * 3];
	size_t n = 0, o = 0;
	bool bracketed = len > 0 && raw[0] == '[';

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (n == sizeof(buf))
			return false;
		if (raw[i] == '%' && i + 2 < len && (hi = g_ascii_xdigit_value(raw[i + 1])) >= 0 &&
		    (lo = g_ascii_xdigit_value(raw[i + 2])) >= 0) {
			buf[n++] = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else {
			buf[n++] = (unsigned char)g_ascii_tolower(raw[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t dl = dot_lookalike(buf + i, n - i);
		unsigned char c = dl > 0 ? '.' : (unsigned char)g_ascii_tolower((char)buf[i]);

		if (dl > 0)
			i += dl - 1;
		if (!host_char_ok(c, bracketed))
			return false;
		if (o + 1 >= outlen || o == URL_HOST_MAX)
			return false;
		out[o++] = (char)c;
	}
	if (o > 0 && out[o - 1] == '.')
		o--;
	out[o] = '\0';
	return o > 0;
}

bool url_host(const char *url, char *out, size_t outlen, bool *has_userinfo)
{
	struct url_parts p;

	if (has_userinfo != NULL)
		*has_userinfo = false;
	if (outlen == 0)
		return false;
	out[0] = '\0';
	if (!url_split(url, &p))
		return false;
	if (has_userinfo != NULL)
		*has_userinfo = p.user != NULL;
	if (!host_normalize(p.host, p.host_len, out, outlen)) {
		out[0] = '\0';
		return false;
	}
	return true;
}

/*
 * One part of a WHATWG IPv4 host: decimal, 0x hex or leading-0 octal.
 * Values past 2^32 are refused rather than wrapped.
 */
static bool ipv4_part(const char *s, size_t len, uint64_t *value, bool *plain)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		len -= 2;
	} else if (len >= 2 && s[0] == '0') {
		base = 8;
		s++;
		len--;
	}
	if (len == 0 && base == 10)
		return false;
	*plain = base == 10;
	for (size_t i = 0; i < len; i++) {
		int d = g_ascii_xdigit_value(s[i]);

		if (d < 0 || (unsigned)d >= base)
			return false;
		v = v * base + (unsigned)d;
		if (v > 0xFFFFFFFFu)
			return false;
	}
	*value = v;
	return true;
}

/* An IPv4 host in any form browsers accept; *plain when written as four decimal numbers. */
static bool ipv4_parse(const char *host, uint32_t *addr, bool *plain)
{
	uint64_t parts[4];
	size_t n = 0, len = strlen(host);
	const char *s = host;
	bool all_plain = true;
	uint64_t v;

	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0)
		return false;
	while (s <= host + len) {
		const char *dot = memchr(s, '.', (size_t)(host + len - s));
		size_t plen = (size_t)((dot != NULL ? dot : host + len) - s);
		bool p;

		if (n == 4 || !ipv4_part(s, plen, &parts[n], &p))
			return false;
		all_plain = all_plain && p;
		n++;
		if (dot == NULL)
			break;
		s = dot + 1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		if (parts[i] > 255)
			return false;
	if (parts[n - 1] >= (uint64_t)1 << (8 * (5 - n)))
		return false;
	v = parts[n - 1];
	for (size_t i = 0; i + 1 < n; i++)
		v += parts[i] << (8 * (3 - i));
	*addr = (uint32_t)v;
	*plain = all_plain && n == 4;
	return true;
}

static bool ipv6_parse(const char *host, struct in6_addr *a)
{
	char buf[64];
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	if (strcspn(host, "%") < len)
		len = strcspn(host, "%");           /* a zone id: "fe80::1%eth0" */
	if (len == 0 || len >= sizeof(buf) || memchr(host, ':', len) == NULL)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, a) == 1;
}

bool url_host_is_ip(const char *host)
{
	uint32_t v4;
	struct in6_addr v6;
	bool plain;

	return ipv4_parse(host, &v4, &plain) || ipv6_parse(host, &v6);
}

/*
 * A private, loopback or link-local address written plainly: a reader's
 * own machine or network ("http://192.168.1.1/", "http://[::1]:8080/"),
 * common in technical mail and useless to a phisher. Encoded forms
 * (decimal, hex, octal) are hiding something and never count as local.
 */
bool url_host_is_plain_local(const char *host)
{
	uint32_t a;
	struct in6_addr v6;
	bool plain;

	if (ipv4_parse(host, &a, &plain))
		return plain && ((a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 ||
				 (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 || (a >> 16) == 0xA9FE);
	if (ipv6_parse(host, &v6))
		return IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_LINKLOCAL(&v6) || (v6.s6_addr[0] & 0xFE) == 0xFC;
	return false;
}
