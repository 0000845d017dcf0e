/*
 * SPF without DNS: the record parser (RFC 7208 4.6, 5, 6, 12 ABNF) and
 * the macro expander (RFC 7208 7). Both are pure functions of their input
 * so that the fuzzer and the unit tests can drive them directly.
 */
#include "dns/spf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define SPF_MACRO_PARTS_MAX 128   /* RFC 7208 7.3: at least 128 parts */

bool spf_record_is_spf1(const char *text, size_t len)
{
	return len >= 6 && strncasecmp(text, "v=spf1", 6) == 0 && (len == 6 || text[6] == ' ');
}

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_macro_letter(int c, bool explain)
{
	if (c == '\0')
		return false;
	c = tolower((unsigned char)c);
	if (strchr("slodiphv", c) != NULL)
		return true;
	return explain && strchr("crt", c) != NULL;
}

static bool is_delimiter(int c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/*
 * Walk one "%..." macro at s (s[0] == '%'). Returns its length, or 0 on a
 * syntax error. *expand is set when it is a "%{...}" expansion.
 */
static size_t macro_token(const char *s, bool explain, bool *expand)
{
	size_t i = 2, digits = 0;
	unsigned long value = 0;

	*expand = false;
	if (s[1] == '%' || s[1] == '_' || s[1] == '-')
		return 2;
	if (s[1] != '{' || !is_macro_letter(s[2], explain))
		return 0;
	i = 3;
	while (is_digit(s[i])) {
		if (value < 100000)
			value = value * 10 + (unsigned long)(s[i] - '0');
		digits++;
		i++;
	}
	if (digits > 0 && value == 0)
		return 0;
	if (s[i] == 'r' || s[i] == 'R')
		i++;
	while (is_delimiter(s[i]))
		i++;
	if (s[i] != '}')
		return 0;
	*expand = true;
	return i + 1;
}

/* Syntax of a macro-string; *ends_with_expand tells domain-end checks. */
static bool macro_scan(const char *spec, size_t len, bool explain, bool *ends_with_expand)
{
	size_t i = 0;
	bool expand = false;

	while (i < len) {
		unsigned char c = (unsigned char)spec[i];

		if (c == '%') {
			size_t n = macro_token(spec + i, explain, &expand);

			if (n == 0 || i + n > len)
				return false;
			i += n;
			continue;
		}
		if (c < 0x20 || c > 0x7e || (c == ' ' && !explain))
			return false;
		expand = false;
		i++;
	}
	if (ends_with_expand != NULL)
		*ends_with_expand = expand;
	return true;
}

bool spf_macro_valid(const char *spec, bool explain)
{
	return macro_scan(spec, strlen(spec), explain, NULL);
}

bool spf_macro_uses_p(const char *spec)
{
	for (const char *p = spec; (p = strchr(p, '%')) != NULL; p++) {
		if (p[1] == '{' && (p[2] == 'p' || p[2] == 'P'))
			return true;
		if (p[1] != '\0')
			p++;
	}
	return false;
}

/* RFC 7208 12: toplabel = (*alphanum ALPHA *alphanum) / (1*alphanum "-" *(alphanum / "-") alphanum). */
static bool toplabel_valid(const char *s, size_t len)
{
	bool alpha = false, hyphen = false;

	if (len == 0 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '-')
			hyphen = true;
		else if (is_alpha(s[i]))
			alpha = true;
		else if (!is_digit(s[i]))
			return false;
	}
	return alpha || hyphen;
}

/* domain-spec = macro-string domain-end; domain-end = ("." toplabel ["."]) / macro-expand */
static bool domain_spec_valid(const char *s, size_t len)
{
	bool ends_with_expand = false;
	size_t end = len, dot;

	if (len == 0 || !macro_scan(s, len, false, &ends_with_expand))
		return false;
	if (ends_with_expand)
		return true;
	if (s[end - 1] == '.')
		end--;
	for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--)
		;
	if (dot == 0)
		return false;
	return toplabel_valid(s + dot, end - dot);
}

