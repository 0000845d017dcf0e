#include "unit.h"

#include <string.h>

#include "policy/ldap_lookup.h"

static const char *expand(const char *tmpl, const char *rcpt)
{
	static char out[LDAP_LOOKUP_FILTER_MAX + 1];

	if (ldap_filter_expand(tmpl, rcpt, out, sizeof(out)) < 0)
		return "(failed)";
	return out;
}

static const char *escape(const char *s, size_t len)
{
	static char out[64];
	size_t used = 0;

	out[0] = '\0';
	if (ldap_filter_escape(s, len, out, sizeof(out), &used) < 0)
		return "(failed)";
	CHECK_INT(used, strlen(out));
	return out;
}

TEST(ldap_escape_specials)
{
	CHECK_STR(escape("alice", 5), "alice");
	CHECK_STR(escape("a*b(c)d\\e", 9), "a\\2ab\\28c\\29d\\5ce");
	CHECK_STR(escape("x\0y", 3), "x\\00y");
	CHECK_STR(escape("", 0), "");
}

TEST(ldap_escape_non_printables)
{
	CHECK_STR(escape("a\tb\x7f", 4), "a\\09b\\7f");
	CHECK_STR(escape("\r\n", 2), "\\0d\\0a");
	/* UTF-8 travels as escaped octets: the server decodes them */
	CHECK_STR(escape("j\xc3\xa9", 3), "j\\c3\\a9");
	/* printable punctuation that means nothing to a filter stays */
	CHECK_STR(escape("o'neil+x=y&z|w!~<>\"", 19), "o'neil+x=y&z|w!~<>\"");
}

TEST(ldap_escape_respects_size)
{
	char out[8];
	size_t used = 0;

	out[0] = '\0';
	CHECK_INT(ldap_filter_escape("abcdefg", 7, out, sizeof(out), &used), 0);
	CHECK_STR(out, "abcdefg");
	used = 0;
	CHECK_INT(ldap_filter_escape("abcdefgh", 8, out, sizeof(out), &used), -1);
	used = 0;
	/* an escape sequence is never cut in the middle */
	CHECK_INT(ldap_filter_escape("abcde*", 6, out, sizeof(out), &used), -1);
	CHECK(strchr(out, '\\') == NULL);
}

TEST(ldap_expand_address_parts)
{
	CHECK_STR(expand("(mail=%s)", "alice@example.com"), "(mail=alice@example.com)");
	CHECK_STR(expand("(&(uid=%u)(dc=%d))", "alice@example.com"), "(&(uid=alice)(dc=example.com))");
	CHECK_STR(expand("(|(mail=%s)(mailAlternateAddress=%s))", "bob@example.com"),
		  "(|(mail=bob@example.com)(mailAlternateAddress=bob@example.com))");
	CHECK_STR(expand("(note=100%%)(uid=%u)", "a@b"), "(note=100%)(uid=a)");
	/* the last @ splits the address */
	CHECK_STR(expand("(uid=%u)(d=%d)", "\"x@y\"@example.com"), "(uid=\"x@y\")(d=example.com)");
	/* no @: all local part, no domain */
	CHECK_STR(expand("(uid=%u)(d=%d)", "postmaster"), "(uid=postmaster)(d=)");
}

TEST(ldap_expand_escapes_injection)
{
	CHECK_STR(expand("(mail=%s)", "*@example.com"), "(mail=\\2a@example.com)");
	CHECK_STR(expand("(mail=%s)", "x)(objectClass=*@example.com"),
		  "(mail=x\\29\\28objectClass=\\2a@example.com)");
	CHECK_STR(expand("(uid=%u)", "a\\b*)(|(uid=*@d"), "(uid=a\\5cb\\2a\\29\\28|\\28uid=\\2a)");
}

TEST(ldap_expand_refuses_bad_templates)
{
	char out[64];

	CHECK_INT(ldap_filter_expand("(mail=%x)", "a@b", out, sizeof(out)), -1);
	CHECK_INT(ldap_filter_expand("(mail=%s)%", "a@b", out, sizeof(out)), -1);
	CHECK_INT(ldap_filter_expand("(mail=%s)", "a@b", out, 0), -1);
	CHECK_INT(ldap_filter_expand("(mail=%s)", "a@b", out, sizeof(out)), 10);
}

/* 1024 bytes is the most a look-up sends; the escaped length counts. */
TEST(ldap_expand_limit)
{
	char rcpt[1100];
	char out[LDAP_LOOKUP_FILTER_MAX + 1];

	memset(rcpt, 'a', sizeof(rcpt));
	memcpy(rcpt + 1017 - 4, "@x.y", 5);           /* 1017 bytes + "(mail=" ")" = 1024 */
	CHECK_INT(ldap_filter_expand("(mail=%s)", rcpt, out, sizeof(out)), 1024);
	CHECK_INT(strlen(out), 1024);
	memcpy(rcpt + 1018 - 4, "@x.y", 5);
	CHECK_INT(ldap_filter_expand("(mail=%s)", rcpt, out, sizeof(out)), -1);
	/* 340 stars escape to 1020 bytes */
	memset(rcpt, '*', 340);
	rcpt[340] = '\0';
	CHECK_INT(ldap_filter_expand("(m=%s)", rcpt, out, sizeof(out)), 1024);
	CHECK_INT(ldap_filter_expand("(mm=%s)", rcpt, out, sizeof(out)), -1);
}

TEST(ldap_template_validity)
{
	char why[160];

	CHECK(ldap_filter_template_valid("(mail=%s)", why, sizeof(why)));
	CHECK(ldap_filter_template_valid("(&(objectClass=inetOrgPerson)(|(mail=%s)(uid=%u)))", why,
					 sizeof(why)));
	CHECK(ldap_filter_template_valid("(note=%%)", why, sizeof(why)));
	CHECK(!ldap_filter_template_valid("(mail=%x)", why, sizeof(why)));
	CHECK(strstr(why, "%x") != NULL);
	CHECK(!ldap_filter_template_valid("(mail=%s)%", why, sizeof(why)));
	CHECK(!ldap_filter_template_valid("(mail=%s", why, sizeof(why)));
	CHECK_STR(why, "unbalanced parentheses");
	CHECK(!ldap_filter_template_valid("mail=%s)(", why, sizeof(why)));
}

TEST(ldap_lookup_new_checks_settings)
{
	struct ldap_lookup_params p = {
		.uri = "ldap://127.0.0.1:389 ldap://127.0.0.2:389", .base = "dc=example,dc=com",
		.filter = "(mail=%s)", .timeout_ms = 1000,
	};
	char err[256] = "";
	struct ldap_lookup *l = ldap_lookup_new(&p, err, sizeof(err));

	CHECK(l != NULL);
	ldap_lookup_unref(l);
	p.filter = "(mail=%q)";
	CHECK(ldap_lookup_new(&p, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "ldap_filter") != NULL);
	p.filter = "(mail=%s)";
	p.uri = "http://example.com/";
	CHECK(ldap_lookup_new(&p, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "ldap_uri") != NULL);
}
