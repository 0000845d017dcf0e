#include "unit.h"

#include <stdint.h>

#include "queue/envelope.h"
#include "smtp/smtp_parse.h"

/* rc must be -1 with this reply code and enhanced status. */
static void check_reply(const char *file, int line, const char *what, int rc,
			const struct smtp_error *err, int code, const char *enhanced)
{
	if (rc != -1) {
		unit_fail(file, line, "%s: accepted, expected %d %s", what, code, enhanced);
		return;
	}
	if (err->code != code || err->enhanced == NULL || strcmp(err->enhanced, enhanced) != 0 ||
	    err->text == NULL || err->text[0] == '\0')
		unit_fail(file, line, "%s: got %d %s %s, expected %d %s", what, err->code,
			  err->enhanced ? err->enhanced : "(null)", err->text ? err->text : "(null)",
			  code, enhanced);
}

static int parse_line(const char *line, struct smtp_command *cmd, struct smtp_error *err)
{
	return smtp_parse_command(line, strlen(line), cmd, err);
}

static int mail(const char *arg, struct smtp_mail_args *out, struct smtp_error *err)
{
	return smtp_parse_mail(arg, out, err);
}

static int rcpt(const char *arg, bool utf8, struct smtp_rcpt_args *out, struct smtp_error *err)
{
	return smtp_parse_rcpt(arg, utf8, out, err);
}

/* Labels of 'd' with the given lengths joined by dots, into out (1024 bytes). */
static const char *make_domain(char *out, const size_t *lens, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			out[o++] = '.';
		memset(out + o, 'd', lens[i]);
		o += lens[i];
	}
	out[o] = '\0';
	return out;
}

#define CHECK_REPLY(rc, err, code, enhanced) \
	check_reply(__FILE__, __LINE__, #rc, (rc), &(err), (code), (enhanced))

/* A string of n copies of c (n < 1024). */
static const char *repeat(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

TEST(smtp_parse_command_verbs)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
		const char *arg;
	} ok[] = {
		{ "HELO client.example.org", SMTP_VERB_HELO, "client.example.org" },
		{ "ehlo client.example.org", SMTP_VERB_EHLO, "client.example.org" },
		{ "MAIL FROM:<a@example.org>", SMTP_VERB_MAIL, "FROM:<a@example.org>" },
		{ "mAiL from:<>", SMTP_VERB_MAIL, "from:<>" },
		{ "RCPT TO:<b@example.org> NOTIFY=NEVER", SMTP_VERB_RCPT, "TO:<b@example.org> NOTIFY=NEVER" },
		{ "DATA", SMTP_VERB_DATA, "" },
		{ "data  ", SMTP_VERB_DATA, "" },
		{ "QUIT\t", SMTP_VERB_QUIT, "" },
		{ "BDAT 100 LAST", SMTP_VERB_BDAT, "100 LAST" },
		{ "RSET", SMTP_VERB_RSET, "" },
		{ "NOOP", SMTP_VERB_NOOP, "" },
		{ "NOOP anything at all", SMTP_VERB_NOOP, "anything at all" },
		{ "QUIT", SMTP_VERB_QUIT, "" },
		{ "HELP", SMTP_VERB_HELP, "" },
		{ "HELP MAIL", SMTP_VERB_HELP, "MAIL" },
		{ "VRFY postmaster", SMTP_VERB_VRFY, "postmaster" },
		{ "EXPN staff", SMTP_VERB_EXPN, "staff" },
		{ "StartTLS", SMTP_VERB_STARTTLS, "" },
		{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==", SMTP_VERB_AUTH, "PLAIN AGFsaWNlAHNlY3JldA==" },
		{ "AUTH LOGIN", SMTP_VERB_AUTH, "LOGIN" },
	};
	struct smtp_command cmd;
	struct smtp_error err;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (parse_line(ok[i].line, &cmd, &err) != 0) {
			unit_fail(__FILE__, __LINE__, "rejected \"%s\": %d %s", ok[i].line, err.code, err.text);
			continue;
		}
		CHECK_INT(cmd.verb, ok[i].verb);
		CHECK_STR(cmd.arg, ok[i].arg);
	}
}