/* "0" or a number without leading zero, at most max; -1 if malformed. */
static int cidr_parse(const char *s, size_t len, int max)
{
	int v = 0;

	if (len == 0 || len > 3 || (s[0] == '0' && len > 1))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* Whether s[from..end) is "/" followed by one or more digits. */
static bool is_slash_digits(const char *s, size_t from, size_t end)
{
	if (from >= end || s[from] != '/' || from + 1 == end)
		return false;
	for (size_t i = from + 1; i < end; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

static size_t last_slash(const char *s, size_t end)
{
	while (end > 0 && s[end - 1] != '/')
		end--;
	return end == 0 ? (size_t)-1 : end - 1;
}

/*
 * Split a trailing dual-cidr-length ("/24", "//64", "/24//64") off s;
 * returns the length left for the domain-spec, or -1 on a bad length.
 */
static long dual_cidr_split(const char *s, size_t len, int *c4, int *c6)
{
	size_t end = len, p = last_slash(s, end);

	if (p == (size_t)-1 || !is_slash_digits(s, p, end))
		return (long)end;
	if (p > 0 && s[p - 1] == '/') {
		*c6 = cidr_parse(s + p + 1, end - p - 1, 128);
		if (*c6 < 0)
			return -1;
		end = p - 1;
		p = last_slash(s, end);
		if (p == (size_t)-1 || !is_slash_digits(s, p, end))
			return (long)end;
	}
	*c4 = cidr_parse(s + p + 1, end - p - 1, 32);
	if (*c4 < 0)
		return -1;
	return (long)p;
}

static int parse_ip_mech(struct spf_mech *m, const char *arg, int family,
			 char *err, size_t errlen)
{
	const char *slash = strchr(arg, '/');
	size_t netlen = slash ? (size_t)(slash - arg) : strlen(arg);
	char buf[INET6_ADDRSTRLEN + 1];
	int prefix = -1;

	if (netlen == 0 || netlen >= sizeof(buf)) {
		snprintf(err, errlen, "bad network in \"%s\"", m->text);
		return -1;
	}
	memcpy(buf, arg, netlen);
	buf[netlen] = '\0';
	if (inet_pton(family, buf, m->net) != 1) {
		snprintf(err, errlen, "bad address in \"%s\"", m->text);
		return -1;
	}
	if (slash != NULL) {
		prefix = cidr_parse(slash + 1, strlen(slash + 1), family == AF_INET ? 32 : 128);
		if (prefix < 0) {
			snprintf(err, errlen, "bad prefix length in \"%s\"", m->text);
			return -1;
		}
	}
	if (family == AF_INET)
		m->cidr4 = prefix;
	else
		m->cidr6 = prefix;
	return 0;
}

struct mech_name {
	const char *name;
	enum spf_mech_type type;
	bool takes_domain;       /* ":" domain-spec allowed */
	bool needs_domain;       /* ... and required */
	bool takes_cidr;
};

static const struct mech_name mech_names[] = {
	{ "all", SPF_MECH_ALL, false, false, false },
	{ "include", SPF_MECH_INCLUDE, true, true, false },
	{ "a", SPF_MECH_A, true, false, true },
	{ "mx", SPF_MECH_MX, true, false, true },
	{ "ptr", SPF_MECH_PTR, true, false, false },
	{ "ip4", SPF_MECH_IP4, false, false, false },
	{ "ip6", SPF_MECH_IP6, false, false, false },
	{ "exists", SPF_MECH_EXISTS, true, true, false },
};

static const struct mech_name *mech_lookup(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(mech_names) / sizeof(mech_names[0]); i++)
		if (strlen(mech_names[i].name) == len && strncasecmp(mech_names[i].name, s, len) == 0)
			return &mech_names[i];
	return NULL;
}

/* The part of a mechanism after its name: ":" domain-spec and/or cidr. */
static int parse_mech_args(struct spf_mech *m, const struct mech_name *mn, const char *rest,
			   char *err, size_t errlen)
{
	const char *arg = rest;
	long speclen;
	size_t len;

	if (m->type == SPF_MECH_IP4 || m->type == SPF_MECH_IP6) {
		if (rest[0] != ':') {
			snprintf(err, errlen, "\"%s\" needs an address", m->text);
			return -1;
		}
		return parse_ip_mech(m, rest + 1, m->type == SPF_MECH_IP4 ? AF_INET : AF_INET6,
				     err, errlen);
	}
	if (rest[0] == ':') {
		if (!mn->takes_domain)
			goto bad;
		arg = rest + 1;
	} else if (rest[0] == '/') {
		if (!mn->takes_cidr)
			goto bad;
	} else if (rest[0] != '\0') {
		goto bad;
	}
	len = strlen(arg);
	speclen = (long)len;
	if (mn->takes_cidr) {
		speclen = dual_cidr_split(arg, len, &m->cidr4, &m->cidr6);
		if (speclen < 0) {
			snprintf(err, errlen, "bad prefix length in \"%s\"", m->text);
			return -1;
		}
	}
	if (rest[0] == ':') {
		if (!domain_spec_valid(arg, (size_t)speclen)) {
			snprintf(err, errlen, "bad domain in \"%s\"", m->text);
			return -1;
		}
		m->domain_spec = xstrndup(arg, (size_t)speclen);
	} else if (speclen != 0) {
		goto bad;
	}
	if (mn->needs_domain && m->domain_spec == NULL) {
		snprintf(err, errlen, "\"%s\" needs a domain", m->text);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "malformed mechanism \"%s\"", m->text);
	return -1;
}

static int parse_mechanism(struct spf_record *rec, const char *term, char *err, size_t errlen)
{
	struct spf_mech *m;
	const struct mech_name *mn;
	const char *name = term;
	size_t n = 0;

	rec->mechs = xreallocarray(rec->mechs, rec->count + 1, sizeof(*rec->mechs));
	m = &rec->mechs[rec->count];
	memset(m, 0, sizeof(*m));
	m->text = xstrdup(term);
	m->cidr4 = m->cidr6 = -1;
	rec->count++;
	switch (term[0]) {
	case '+': m->qualifier = SPF_PASS; name++; break;
	case '-': m->qualifier = SPF_FAIL; name++; break;
	case '~': m->qualifier = SPF_SOFTFAIL; name++; break;
	case '?': m->qualifier = SPF_NEUTRAL; name++; break;
	default: m->qualifier = SPF_PASS; break;
	}
	while (is_alnum(name[n]))
		n++;
	mn = mech_lookup(name, n);
	if (mn == NULL) {
		snprintf(err, errlen, "unknown mechanism \"%s\"", term);
		return -1;
	}
	m->type = mn->type;
	return parse_mech_args(m, mn, name + n, err, errlen);
}

/* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ); 0 if term is no modifier. */
static size_t modifier_name_len(const char *term)
{
	size_t n = 0;

	if (!is_alpha(term[0]))
		return 0;
	while (is_alnum(term[n]) || term[n] == '-' || term[n] == '_' || term[n] == '.')
		n++;
	return term[n] == '=' ? n : 0;
}

static int parse_modifier(struct spf_record *rec, const char *term, size_t namelen,
			  char *err, size_t errlen)
{
	const char *value = term + namelen + 1;
	char **slot = NULL;

	if (namelen == 8 && strncasecmp(term, "redirect", 8) == 0)
		slot = &rec->redirect;
	else if (namelen == 3 && strncasecmp(term, "exp", 3) == 0)
		slot = &rec->exp;
	if (slot == NULL) {
		if (!spf_macro_valid(value, false)) {
			snprintf(err, errlen, "bad macro in \"%s\"", term);
			return -1;
		}
		return 0;
	}
	if (*slot != NULL) {
		snprintf(err, errlen, "modifier \"%.*s\" given twice", (int)namelen, term);
		return -1;
	}
	if (!domain_spec_valid(value, strlen(value))) {
		snprintf(err, errlen, "bad domain in \"%s\"", term);
		return -1;
	}
	*slot = xstrdup(value);
	return 0;
}

struct spf_record *spf_record_parse(const char *text, char *err, size_t errlen)
{
	struct spf_record *rec;
	size_t len = strlen(text), i;
	char *term;

	if (!spf_record_is_spf1(text, len)) {
		snprintf(err, errlen, "not a v=spf1 record");
		return NULL;
	}
	if (len > SPF_RECORD_MAX) {
		snprintf(err, errlen, "record longer than %d bytes", SPF_RECORD_MAX);
		return NULL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c > 0x7e) {
			snprintf(err, errlen, "record has a non-printable or non-ASCII byte 0x%02x", c);
			return NULL;
		}
	}
	rec = xcalloc(1, sizeof(*rec));
	term = xmalloc(len + 1);
	i = 6;
	while (i < len) {
		size_t start, n, namelen;
		int rc;

		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && text[i] != ' ')
			i++;
		n = i - start;
		memcpy(term, text + start, n);
		term[n] = '\0';
		namelen = modifier_name_len(term);
		if (namelen > 0)
			rc = parse_modifier(rec, term, namelen, err, errlen);
		else
			rc = parse_mechanism(rec, term, err, errlen);
		if (rc < 0) {
			free(term);
			spf_record_free(rec);
			return NULL;
		}
	}
	free(term);
	return rec;
}

