/*
 * SMTP command-line parsing. Everything here works on one NUL-terminated
 * line and static reply texts, so the session can call it on untrusted
 * input without any allocation or state to clean up.
 */
#include "smtp/smtp_parse.h"

#include <arpa/inet.h>
#include <string.h>

#include "queue/envelope.h"

/* Replies. Codes follow RFC 5321 4.2, RFC 3463 and the extension RFCs. */
static const struct smtp_error err_nul = { 500, "5.5.2", "Syntax error: NUL byte in command" };
static const struct smtp_error err_control = { 500, "5.5.2", "Syntax error: control character in command" };
static const struct smtp_error err_no_arg = { 501, "5.5.4", "Syntax error: no arguments allowed" };
static const struct smtp_error err_helo_syntax = { 501, "5.5.4", "Syntax: EHLO hostname" };
static const struct smtp_error err_helo_long = { 501, "5.5.4", "Host name too long" };
static const struct smtp_error err_mail_syntax = { 501, "5.5.4", "Syntax: MAIL FROM:<address>" };
static const struct smtp_error err_rcpt_syntax = { 501, "5.5.4", "Syntax: RCPT TO:<address>" };
static const struct smtp_error err_bdat_syntax = { 501, "5.5.4", "Syntax: BDAT size [LAST]" };
static const struct smtp_error err_param_syntax = { 501, "5.5.4", "Syntax error in parameters" };
static const struct smtp_error err_param_unknown = { 555, "5.5.4", "Unsupported parameter" };
static const struct smtp_error err_param_dup = { 501, "5.5.4", "Duplicate parameter" };
static const struct smtp_error err_size_value = { 501, "5.5.4", "Bad SIZE value" };
static const struct smtp_error err_size_overflow = { 552, "5.3.4", "Message size exceeds fixed maximum message size" };
static const struct smtp_error err_body_value = { 501, "5.5.4", "Bad BODY value" };
static const struct smtp_error err_smtputf8_value = { 501, "5.5.4", "SMTPUTF8 takes no value" };
static const struct smtp_error err_ret_value = { 501, "5.5.4", "Bad RET value" };
static const struct smtp_error err_envid_value = { 501, "5.5.4", "Bad ENVID value" };
static const struct smtp_error err_auth_value = { 501, "5.5.4", "Bad AUTH value" };
static const struct smtp_error err_notify_value = { 501, "5.5.4", "Bad NOTIFY value" };
static const struct smtp_error err_notify_never = { 501, "5.5.4", "NOTIFY=NEVER cannot be combined with other values" };
static const struct smtp_error err_orcpt_value = { 501, "5.5.4", "Bad ORCPT value" };
static const struct smtp_error err_non_ascii = { 553, "5.6.7", "Non-ASCII address requires SMTPUTF8" };
static const struct smtp_error err_bad_utf8 = { 553, "5.6.7", "Address is not valid UTF-8" };
static const struct smtp_error err_sender_syntax = { 553, "5.1.7", "Bad sender address syntax" };
static const struct smtp_error err_sender_long = { 501, "5.1.7", "Sender address too long" };
static const struct smtp_error err_sender_local_long = { 501, "5.1.7", "Sender local part too long" };
static const struct smtp_error err_rcpt_addr_syntax = { 553, "5.1.3", "Bad recipient address syntax" };
static const struct smtp_error err_rcpt_long = { 501, "5.1.3", "Recipient address too long" };
static const struct smtp_error err_rcpt_local_long = { 501, "5.1.3", "Recipient local part too long" };

static int parse_fail(struct smtp_error *err, const struct smtp_error *reply)
{
	if (err != NULL)
		*err = *reply;
	return -1;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5321 atext (ASCII part). */
static bool is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * Locale-independent: bytes >= 0x80 must never fold. Stops at the first
 * difference, so a shorter NUL-terminated a is never read past its end.
 */
static bool ascii_caseeq_n(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
			return false;
	}
	return true;
}

