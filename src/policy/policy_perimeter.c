/*
 * [perimeter]: when mail reaches us through trusted internal relays (a
 * front MTA, an Exchange edge), the client worth judging is not the relay
 * but the first host outside them, as the relays recorded it in their
 * Received headers.
 *
 * The parser is here; the facts do not carry the message, so the session
 * calls perimeter_find_client at DATA with the header block and replaces
 * the judged client; the DATA-stage instances of the connlimit, DNSBL and
 * SPF engines then judge that hop. The constructor adds no engine.
 *
 * Each Received header is read up to its " by " clause (or the ';' date),
 * outside comments' nesting only so far as needed to find the client
 * address and the name it gave in HELO. Address candidates, best first:
 *   1. an address in brackets inside a comment: "from helo (rdns [1.2.3.4])"
 *      (Postfix, Sendmail), "([1.2.3.4]:25 helo=x)" (Exim) — a bracketed
 *      HELO at the top level is what the client claimed, not its address;
 *   2. an address in brackets at the top level: "from [1.2.3.4] (helo=x)"
 *      (Exim when there is no reverse name);
 *   3. a bare address as a whole comment: "(1.2.3.4)" (Exchange, qmail).
 * The HELO name: "helo=x" (Exim) or "(HELO x)" (qmail) where the relay
 * says so, else the name right after "from" (Postfix, Sendmail, Exchange
 * write the HELO there).
 */
#define LOG_MODULE "policy"
#include "policy/policy_engine.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "policy/policy_connect.h"

#define PERIMETER_HEADER_MAX 4096    /* one unfolded Received header */
#define PERIMETER_ADDR_MAX 64
#define PERIMETER_HELO_LABEL_LEN 5   /* "helo=" (Exim), "HELO " (qmail) */

/* Parse an IPv4 or IPv6 text ("IPv6:" prefix allowed) into ss. */
static bool perimeter_parse_addr(const char *text, size_t len, struct sockaddr_storage *ss)
{
	char buf[PERIMETER_ADDR_MAX];

	if (len >= 5 && strncasecmp(text, "IPv6:", 5) == 0) {
		text += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, buf, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		return true;
	}
	return false;
}

/* Where the "from" part of a Received value ends: " by ", or ';' before the date. */
static size_t perimeter_from_len(const char *v, size_t len)
{
	int depth = 0;

	for (size_t i = 0; i < len; i++) {
		if (v[i] == '(')
			depth++;
		else if (v[i] == ')' && depth > 0)
			depth--;
		else if (v[i] == ';' && depth == 0)
			return i;
		else if (depth == 0 && i > 0 && isspace((unsigned char)v[i - 1]) && i + 2 <= len &&
			 strncasecmp(v + i, "by", 2) == 0 && (i + 2 == len || isspace((unsigned char)v[i + 2])))
			return i;
	}
	return len;
}

/*
 * The client address recorded in one unfolded Received value, by the
 * preference order of the file comment; false when there is none.
 */
static bool perimeter_hop_client(const char *v, size_t len, struct sockaddr_storage *out)
{
	struct sockaddr_storage top, bare;
	bool have_top = false, have_bare = false;
	size_t end = perimeter_from_len(v, len);
	int depth = 0;

	for (size_t i = 0; i < end; i++) {
		if (v[i] == '(') {
			const char *close = memchr(v + i + 1, ')', end - i - 1);

			depth++;
			if (depth == 1 && !have_bare && close != NULL) {
				const char *s = v + i + 1;
				size_t n = (size_t)(close - s);

				while (n > 0 && isspace((unsigned char)*s)) {
					s++;
					n--;
				}
				while (n > 0 && isspace((unsigned char)s[n - 1]))
					n--;
				have_bare = perimeter_parse_addr(s, n, &bare);
			}
		} else if (v[i] == ')' && depth > 0) {
			depth--;
		} else if (v[i] == '[') {
			const char *close = memchr(v + i + 1, ']', end - i - 1);
			struct sockaddr_storage ss;

			if (close == NULL)
				break;
			if (perimeter_parse_addr(v + i + 1, (size_t)(close - v - i - 1), &ss)) {
				if (depth > 0) {
					*out = ss;
					return true;
				}
				if (!have_top) {
					top = ss;
					have_top = true;
				}
			}
			i = (size_t)(close - v);
		}
	}
	if (have_top)
		*out = top;
	else if (have_bare)
		*out = bare;
	return have_top || have_bare;
}