void spf_record_free(struct spf_record *rec)
{
	if (rec == NULL)
		return;
	for (size_t i = 0; i < rec->count; i++) {
		free(rec->mechs[i].domain_spec);
		free(rec->mechs[i].text);
	}
	free(rec->mechs);
	free(rec->redirect);
	free(rec->exp);
	free(rec);
}

int spf_ip_from_sockaddr(struct spf_ip *ip, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		ip->family = AF_INET;
		memcpy(ip->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -1;
	memcpy(ip->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	ip->family = AF_INET6;
	if (memcmp(ip->addr, mapped, sizeof(mapped)) == 0) {
		memmove(ip->addr, ip->addr + 12, 4);
		memset(ip->addr + 4, 0, 12);
		ip->family = AF_INET;
	}
	return 0;
}

bool spf_ip_in_net(const struct spf_ip *ip, const unsigned char *net, int net_family, int prefix)
{
	int bits = net_family == AF_INET ? 32 : 128;
	int whole, rest;

	if (ip->family != net_family)
		return false;
	if (prefix < 0 || prefix > bits)
		prefix = bits;
	whole = prefix / 8;
	rest = prefix % 8;
	if (memcmp(ip->addr, net, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((ip->addr[whole] ^ net[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

/* The raw value of one macro letter, before transformers. */
static int macro_value(int letter, const struct spf_macro_env *env, struct strbuf *v)
{
	const struct spf_ip *ip = env->ip;
	char addr[INET6_ADDRSTRLEN];

	switch (tolower(letter)) {
	case 's': return strbuf_appends(v, env->sender);
	case 'l': return strbuf_appends(v, env->local);
	case 'o': return strbuf_appends(v, env->sender_domain);
	case 'd': return strbuf_appends(v, env->domain);
	case 'h': return strbuf_appends(v, env->helo);
	case 'p': return strbuf_appends(v, env->validated ? env->validated : "unknown");
	case 'r': return strbuf_appends(v, env->receiver ? env->receiver : "unknown");
	case 't': return strbuf_appendf(v, "%lld", (long long)env->now);
	case 'v': return strbuf_appends(v, ip->family == AF_INET ? "in-addr" : "ip6");
	case 'i':
		if (ip->family == AF_INET)
			return strbuf_appendf(v, "%u.%u.%u.%u", ip->addr[0], ip->addr[1],
					      ip->addr[2], ip->addr[3]);
		for (int i = 0; i < 16; i++)
			if (strbuf_appendf(v, "%s%X.%X", i ? "." : "", ip->addr[i] >> 4,
					   ip->addr[i] & 0xf) < 0)
				return -1;
		return 0;
	case 'c':
		if (inet_ntop(ip->family, ip->addr, addr, sizeof(addr)) == NULL)
			return -1;
		return strbuf_appends(v, addr);
	}
	return -1;
}

struct macro_part {
	const char *s;
	size_t len;
};

/*
 * Apply transformers: split on the delimiters, reverse, keep the rightmost
 * `keep` parts, join with dots.
 */
static int macro_transform(const struct strbuf *value, const char *delims, size_t ndelims,
			   unsigned long keep, bool reverse, struct strbuf *out)
{
	struct macro_part *parts;
	size_t n = 0, first, start = 0;
	int rc = 0;

	parts = xcalloc(value->len + 1, sizeof(*parts));
	for (size_t i = 0; i <= value->len; i++) {
		if (i < value->len && memchr(delims, value->data[i], ndelims) == NULL)
			continue;
		parts[n].s = value->data + start;
		parts[n].len = i - start;
		n++;
		start = i + 1;
	}
	if (reverse)
		for (size_t i = 0; i < n / 2; i++) {
			struct macro_part t = parts[i];

			parts[i] = parts[n - 1 - i];
			parts[n - 1 - i] = t;
		}
	first = (keep > 0 && keep < n) ? n - keep : 0;
	for (size_t i = first; i < n && rc == 0; i++) {
		if (i > first)
			rc = strbuf_append(out, ".", 1);
		if (rc == 0)
			rc = strbuf_append(out, parts[i].s, parts[i].len);
	}
	free(parts);
	return rc;
}

/* RFC 3986 unreserved characters stay, all else becomes %XX. */
static int url_escape(const char *s, size_t len, struct strbuf *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			if (strbuf_append(out, s + i, 1) < 0)
				return -1;
		} else if (strbuf_appendf(out, "%%%02X", c) < 0) {
			return -1;
		}
	}
	return 0;
}

/* One "%{...}" at spec (already syntax-checked), appended to out. */
static int macro_expand_one(const char *spec, size_t toklen, const struct spf_macro_env *env,
			    struct strbuf *out)
{
	struct strbuf value, transformed;
	unsigned long keep = 0;
	size_t i = 3;
	bool reverse = false;
	int letter = spec[2], rc;
	const char *delims;

	while (is_digit(spec[i])) {
		if (keep < SPF_MACRO_PARTS_MAX * 1000)
			keep = keep * 10 + (unsigned long)(spec[i] - '0');
		i++;
	}
	if (spec[i] == 'r' || spec[i] == 'R') {
		reverse = true;
		i++;
	}
	delims = spec + i;
	strbuf_init(&value, SPF_MACRO_MAX);
	strbuf_init(&transformed, SPF_MACRO_MAX);
	rc = macro_value(letter, env, &value);
	if (rc == 0)
		rc = macro_transform(&value, toklen - 1 - i ? delims : ".",
				     toklen - 1 - i ? toklen - 1 - i : 1, keep, reverse, &transformed);
	if (rc == 0) {
		if (isupper((unsigned char)letter))
			rc = url_escape(transformed.data ? transformed.data : "", transformed.len, out);
		else
			rc = strbuf_append(out, transformed.data ? transformed.data : "", transformed.len);
	}
	strbuf_free(&value);
	strbuf_free(&transformed);
	return rc;
}

int spf_macro_expand(const char *spec, const struct spf_macro_env *env, bool explain,
		     struct strbuf *out)
{
	size_t len = strlen(spec), i = 0;

	if (!macro_scan(spec, len, explain, NULL))
		return -1;
	while (i < len) {
		const char *pct = memchr(spec + i, '%', len - i);
		size_t lit = pct ? (size_t)(pct - (spec + i)) : len - i, n;
		bool expand;

		if (lit > 0 && strbuf_append(out, spec + i, lit) < 0)
			return -1;
		i += lit;
		if (pct == NULL)
			break;
		n = macro_token(spec + i, explain, &expand);
		if (expand) {
			if (macro_expand_one(spec + i, n, env, out) < 0)
				return -1;
		} else if (strbuf_appends(out, spec[i + 1] == '%' ? "%" :
					  spec[i + 1] == '_' ? " " : "%20") < 0) {
			return -1;
		}
		i += n;
	}
	return 0;
}

int spf_expand_domain(const char *spec, const struct spf_macro_env *env,
		      char out[SPF_DOMAIN_MAX + 1])
{
	struct strbuf sb;
	const char *s;
	size_t len;

	strbuf_init(&sb, SPF_MACRO_MAX);
	if (spf_macro_expand(spec, env, false, &sb) < 0) {
		strbuf_free(&sb);
		return -1;
	}
	s = sb.data ? sb.data : "";
	len = sb.len;
	if (len > 0 && s[len - 1] == '.')
		len--;
	while (len > SPF_DOMAIN_MAX) {
		const char *dot = memchr(s, '.', len);

		if (dot == NULL) {
			len = 0;
			break;
		}
		len -= (size_t)(dot + 1 - s);
		s = dot + 1;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	strbuf_free(&sb);
	return 0;
}

bool spf_domain_queryable(const char *name)
{
	size_t len = strlen(name), label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > SPF_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.') {
			if (++label > 63)
				return false;
			continue;
		}
		if (label == 0)
			return false;
		label = 0;
	}
	return label > 0;
}