/* a (length n, not terminated) equals the NUL-terminated word, ignoring case. */
static bool word_is(const char *a, size_t n, const char *word)
{
	return strlen(word) == n && ascii_caseeq_n(a, word, n);
}

static const char *skip_space(const char *p)
{
	while (is_space((unsigned char)*p))
		p++;
	return p;
}

static bool has_non_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return true;
	}
	return false;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], cp, min;
		size_t len;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

enum verb_arg { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

static const struct verb_spec {
	const char *name;
	enum smtp_verb verb;
	enum verb_arg arg;
	struct smtp_error missing;   /* reply when a required argument is absent */
} verb_specs[] = {
	{ "HELO", SMTP_VERB_HELO, ARG_REQUIRED, { 501, "5.5.4", "Syntax: HELO hostname" } },
	{ "EHLO", SMTP_VERB_EHLO, ARG_REQUIRED, { 501, "5.5.4", "Syntax: EHLO hostname" } },
	{ "MAIL", SMTP_VERB_MAIL, ARG_REQUIRED, { 501, "5.5.4", "Syntax: MAIL FROM:<address>" } },
	{ "RCPT", SMTP_VERB_RCPT, ARG_REQUIRED, { 501, "5.5.4", "Syntax: RCPT TO:<address>" } },
	{ "DATA", SMTP_VERB_DATA, ARG_NONE, { 0, NULL, NULL } },
	{ "BDAT", SMTP_VERB_BDAT, ARG_REQUIRED, { 501, "5.5.4", "Syntax: BDAT size [LAST]" } },
	{ "RSET", SMTP_VERB_RSET, ARG_NONE, { 0, NULL, NULL } },
	{ "NOOP", SMTP_VERB_NOOP, ARG_OPTIONAL, { 0, NULL, NULL } },
	{ "QUIT", SMTP_VERB_QUIT, ARG_NONE, { 0, NULL, NULL } },
	{ "HELP", SMTP_VERB_HELP, ARG_OPTIONAL, { 0, NULL, NULL } },
	{ "VRFY", SMTP_VERB_VRFY, ARG_REQUIRED, { 501, "5.5.4", "Syntax: VRFY address" } },
	{ "EXPN", SMTP_VERB_EXPN, ARG_REQUIRED, { 501, "5.5.4", "Syntax: EXPN list" } },
	{ "STARTTLS", SMTP_VERB_STARTTLS, ARG_NONE, { 0, NULL, NULL } },
	{ "AUTH", SMTP_VERB_AUTH, ARG_REQUIRED, { 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]" } },
};

static const struct verb_spec *verb_lookup(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(verb_specs) / sizeof(verb_specs[0]); i++) {
		if (word_is(name, len, verb_specs[i].name))
			return &verb_specs[i];
	}
	return NULL;
}

/*
 * Control characters are rejected for the whole line because nothing in
 * SMTP carries them and they are how log and header injection starts.
 * Trailing blanks after an argument-less verb are tolerated: many clients
 * send "DATA " and refusing them helps no one.
 */
int smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd,
		       struct smtp_error *err)
{
	const struct verb_spec *spec;
	const char *arg;
	size_t vlen = 0;

	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->arg = line + len;
	if (memchr(line, '\0', len) != NULL)
		return parse_fail(err, &err_nul);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return parse_fail(err, &err_control);
	}
	while (vlen < len && !is_space((unsigned char)line[vlen]))
		vlen++;
	arg = vlen < len ? line + vlen + 1 : line + len;
	cmd->arg = arg;
	if ((spec = verb_lookup(line, vlen)) == NULL)
		return 0;
	cmd->verb = spec->verb;
	if (*skip_space(arg) == '\0') {
		cmd->arg = line + len;
		if (spec->arg == ARG_REQUIRED)
			return parse_fail(err, &spec->missing);
	} else if (spec->arg == ARG_NONE) {
		return parse_fail(err, &err_no_arg);
	}
	return 0;
}