TEST(smtp_parse_command_unknown)
{
	struct smtp_command cmd;
	struct smtp_error err;

	CHECK_INT(parse_line("XYZZY", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
	CHECK_INT(parse_line("GET / HTTP/1.1", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
	CHECK_INT(parse_line("", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
	CHECK_INT(parse_line("MAILFROM:<a@b.org>", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
	CHECK_INT(parse_line(" QUIT", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
	CHECK_INT(parse_line("DATA\xc3\xa9", &cmd, &err), 0);
	CHECK_INT(cmd.verb, SMTP_VERB_UNKNOWN);
}

TEST(smtp_parse_command_errors)
{
	struct smtp_command cmd;
	struct smtp_error err;

	CHECK_REPLY(smtp_parse_command("MAIL FROM:<a\0@b>", 16, &cmd, &err), err, 500, "5.5.2");
	CHECK_REPLY(smtp_parse_command("\0QUIT", 5, &cmd, &err), err, 500, "5.5.2");
	CHECK_REPLY(parse_line("QUIT\r", &cmd, &err), err, 500, "5.5.2");
	CHECK_REPLY(parse_line("MAIL FROM:<a@b.org>\x1b[2J", &cmd, &err), err, 500, "5.5.2");
	CHECK_REPLY(parse_line("NOOP \x7f", &cmd, &err), err, 500, "5.5.2");
	CHECK_REPLY(parse_line("DATA x", &cmd, &err), err, 501, "5.5.4");
	CHECK_INT(cmd.verb, SMTP_VERB_DATA);
	CHECK_REPLY(parse_line("QUIT now", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("RSET x", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("STARTTLS x", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("HELO", &cmd, &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Syntax: HELO hostname");
	CHECK_REPLY(parse_line("EHLO   ", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("MAIL", &cmd, &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Syntax: MAIL FROM:<address>");
	CHECK_REPLY(parse_line("RCPT", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("BDAT", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("VRFY", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("EXPN", &cmd, &err), err, 501, "5.5.4");
	CHECK_REPLY(parse_line("AUTH", &cmd, &err), err, 501, "5.5.4");
	/* A tab is a blank, not garbage. */
	CHECK_INT(parse_line("NOOP\tx", &cmd, &err), 0);
}

TEST(smtp_parse_helo_valid)
{
	static const char *const ok[] = {
		"mail.example.org", "localhost", "a", "x-1.example.org", "EXAMPLE.ORG",
		"192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]", "[ipv6:::1]",
		"[IPv6:::ffff:192.0.2.1]", "2001:db8::1", "::1", "my_pc.local", "123.example",
	};
	char out[SMTP_DOMAIN_MAX + 1];
	struct smtp_error err;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (smtp_parse_helo(ok[i], out, sizeof(out), &err) != 0)
			unit_fail(__FILE__, __LINE__, "rejected \"%s\": %s", ok[i], err.text);
		else
			CHECK_STR(out, ok[i]);
	}
	CHECK_INT(smtp_parse_helo("  mail.example.org \t", out, sizeof(out), &err), 0);
	CHECK_STR(out, "mail.example.org");
}

TEST(smtp_parse_helo_invalid)
{
	static const char *const bad[] = {
		"", "   ", "mail.example.org extra", "-a.example", "a-.example", "a..example",
		".example", "example.", "ex ample", "exa$mple", "[192.0.2]", "[192.0.2.256]",
		"[IPv6:192.0.2.1]", "[tag:content]", "[]", "192.0.2.1]", "[192.0.2.1", "h\xc3\xa9.example",
		"2001:db8::g", "[IPv6:2001:db8::1",
	};
	char out[SMTP_DOMAIN_MAX + 1], buf[128], name[1024];
	struct smtp_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = smtp_parse_helo(bad[i], out, sizeof(out), &err);

		if (rc != -1 || err.code != 501)
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	}
	/* Labels up to 63, names up to 255. */
	snprintf(name, sizeof(name), "%s.example", repeat(buf, 'a', 63));
	CHECK_INT(smtp_parse_helo(name, out, sizeof(out), &err), 0);
	snprintf(name, sizeof(name), "%s.example", repeat(buf, 'a', 64));
	CHECK_REPLY(smtp_parse_helo(name, out, sizeof(out), &err), err, 501, "5.5.4");
	make_domain(name, (const size_t[]){ 63, 63, 63, 63 }, 4);
	CHECK_INT(strlen(name), 255);
	CHECK_INT(smtp_parse_helo(name, out, sizeof(out), &err), 0);
	make_domain(name, (const size_t[]){ 63, 63, 63, 63, 1 }, 5);
	CHECK_REPLY(smtp_parse_helo(name, out, sizeof(out), &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Host name too long");
	/* The caller's buffer is a limit too. */
	CHECK_REPLY(smtp_parse_helo("mail.example.org", out, 16, &err), err, 501, "5.5.4");
	CHECK_INT(smtp_parse_helo("mail.example.org", out, 17, &err), 0);
}

TEST(smtp_parse_mail_paths)
{
	static const struct {
		const char *arg;
		const char *path;
	} ok[] = {
		{ "FROM:<alice@example.org>", "alice@example.org" },
		{ "from:<Alice@Example.ORG>", "Alice@Example.ORG" },
		{ "FROM: <alice@example.org>", "alice@example.org" },
		{ "FROM:  <alice@example.org>  ", "alice@example.org" },
		{ "FROM:<>", "" },
		{ "FROM: <>", "" },
		{ "FROM:<@relay.example,@other.example:alice@example.org>", "alice@example.org" },
		{ "FROM:<@[192.0.2.1]:alice@example.org>", "alice@example.org" },
		{ "FROM:<@[IPv6:2001:db8::1]:alice@example.org>", "alice@example.org" },
		{ "FROM:<\"john smith\"@example.org>", "\"john smith\"@example.org" },
		{ "FROM:<\"a@b>c\"@example.org>", "\"a@b>c\"@example.org" },
		{ "FROM:<\"quote\\\"d\\\\\"@example.org>", "\"quote\\\"d\\\\\"@example.org" },
		{ "FROM:<\"\"@example.org>", "\"\"@example.org" },
		{ "FROM:<first.last+tag@example.org>", "first.last+tag@example.org" },
		{ "FROM:<!#$%&'*+-/=?^_`{|}~@example.org>", "!#$%&'*+-/=?^_`{|}~@example.org" },
		{ "FROM:<bounce@[192.0.2.1]>", "bounce@[192.0.2.1]" },
		{ "FROM:<bounce@[IPv6:2001:db8::1]>", "bounce@[IPv6:2001:db8::1]" },
		{ "FROM:<a@localhost>", "a@localhost" },
	};
	struct smtp_mail_args m;
	struct smtp_error err;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (mail(ok[i].arg, &m, &err) != 0) {
			unit_fail(__FILE__, __LINE__, "rejected \"%s\": %d %s", ok[i].arg, err.code, err.text);
			continue;
		}
		CHECK_STR(m.path, ok[i].path);
		CHECK(!m.has_size && m.body == SMTP_BODY_UNSET && !m.smtputf8 && m.ret == SMTP_RET_UNSET);
		CHECK_STR(m.envid, "");
		CHECK_STR(m.auth, "");
	}
}

TEST(smtp_parse_mail_syntax_errors)
{
	static const char *const syntax[] = {
		"FROM:alice@example.org", "FROM: alice@example.org", "FROM:", "FROM", "FROM :<a@b.org>",
		"TO:<a@b.org>", "FROM:<a@b.org", "FROM:<a@b.org>x", "FROM:<a@b.org>SIZE=10",
		"FROM:<\"a@b.org>", "FROMX:<a@b.org>", "<a@b.org>",
	};
	static const char *const bad_path[] = {
		"FROM:<a@>", "FROM:<@b.org>", "FROM:<a>", "FROM:<a..b@c.org>", "FROM:<.a@c.org>",
		"FROM:<a.@c.org>", "FROM:<a@b..org>", "FROM:<a@-b.org>", "FROM:<a@b-.org>",
		"FROM:<a b@c.org>", "FROM:<a@b.org.>", "FROM:<a@b@c.org>", "FROM:<a@[192.0.2.300]>",
		"FROM:<a@[IPv6:zz::1]>", "FROM:<a@[tag:x]>", "FROM:<a(comment)@b.org>",
		"FROM:<\"a\\\x01\"@b.org>", "FROM:<@relay.example:>", "FROM:<@:a@b.org>",
		"FROM:<@relay..example:a@b.org>", "FROM:<relay.example:a@b.org>",
		"FROM:<@relay.example a@b.org>", "FROM:<@relay.example,a@b.org>", "FROM:<a@b_c.org>",
		"FROM:<postmaster>",
	};
	struct smtp_mail_args m;
	struct smtp_error err;

	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		int rc = mail(syntax[i], &m, &err);

		if (rc != -1 || err.code != 501 || strcmp(err.enhanced, "5.5.4") != 0)
			unit_fail(__FILE__, __LINE__, "\"%s\": rc %d %d %s", syntax[i], rc,
				  rc ? err.code : 0, rc ? err.enhanced : "");
	}
	CHECK_REPLY(mail("FROM:a@b.org", &m, &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Syntax: MAIL FROM:<address>");
	for (size_t i = 0; i < sizeof(bad_path) / sizeof(bad_path[0]); i++) {
		int rc = mail(bad_path[i], &m, &err);

		if (rc != -1 || err.code != 553 || strcmp(err.enhanced, "5.1.7") != 0)
			unit_fail(__FILE__, __LINE__, "\"%s\": rc %d %d %s", bad_path[i], rc,
				  rc ? err.code : 0, rc ? err.enhanced : "");
	}
}

TEST(smtp_parse_mail_lengths)
{
	char buf[1024], arg[2048];
	struct smtp_mail_args m;
	struct smtp_error err;

	snprintf(arg, sizeof(arg), "FROM:<%s@example.org>", repeat(buf, 'l', 64));
	CHECK_INT(mail(arg, &m, &err), 0);
	snprintf(arg, sizeof(arg), "FROM:<%s@example.org>", repeat(buf, 'l', 65));
	CHECK_REPLY(mail(arg, &m, &err), err, 501, "5.1.7");
	CHECK(strstr(err.text, "too long") != NULL);
	/* 256 bytes between the brackets is the most a path may be. */
	snprintf(arg, sizeof(arg), "FROM:<a@%s>", make_domain(buf, (const size_t[]){ 63, 63, 63, 62 }, 4));
	CHECK_INT(mail(arg, &m, &err), 0);
	CHECK_INT(strlen(m.path), SMTP_PATH_MAX);
	snprintf(arg, sizeof(arg), "FROM:<a@%s>", make_domain(buf, (const size_t[]){ 63, 63, 63, 63 }, 4));
	CHECK_REPLY(mail(arg, &m, &err), err, 501, "5.1.7");
	CHECK(strstr(err.text, "too long") != NULL);
	/* A route counts against the path length. */
	snprintf(arg, sizeof(arg), "FROM:<@%s.example:a@b.org>", repeat(buf, 'r', 63));
	CHECK_INT(mail(arg, &m, &err), 0);
	snprintf(arg, sizeof(arg), "FROM:<@%s:a@b.org>", make_domain(buf, (const size_t[]){ 63, 63, 63, 63 }, 4));
	CHECK_REPLY(mail(arg, &m, &err), err, 501, "5.1.7");
}

TEST(smtp_parse_mail_params)
{
	struct smtp_mail_args m;
	struct smtp_error err;

	CHECK_INT(mail("FROM:<a@b.org> SIZE=12345 BODY=8BITMIME", &m, &err), 0);
	CHECK(m.has_size);
	CHECK_INT(m.size, 12345);
	CHECK_INT(m.body, SMTP_BODY_8BITMIME);
	CHECK_INT(mail("FROM:<a@b.org> size=0 body=7bit", &m, &err), 0);
	CHECK(m.has_size);
	CHECK_INT(m.size, 0);
	CHECK_INT(m.body, SMTP_BODY_7BIT);
	CHECK_INT(mail("FROM:<a@b.org> BODY=BINARYMIME", &m, &err), 0);
	CHECK_INT(m.body, SMTP_BODY_BINARYMIME);
	CHECK_INT(mail("FROM:<> SMTPUTF8 RET=HDRS ENVID=QQ314159", &m, &err), 0);
	CHECK(m.smtputf8);
	CHECK_INT(m.ret, SMTP_RET_HDRS);
	CHECK_STR(m.envid, "QQ314159");
	CHECK_STR(m.path, "");
	CHECK_INT(mail("FROM:<a@b.org> RET=full ENVID=a+2Bb+3Dc+20d", &m, &err), 0);
	CHECK_INT(m.ret, SMTP_RET_FULL);
	CHECK_STR(m.envid, "a+b=c d");
	CHECK_INT(mail("FROM:<a@b.org> AUTH=<>", &m, &err), 0);
	CHECK_STR(m.auth, "<>");
	CHECK_INT(mail("FROM:<a@b.org> AUTH=alice+2Bx@example.org", &m, &err), 0);
	CHECK_STR(m.auth, "alice+x@example.org");
	CHECK_INT(mail("FROM:<a@b.org>   SIZE=18446744073709551615   ", &m, &err), 0);
	CHECK(m.size == UINT64_MAX);
	CHECK_INT(mail("FROM:<a@b.org> SIZE=00000000000000000001", &m, &err), 0);
	CHECK_INT(m.size, 1);
	CHECK_INT(mail("FROM:<a@b.org>\tSIZE=1\tBODY=8BITMIME", &m, &err), 0);
	CHECK_INT(mail("FROM:<a@b.org> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x AUTH=<>", &m, &err), 0);
}

TEST(smtp_parse_mail_param_errors)
{
	struct smtp_mail_args m;
	struct smtp_error err;
	char buf[200], arg[300];

	/* unknown */
	CHECK_REPLY(mail("FROM:<a@b.org> FOO=bar", &m, &err), err, 555, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> NOTIFY=NEVER", &m, &err), err, 555, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> X-EXTENSION", &m, &err), err, 555, "5.5.4");
	/* duplicates */
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=1 SIZE=1", &m, &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Duplicate parameter");
	CHECK_REPLY(mail("FROM:<a@b.org> BODY=7BIT body=8bitmime", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SMTPUTF8 SMTPUTF8", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=a ENVID=b", &m, &err), err, 501, "5.5.4");
	/* bad values */
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=12k", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=-1", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=+1", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=000000000000000000001", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=18446744073709551616", &m, &err), err, 552, "5.3.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=99999999999999999999", &m, &err), err, 552, "5.3.4");
	CHECK_REPLY(mail("FROM:<a@b.org> BODY=9BIT", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> BODY", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SMTPUTF8=yes", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> RET=ALL", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> RET", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=a+0Db", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=a+00", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=a+4", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=a+XYb", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> ENVID=\xc3\xa9", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> AUTH", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> AUTH=a+0A", &m, &err), err, 501, "5.5.4");
	/* ENVID is at most 100 characters once decoded. */
	snprintf(arg, sizeof(arg), "FROM:<a@b.org> ENVID=%s", repeat(buf, 'e', 100));
	CHECK_INT(mail(arg, &m, &err), 0);
	CHECK_INT(strlen(m.envid), 100);
	snprintf(arg, sizeof(arg), "FROM:<a@b.org> ENVID=%s", repeat(buf, 'e', 101));
	CHECK_REPLY(mail(arg, &m, &err), err, 501, "5.5.4");
	/* malformed parameter syntax */
	CHECK_REPLY(mail("FROM:<a@b.org> =x", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> -SIZE=1", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SI_ZE=1", &m, &err), err, 501, "5.5.4");
	CHECK_REPLY(mail("FROM:<a@b.org> SIZE=1=2", &m, &err), err, 501, "5.5.4");
}

TEST(smtp_parse_mail_utf8)
{
	struct smtp_mail_args m;
	struct smtp_error err;

	CHECK_REPLY(mail("FROM:<j\xc3\xb6rg@example.org>", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<jorg@b\xc3\xbc" "cher.example>", &m, &err), err, 553, "5.6.7");
	CHECK_INT(mail("FROM:<j\xc3\xb6rg@example.org> SMTPUTF8", &m, &err), 0);
	CHECK_STR(m.path, "j\xc3\xb6rg@example.org");
	CHECK_INT(mail("FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8> SMTPUTF8", &m, &err), 0);
	CHECK_INT(mail("FROM:<\"j\xc3\xb6rg smith\"@example.org> SMTPUTF8", &m, &err), 0);
	CHECK_INT(mail("FROM:<\xf0\x9f\x98\x80@example.org> smtputf8", &m, &err), 0);
	/* Invalid UTF-8 is refused even with SMTPUTF8. */
	CHECK_REPLY(mail("FROM:<j\xc3rg@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<j\xc0\xafrg@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<j\xed\xa0\x80rg@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<j\xf4\x90\x80\x80@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<j\xff@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
	CHECK_REPLY(mail("FROM:<j\xe2\x82@example.org> SMTPUTF8", &m, &err), err, 553, "5.6.7");
}

TEST(smtp_parse_rcpt_paths)
{
	struct smtp_rcpt_args r;
	struct smtp_error err;

	CHECK_INT(rcpt("TO:<bob@example.org>", false, &r, &err), 0);
	CHECK_STR(r.path, "bob@example.org");
	CHECK_INT(r.notify, 0);
	CHECK_STR(r.orcpt, "");
	CHECK_INT(rcpt("to: <bob@example.org>", false, &r, &err), 0);
	CHECK_INT(rcpt("TO:<postmaster>", false, &r, &err), 0);
	CHECK_STR(r.path, "postmaster");
	CHECK_INT(rcpt("TO:<PostMaster>", false, &r, &err), 0);
	CHECK_STR(r.path, "PostMaster");
	CHECK_INT(rcpt("TO:<postmaster@example.org>", false, &r, &err), 0);
	CHECK_INT(rcpt("TO:<@hop.example:bob@example.org>", false, &r, &err), 0);
	CHECK_STR(r.path, "bob@example.org");
	CHECK_INT(rcpt("TO:<bob@[192.0.2.7]>", false, &r, &err), 0);

	CHECK_REPLY(rcpt("TO:<>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:<@hop.example:>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:<bob>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:<postmasters>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:<bob@example..org>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:<bob@[300.0.0.1]>", false, &r, &err), err, 553, "5.1.3");
	CHECK_REPLY(rcpt("TO:bob@example.org", false, &r, &err), err, 501, "5.5.4");
	CHECK_STR(err.text, "Syntax: RCPT TO:<address>");
	CHECK_REPLY(rcpt("FROM:<bob@example.org>", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<bob@example.org", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<bob@example.org>>", false, &r, &err), err, 501, "5.5.4");
}

TEST(smtp_parse_rcpt_lengths_and_utf8)
{
	char buf[300], arg[400];
	struct smtp_rcpt_args r;
	struct smtp_error err;

	snprintf(arg, sizeof(arg), "TO:<%s@example.org>", repeat(buf, 'x', 65));
	CHECK_REPLY(rcpt(arg, false, &r, &err), err, 501, "5.1.3");
	snprintf(arg, sizeof(arg), "TO:<%s@example.org>", repeat(buf, 'x', 250));
	CHECK_REPLY(rcpt(arg, false, &r, &err), err, 501, "5.1.3");
	CHECK_REPLY(rcpt("TO:<m\xc3\xbcller@example.org>", false, &r, &err), err, 553, "5.6.7");
	CHECK_INT(rcpt("TO:<m\xc3\xbcller@example.org>", true, &r, &err), 0);
	CHECK_REPLY(rcpt("TO:<m\xc3@example.org>", true, &r, &err), err, 553, "5.6.7");
	/* The local part limit counts octets, not characters. */
	snprintf(arg, sizeof(arg), "TO:<%s\xc3\xbc@example.org>", repeat(buf, 'x', 62));
	CHECK_INT(rcpt(arg, true, &r, &err), 0);
	snprintf(arg, sizeof(arg), "TO:<%s\xc3\xbc@example.org>", repeat(buf, 'x', 63));
	CHECK_REPLY(rcpt(arg, true, &r, &err), err, 501, "5.1.3");
}

TEST(smtp_parse_rcpt_params)
{
	struct smtp_rcpt_args r;
	struct smtp_error err;

	CHECK_INT(rcpt("TO:<b@example.org> NOTIFY=NEVER", false, &r, &err), 0);
	CHECK_INT(r.notify, DSN_NOTIFY_NEVER);
	CHECK_INT(rcpt("TO:<b@example.org> NOTIFY=SUCCESS,FAILURE,DELAY", false, &r, &err), 0);
	CHECK_INT(r.notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
	CHECK_INT(rcpt("TO:<b@example.org> notify=delay,failure", false, &r, &err), 0);
	CHECK_INT(r.notify, DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
	CHECK_INT(rcpt("TO:<b@example.org> ORCPT=rfc822;b+2Bx@example.org NOTIFY=FAILURE", false, &r, &err), 0);
	CHECK_STR(r.orcpt, "rfc822;b+x@example.org");
	CHECK_INT(r.notify, DSN_NOTIFY_FAILURE);
	CHECK_INT(rcpt("TO:<b@example.org> ORCPT=utf-8;b@example.org", false, &r, &err), 0);
	CHECK_STR(r.orcpt, "utf-8;b@example.org");

	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=NEVER,SUCCESS", false, &r, &err), err, 501, "5.5.4");
	CHECK(strstr(err.text, "NEVER") != NULL);
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=FAILURE,NEVER", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=SUCCESS,SUCCESS", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=SOMETIMES", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=SUCCESS,", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=,SUCCESS", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=NEVER NOTIFY=NEVER", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=rfc822;a@b ORCPT=rfc822;a@b", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=b@example.org", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=;b@example.org", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=rfc822;", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=rfc.822;a@b", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT=rfc822;a+0Db", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> ORCPT", false, &r, &err), err, 501, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> SIZE=100", false, &r, &err), err, 555, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> BODY=8BITMIME", false, &r, &err), err, 555, "5.5.4");
	CHECK_REPLY(rcpt("TO:<b@example.org> NOTIFY=NEVER junk=", false, &r, &err), err, 501, "5.5.4");
}

TEST(smtp_parse_rcpt_orcpt_limit)
{
	char buf[600], arg[700];
	struct smtp_rcpt_args r;
	struct smtp_error err;

	/* "rfc822;" + 493 = 500 characters decoded. */
	snprintf(arg, sizeof(arg), "TO:<b@example.org> ORCPT=rfc822;%s", repeat(buf, 'o', 493));
	CHECK_INT(rcpt(arg, false, &r, &err), 0);
	CHECK_INT(strlen(r.orcpt), SMTP_ORCPT_MAX);
	snprintf(arg, sizeof(arg), "TO:<b@example.org> ORCPT=rfc822;%s", repeat(buf, 'o', 494));
	CHECK_REPLY(rcpt(arg, false, &r, &err), err, 501, "5.5.4");
}

TEST(smtp_parse_bdat_forms)
{
	struct smtp_error err;
	uint64_t size;
	bool last;

	CHECK_INT(smtp_parse_bdat("100", &size, &last, &err), 0);
	CHECK_INT(size, 100);
	CHECK(!last);
	CHECK_INT(smtp_parse_bdat("0 LAST", &size, &last, &err), 0);
	CHECK_INT(size, 0);
	CHECK(last);
	CHECK_INT(smtp_parse_bdat("4096 last", &size, &last, &err), 0);
	CHECK(last);
	CHECK_INT(smtp_parse_bdat("  5   LAST  ", &size, &last, &err), 0);
	CHECK_INT(size, 5);
	CHECK(last);
	CHECK_INT(smtp_parse_bdat("18446744073709551615", &size, &last, &err), 0);
	CHECK(size == UINT64_MAX);

	CHECK_REPLY(smtp_parse_bdat("", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("LAST", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("abc", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("-1", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10x", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10 LASTX", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10 LAS", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10 LAST x", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10 LAST LAST", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("10 20", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("000000000000000000001", &size, &last, &err), err, 501, "5.5.4");
	CHECK_REPLY(smtp_parse_bdat("18446744073709551616", &size, &last, &err), err, 552, "5.3.4");
}

TEST(smtp_parse_valid_mailbox)
{
	char buf[100], addr[200];

	CHECK(smtp_valid_mailbox("a@example.org", false));
	CHECK(smtp_valid_mailbox("postmaster", false));
	CHECK(smtp_valid_mailbox("POSTMASTER", false));
	CHECK(smtp_valid_mailbox("\"x y\"@example.org", false));
	CHECK(smtp_valid_mailbox("a@[192.0.2.1]", false));
	CHECK(!smtp_valid_mailbox("", false));
	CHECK(!smtp_valid_mailbox("a", false));
	CHECK(!smtp_valid_mailbox("a@", false));
	CHECK(!smtp_valid_mailbox("<a@example.org>", false));
	CHECK(!smtp_valid_mailbox("@a:b@example.org", false));
	CHECK(!smtp_valid_mailbox("\xc3\xa9@example.org", false));
	CHECK(smtp_valid_mailbox("\xc3\xa9@example.org", true));
	CHECK(!smtp_valid_mailbox("\xc3@example.org", true));
	snprintf(addr, sizeof(addr), "%s@example.org", repeat(buf, 'a', 64));
	CHECK(smtp_valid_mailbox(addr, false));
	snprintf(addr, sizeof(addr), "%s@example.org", repeat(buf, 'a', 65));
	CHECK(!smtp_valid_mailbox(addr, false));
}

TEST(smtp_parse_xtext)
{
	char out[64];

	CHECK_INT(smtp_xtext_decode("abc", 3, out, sizeof(out)), 3);
	CHECK_STR(out, "abc");
	CHECK_INT(smtp_xtext_decode("", 0, out, sizeof(out)), 0);
	CHECK_STR(out, "");
	CHECK_INT(smtp_xtext_decode("a+2Bb+3D", 8, out, sizeof(out)), 4);
	CHECK_STR(out, "a+b=");
	CHECK_INT(smtp_xtext_decode("+2b+3d", 6, out, sizeof(out)), 2);
	CHECK_STR(out, "+=");
	CHECK_INT(smtp_xtext_decode("+C3+A9", 6, out, sizeof(out)), 2);
	CHECK_STR(out, "\xc3\xa9");
	/* only inlen bytes are read */
	CHECK_INT(smtp_xtext_decode("abcdef", 2, out, sizeof(out)), 2);
	CHECK_STR(out, "ab");

	CHECK_INT(smtp_xtext_decode("a b", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("a=b", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("a+", 2, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("a+4", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("+4G", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("+0A", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("+00", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("+7F", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("\xc3\xa9", 2, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("a\tb", 3, out, sizeof(out)), -1);
	CHECK_INT(smtp_xtext_decode("abcd", 4, out, 4), -1);
	CHECK_INT(smtp_xtext_decode("abcd", 4, out, 5), 4);
	CHECK_INT(smtp_xtext_decode("", 0, out, 0), -1);

	CHECK_INT(smtp_xtext_encode("abc", out, sizeof(out)), 3);
	CHECK_STR(out, "abc");
	CHECK_INT(smtp_xtext_encode("a+b=c d", out, sizeof(out)), 13);
	CHECK_STR(out, "a+2Bb+3Dc+20d");
	CHECK_INT(smtp_xtext_encode("\xc3\xa9", out, sizeof(out)), 6);
	CHECK_STR(out, "+C3+A9");
	CHECK_INT(smtp_xtext_encode("", out, 1), 0);
	CHECK_INT(smtp_xtext_encode("", out, 0), -1);
	CHECK_INT(smtp_xtext_encode("abc", out, 3), -1);
	CHECK_INT(smtp_xtext_encode("abc", out, 4), 3);
	CHECK_INT(smtp_xtext_encode("a+", out, 4), -1);
	CHECK_INT(smtp_xtext_encode("a+", out, 5), 4);
}

TEST(smtp_parse_xtext_round_trip)
{
	char in[128], enc[400], dec[128];
	int n = 0;

	/* every printable character and the non-ASCII bytes */
	for (int c = 0x20; c < 0x7f; c++)
		in[n++] = (char)c;
	in[n] = '\0';
	CHECK(smtp_xtext_encode(in, enc, sizeof(enc)) > 0);
	CHECK_INT(smtp_xtext_decode(enc, strlen(enc), dec, sizeof(dec)), n);
	CHECK_STR(dec, in);
	for (int c = 0x80; c <= 0xff; c++) {
		char one[2] = { (char)c, '\0' };

		CHECK_INT(smtp_xtext_encode(one, enc, sizeof(enc)), 3);
		CHECK_INT(smtp_xtext_decode(enc, 3, dec, sizeof(dec)), 1);
		CHECK((unsigned char)dec[0] == c);
	}
}