/* A HELO name we pass on to SPF: a host name or an address literal, nothing else. */
static bool perimeter_helo_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' ||
	       c == ':';
}

/* The name at s, up to a blank or a parenthesis, into helo if it can be a HELO name. */
static bool perimeter_copy_helo(const char *s, const char *end, char *helo, size_t helolen)
{
	size_t n = 0;

	while (s + n < end && !isspace((unsigned char)s[n]) && s[n] != '(' && s[n] != ')')
		n++;
	if (n == 0 || n >= helolen)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!perimeter_helo_char(s[i]))
			return false;
	}
	memcpy(helo, s, n);
	helo[n] = '\0';
	return true;
}

/*
 * The HELO name of one unfolded Received value's "from" part: where the
 * relay labels it ("helo=x", "(HELO x)") that wins, since the name after
 * "from" is then the reverse DNS name; "" when there is none.
 */
static void perimeter_hop_helo(const char *v, size_t len, char *helo, size_t helolen)
{
	size_t end = perimeter_from_len(v, len);
	const char *p = v, *stop = v + end;

	helo[0] = '\0';
	for (size_t i = 0; i + PERIMETER_HELO_LABEL_LEN < end; i++) {
		if ((strncasecmp(v + i, "helo=", PERIMETER_HELO_LABEL_LEN) == 0 ||
		     (strncasecmp(v + i, "HELO ", PERIMETER_HELO_LABEL_LEN) == 0 && i > 0 && v[i - 1] == '(')) &&
		    perimeter_copy_helo(v + i + PERIMETER_HELO_LABEL_LEN, stop, helo, helolen))
			return;
	}
	while (p < stop && isspace((unsigned char)*p))
		p++;
	if (stop - p < 5 || strncasecmp(p, "from", 4) != 0 || !isspace((unsigned char)p[4]))
		return;
	for (p += 5; p < stop && isspace((unsigned char)*p); p++)
		;
	perimeter_copy_helo(p, stop, helo, helolen);
}

/* Unfold the value of the header at h (name included) into buf; returns where the next header starts. */
static const char *perimeter_unfold(const char *h, const char *end, char *buf, size_t buflen,
				    size_t *outlen)
{
	size_t n = 0;
	const char *p = h;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		size_t l = (size_t)(line_end - p);

		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (n + l + 1 < buflen) {
			if (n > 0)
				buf[n++] = ' ';
			memcpy(buf + n, p, l);
			n += l;
		}
		p = nl ? nl + 1 : end;
		if (p >= end || (*p != ' ' && *p != '\t'))
			break;
	}
	*outlen = n;
	return p;
}

int perimeter_find_client(const char *headers, size_t len, const struct cidr_list *relays,
			  struct sockaddr_storage *out, char *helo, size_t helolen)
{
	const char *p, *end;
	char buf[PERIMETER_HEADER_MAX];
	unsigned hops = 0;

	if (headers == NULL)
		return 0;
	p = headers;
	end = headers + len;
	while (p < end && *p != '\r' && *p != '\n' && hops < PERIMETER_MAX_HOPS) {
		size_t n;
		struct sockaddr_storage ss;

		p = perimeter_unfold(p, end, buf, sizeof(buf), &n);
		if (n < 9 || strncasecmp(buf, "Received:", 9) != 0)
			continue;
		hops++;
		if (!perimeter_hop_client(buf + 9, n - 9, &ss))
			continue;
		if (!cidr_list_contains(relays, (const struct sockaddr *)&ss)) {
			*out = ss;
			if (helo != NULL)
				perimeter_hop_helo(buf + 9, n - 9, helo, helolen);
			return 1;
		}
	}
	return 0;
}

int policy_perimeter_build(struct policy_build *b)
{
	if (b->cfg->perimeter_relays.count > 0)
		log_debug("perimeter: %zu relay ranges; the session judges the first untrusted Received hop",
			  b->cfg->perimeter_relays.count);
	return 0;
}