/*
 * RFC 5321 Domain: labels of letters, digits and inner hyphens. With utf8,
 * bytes >= 0x80 count as letters (U-labels, RFC 6531; the caller checks
 * the UTF-8 itself). underscore is the HELO leniency for Windows hosts.
 */
static bool domain_valid(const char *s, size_t n, bool utf8, bool underscore)
{
	size_t label = 0;

	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return false;
		} else if (!is_alnum(c) && !(utf8 && c >= 0x80) && !(underscore && c == '_')) {
			return false;
		}
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

/* A bare IPv4 or IPv6 address (the text without brackets). */
static bool ip_valid(const char *s, size_t n, int family)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char addr[sizeof(struct in6_addr)];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(family, buf, addr) == 1;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]"; general address literals are refused. */
static bool address_literal_valid(const char *s, size_t n)
{
	if (n < 3 || s[0] != '[' || s[n - 1] != ']')
		return false;
	s++;
	n -= 2;
	if (n > 5 && ascii_caseeq_n(s, "IPv6:", 5))
		return ip_valid(s + 5, n - 5, AF_INET6);
	return ip_valid(s, n, AF_INET);
}

static bool host_valid(const char *s, size_t n, bool utf8)
{
	if (n > 0 && s[0] == '[')
		return address_literal_valid(s, n);
	return domain_valid(s, n, utf8, false);
}

int smtp_parse_helo(const char *arg, char *out, size_t outlen, struct smtp_error *err)
{
	const char *s = skip_space(arg);
	size_t n = strlen(s);
	bool ok;

	while (n > 0 && is_space((unsigned char)s[n - 1]))
		n--;
	if (n == 0 || memchr(s, ' ', n) != NULL || memchr(s, '\t', n) != NULL)
		return parse_fail(err, &err_helo_syntax);
	if (n > SMTP_DOMAIN_MAX || n >= outlen)
		return parse_fail(err, &err_helo_long);
	if (s[0] == '[')
		ok = address_literal_valid(s, n);
	else
		ok = domain_valid(s, n, false, true) || ip_valid(s, n, AF_INET6);
	if (!ok)
		return parse_fail(err, &err_helo_syntax);
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/*
 * Length of the Local-part at the start of s (Dot-string or Quoted-string),
 * or -1 if it is malformed. RFC 6531 adds UTF8-non-ascii to atext and qtext.
 */
static long local_part_scan(const char *s, size_t n, bool utf8)
{
	size_t i = 0, atom = 0;

	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n && s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\') {
				if (i + 1 >= n || (unsigned char)s[i + 1] < 32 || (unsigned char)s[i + 1] > 126)
					return -1;
				i++;
			} else if (!(c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) ||
				     (utf8 && c >= 0x80))) {
				return -1;
			}
		}
		return i < n ? (long)i + 1 : -1;
	}
	for (; i < n && s[i] != '@'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (atom == 0)
				return -1;
			atom = 0;
		} else if (is_atext(c) || (utf8 && c >= 0x80)) {
			atom++;
		} else {
			return -1;
		}
	}
	return atom > 0 ? (long)i : -1;
}

enum mailbox_status {
	MAILBOX_OK,
	MAILBOX_SYNTAX,
	MAILBOX_TOO_LONG,
	MAILBOX_LOCAL_LONG,
	MAILBOX_NON_ASCII,
	MAILBOX_BAD_UTF8,
};

/*
 * Why "local@domain" is not a valid Mailbox, so MAIL and RCPT can word the
 * reply. Within the path limit the domain can never exceed its own limit.
 */
static enum mailbox_status mailbox_check(const char *s, size_t n, bool utf8)
{
	long local;

	if (n > SMTP_PATH_MAX)
		return MAILBOX_TOO_LONG;
	if (has_non_ascii(s, n)) {
		if (!utf8)
			return MAILBOX_NON_ASCII;
		if (!utf8_valid(s, n))
			return MAILBOX_BAD_UTF8;
	}
	if ((local = local_part_scan(s, n, utf8)) < 0 || (size_t)local >= n || s[local] != '@')
		return MAILBOX_SYNTAX;
	if (local > SMTP_LOCAL_MAX)
		return MAILBOX_LOCAL_LONG;
	if (!host_valid(s + local + 1, n - (size_t)local - 1, utf8))
		return MAILBOX_SYNTAX;
	return MAILBOX_OK;
}

bool smtp_valid_mailbox(const char *addr, bool utf8_allowed)
{
	size_t n = strlen(addr);

	if (word_is(addr, n, "postmaster"))
		return true;
	return mailbox_check(addr, n, utf8_allowed) == MAILBOX_OK;
}

/*
 * Find the end of "<...>" at s (s[0] == '<'). A quoted local part may
 * contain '>', so quotes are followed. Returns the byte after '>' or NULL.
 */
static const char *path_extract(const char *s, const char **content, size_t *clen)
{
	bool quoted = false;

	for (const char *p = s + 1; *p != '\0'; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == '>') {
			*content = s + 1;
			*clen = (size_t)(p - (s + 1));
			return p + 1;
		}
	}
	return NULL;
}

/*
 * Drop an RFC 5321 A-d-l ("@a,@b:") in front of the mailbox: source routes
 * are obsolete and must be ignored (RFC 5321 C), but a malformed one is
 * still a syntax error.
 */
static bool route_strip(const char **s, size_t *n, bool utf8)
{
	const char *p = *s, *end = *s + *n;

	if (*n == 0 || p[0] != '@')
		return true;
	for (;;) {
		const char *d;

		if (p >= end || *p != '@')
			return false;
		d = ++p;
		if (p < end && *p == '[') {
			const char *close = memchr(p, ']', (size_t)(end - p));

			if (close == NULL)
				return false;
			p = close + 1;
		} else {
			while (p < end && *p != ',' && *p != ':')
				p++;
		}
		if (!host_valid(d, (size_t)(p - d), utf8) || p >= end)
			return false;
		if (*p++ == ':')
			break;
		if (p[-1] != ',')
			return false;
	}
	*n = (size_t)(end - p);
	*s = p;
	return true;
}

/* The replies for one side of the transaction (sender or recipient). */
struct path_replies {
	const struct smtp_error *syntax;
	const struct smtp_error *too_long;
	const struct smtp_error *local_long;
};

static const struct path_replies sender_replies = {
	&err_sender_syntax, &err_sender_long, &err_sender_local_long,
};
static const struct path_replies rcpt_replies = {
	&err_rcpt_addr_syntax, &err_rcpt_long, &err_rcpt_local_long,
};

/*
 * Validate the text between the angle brackets and copy the mailbox (route
 * removed) into out, which holds SMTP_PATH_MAX + 1 bytes.
 */
static int path_check(const char *s, size_t n, bool utf8, bool null_ok, bool postmaster_ok,
		      const struct path_replies *replies, char *out, struct smtp_error *err)
{
	size_t raw = n;

	if (n > SMTP_PATH_MAX)
		return parse_fail(err, replies->too_long);
	if (!route_strip(&s, &n, utf8))
		return parse_fail(err, replies->syntax);
	if (n == 0 && (!null_ok || n != raw))
		return parse_fail(err, replies->syntax);
	if (n > 0 && !(postmaster_ok && word_is(s, n, "postmaster"))) {
		switch (mailbox_check(s, n, utf8)) {
		case MAILBOX_OK:
			break;
		case MAILBOX_SYNTAX:
			return parse_fail(err, replies->syntax);
		case MAILBOX_TOO_LONG:
			return parse_fail(err, replies->too_long);
		case MAILBOX_LOCAL_LONG:
			return parse_fail(err, replies->local_long);
		case MAILBOX_NON_ASCII:
			return parse_fail(err, &err_non_ascii);
		case MAILBOX_BAD_UTF8:
			return parse_fail(err, &err_bad_utf8);
		}
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/*
 * "FROM:" / "TO:" then optional blanks then "<path>", followed by nothing
 * or blanks. Returns the rest (the parameters) or NULL for a syntax error.
 */
static const char *path_locate(const char *arg, const char *prefix, const char **content, size_t *clen)
{
	size_t plen = strlen(prefix);
	const char *p, *rest;

	if (!ascii_caseeq_n(arg, prefix, plen))
		return NULL;
	p = skip_space(arg + plen);
	if (*p != '<' || (rest = path_extract(p, content, clen)) == NULL)
		return NULL;
	if (*rest != '\0' && !is_space((unsigned char)*rest))
		return NULL;
	return rest;
}

struct esmtp_param {
	const char *key;
	size_t keylen;
	const char *value;   /* NULL when the parameter has no "=value" */
	size_t valuelen;
};

/*
 * Next "keyword[=value]" (RFC 5321 esmtp-param; RFC 6531 allows UTF-8 in
 * values, which each known parameter then refuses as it sees fit).
 * Returns 1 with a parameter, 0 at the end, -1 on a syntax error.
 */
static int param_next(const char **pp, struct esmtp_param *prm)
{
	const char *p = skip_space(*pp);

	if (*p == '\0')
		return 0;
	prm->key = p;
	while (is_alnum((unsigned char)*p) || (*p == '-' && p != prm->key))
		p++;
	prm->keylen = (size_t)(p - prm->key);
	prm->value = NULL;
	prm->valuelen = 0;
	if (prm->keylen == 0)
		return -1;
	if (*p == '=') {
		prm->value = ++p;
		while (*p != '\0' && !is_space((unsigned char)*p)) {
			unsigned char c = (unsigned char)*p;

			if (c == '=' || c < 33 || c == 127)
				return -1;
			p++;
		}
		prm->valuelen = (size_t)(p - prm->value);
		if (prm->valuelen == 0)
			return -1;
	}
	if (*p != '\0' && !is_space((unsigned char)*p))
		return -1;
	*pp = p;
	return 1;
}

static bool param_is(const struct esmtp_param *prm, const char *word)
{
	return word_is(prm->key, prm->keylen, word);
}

static bool value_is(const struct esmtp_param *prm, const char *word)
{
	return word_is(prm->value, prm->valuelen, word);
}

/* Decimal of at most 20 digits; too large for 64 bits is a size problem, not syntax. */
static int parse_size_value(const char *s, size_t n, uint64_t *out, const struct smtp_error *bad,
			    struct smtp_error *err)
{
	uint64_t v = 0;
	bool overflow = false;

	if (n == 0 || n > 20)
		return parse_fail(err, bad);
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (!is_digit((unsigned char)s[i]))
			return parse_fail(err, bad);
		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	if (overflow)
		return parse_fail(err, &err_size_overflow);
	*out = v;
	return 0;
}

enum mail_param_bit {
	MAIL_SIZE = 1 << 0,
	MAIL_BODY = 1 << 1,
	MAIL_SMTPUTF8 = 1 << 2,
	MAIL_RET = 1 << 3,
	MAIL_ENVID = 1 << 4,
	MAIL_AUTH = 1 << 5,
};

static int mail_param_bit(const struct esmtp_param *prm)
{
	if (param_is(prm, "SIZE"))
		return MAIL_SIZE;
	if (param_is(prm, "BODY"))
		return MAIL_BODY;
	if (param_is(prm, "SMTPUTF8"))
		return MAIL_SMTPUTF8;
	if (param_is(prm, "RET"))
		return MAIL_RET;
	if (param_is(prm, "ENVID"))
		return MAIL_ENVID;
	if (param_is(prm, "AUTH"))
		return MAIL_AUTH;
	return 0;
}

static int mail_param_apply(const struct esmtp_param *prm, int bit, struct smtp_mail_args *out,
			    struct smtp_error *err)
{
	switch (bit) {
	case MAIL_SIZE:
		if (prm->value == NULL)
			return parse_fail(err, &err_size_value);
		if (parse_size_value(prm->value, prm->valuelen, &out->size, &err_size_value, err) < 0)
			return -1;
		out->has_size = true;
		return 0;
	case MAIL_BODY:
		if (prm->value != NULL && value_is(prm, "7BIT"))
			out->body = SMTP_BODY_7BIT;
		else if (prm->value != NULL && value_is(prm, "8BITMIME"))
			out->body = SMTP_BODY_8BITMIME;
		else if (prm->value != NULL && value_is(prm, "BINARYMIME"))
			out->body = SMTP_BODY_BINARYMIME;
		else
			return parse_fail(err, &err_body_value);
		return 0;
	case MAIL_SMTPUTF8:
		if (prm->value != NULL)
			return parse_fail(err, &err_smtputf8_value);
		out->smtputf8 = true;
		return 0;
	case MAIL_RET:
		if (prm->value != NULL && value_is(prm, "FULL"))
			out->ret = SMTP_RET_FULL;
		else if (prm->value != NULL && value_is(prm, "HDRS"))
			out->ret = SMTP_RET_HDRS;
		else
			return parse_fail(err, &err_ret_value);
		return 0;
	case MAIL_ENVID:
		if (prm->value == NULL ||
		    smtp_xtext_decode(prm->value, prm->valuelen, out->envid, sizeof(out->envid)) < 0)
			return parse_fail(err, &err_envid_value);
		return 0;
	case MAIL_AUTH:
		if (prm->value == NULL ||
		    smtp_xtext_decode(prm->value, prm->valuelen, out->auth, sizeof(out->auth)) < 0)
			return parse_fail(err, &err_auth_value);
		return 0;
	default:
		return parse_fail(err, &err_param_unknown);
	}
}

/*
 * Parameters are read before the path is checked because SMTPUTF8 on the
 * same line is what allows a UTF-8 reverse-path (RFC 6531 3.4).
 */
int smtp_parse_mail(const char *arg, struct smtp_mail_args *out, struct smtp_error *err)
{
	struct esmtp_param prm;
	const char *content, *rest;
	size_t clen;
	unsigned seen = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if ((rest = path_locate(arg, "FROM:", &content, &clen)) == NULL)
		return parse_fail(err, &err_mail_syntax);
	while ((r = param_next(&rest, &prm)) > 0) {
		int bit = mail_param_bit(&prm);

		if (bit != 0 && (seen & (unsigned)bit))
			return parse_fail(err, &err_param_dup);
		seen |= (unsigned)bit;
		if (mail_param_apply(&prm, bit, out, err) < 0)
			return -1;
	}
	if (r < 0)
		return parse_fail(err, &err_param_syntax);
	return path_check(content, clen, out->smtputf8, true, false, &sender_replies, out->path, err);
}

/* NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
static int parse_notify(const struct esmtp_param *prm, unsigned *notify, struct smtp_error *err)
{
	const char *p = prm->value, *end;
	unsigned bits = 0;

	if (prm->value == NULL)
		return parse_fail(err, &err_notify_value);
	end = prm->value + prm->valuelen;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = (size_t)((comma != NULL ? comma : end) - p);
		unsigned bit;

		if (word_is(p, n, "NEVER"))
			bit = DSN_NOTIFY_NEVER;
		else if (word_is(p, n, "SUCCESS"))
			bit = DSN_NOTIFY_SUCCESS;
		else if (word_is(p, n, "FAILURE"))
			bit = DSN_NOTIFY_FAILURE;
		else if (word_is(p, n, "DELAY"))
			bit = DSN_NOTIFY_DELAY;
		else
			return parse_fail(err, &err_notify_value);
		if (bits & bit)
			return parse_fail(err, &err_notify_value);
		bits |= bit;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER)
		return parse_fail(err, &err_notify_never);
	*notify = bits;
	return 0;
}

/* ORCPT=addr-type;xtext, kept decoded as "type;address" (RFC 3461 4.2). */
static int parse_orcpt(const struct esmtp_param *prm, char *out, size_t outlen, struct smtp_error *err)
{
	const char *semi;
	size_t tlen;

	if (prm->value == NULL || (semi = memchr(prm->value, ';', prm->valuelen)) == NULL)
		return parse_fail(err, &err_orcpt_value);
	tlen = (size_t)(semi - prm->value);
	if (tlen == 0 || tlen + 2 > outlen || semi + 1 == prm->value + prm->valuelen)
		return parse_fail(err, &err_orcpt_value);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)prm->value[i];

		if (!is_alnum(c) && c != '-')
			return parse_fail(err, &err_orcpt_value);
	}
	memcpy(out, prm->value, tlen + 1);
	if (smtp_xtext_decode(semi + 1, prm->valuelen - tlen - 1, out + tlen + 1, outlen - tlen - 1) < 0)
		return parse_fail(err, &err_orcpt_value);
	return 0;
}

int smtp_parse_rcpt(const char *arg, bool utf8_allowed, struct smtp_rcpt_args *out,
		    struct smtp_error *err)
{
	struct esmtp_param prm;
	const char *content, *rest;
	size_t clen;
	bool seen_notify = false, seen_orcpt = false;
	int r;

	memset(out, 0, sizeof(*out));
	if ((rest = path_locate(arg, "TO:", &content, &clen)) == NULL)
		return parse_fail(err, &err_rcpt_syntax);
	if (path_check(content, clen, utf8_allowed, false, true, &rcpt_replies, out->path, err) < 0)
		return -1;
	while ((r = param_next(&rest, &prm)) > 0) {
		if (param_is(&prm, "NOTIFY")) {
			if (seen_notify)
				return parse_fail(err, &err_param_dup);
			seen_notify = true;
			if (parse_notify(&prm, &out->notify, err) < 0)
				return -1;
		} else if (param_is(&prm, "ORCPT")) {
			if (seen_orcpt)
				return parse_fail(err, &err_param_dup);
			seen_orcpt = true;
			if (parse_orcpt(&prm, out->orcpt, sizeof(out->orcpt), err) < 0)
				return -1;
		} else {
			return parse_fail(err, &err_param_unknown);
		}
	}
	if (r < 0)
		return parse_fail(err, &err_param_syntax);
	return 0;
}

int smtp_parse_bdat(const char *arg, uint64_t *size, bool *last, struct smtp_error *err)
{
	const char *p = skip_space(arg), *digits = p;

	*last = false;
	while (is_digit((unsigned char)*p))
		p++;
	if (p == digits || (*p != '\0' && !is_space((unsigned char)*p)))
		return parse_fail(err, &err_bdat_syntax);
	if (parse_size_value(digits, (size_t)(p - digits), size, &err_bdat_syntax, err) < 0)
		return -1;
	p = skip_space(p);
	if (*p != '\0') {
		if (!ascii_caseeq_n(p, "LAST", 4) || (p[4] != '\0' && !is_space((unsigned char)p[4])))
			return parse_fail(err, &err_bdat_syntax);
		*last = true;
		p = skip_space(p + 4);
	}
	if (*p != '\0')
		return parse_fail(err, &err_bdat_syntax);
	return 0;
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c = ascii_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decoded control characters are refused: ENVID and ORCPT are copied into
 * DSN headers and spool files, where a CR, LF or NUL would be an injection.
 * Lower-case hex is accepted although RFC 3461 says upper case, because
 * senders get it wrong and the meaning is unambiguous.
 */
int smtp_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -1;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			int hi, lo;

			if (inlen - i < 3 || (hi = hex_value((unsigned char)in[i + 1])) < 0 ||
			    (lo = hex_value((unsigned char)in[i + 2])) < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			if (c < 0x20 || c == 0x7f)
				return -1;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

int smtp_xtext_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
		bool plain = *p >= 33 && *p <= 126 && *p != '+' && *p != '=';
		size_t need = plain ? 1 : 3;

		if (o + need >= outlen)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '+';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 0xf];
		}
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return (int)o;
}
