/*
 * Fuzz the SMTP command parser, xtext, base64 and SASL decoding. The
 * first byte picks the entry point (a letter, so seeds stay readable; any
 * other byte runs a whole command line through smtp_parse_command and then
 * the parser of its verb, as the session does). Besides memory errors it
 * checks the parsers' promises: replies are always well-formed, accepted
 * paths re-validate, and the codecs round-trip exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "smtp/auth.h"
#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINE_MAX 4096

static void fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

static void check_reply(int rc, const struct smtp_error *err)
{
	if (rc == 0)
		return;
	fuzz_assert(rc == -1);
	fuzz_assert(err->code == 500 || err->code == 501 || err->code == 552 || err->code == 553 ||
		    err->code == 555);
	fuzz_assert(err->enhanced != NULL && strlen(err->enhanced) == 5);
	fuzz_assert(err->text != NULL && err->text[0] != '\0');
}

static void fuzz_mail(const char *arg)
{
	struct smtp_mail_args m;
	struct smtp_error err;
	int rc = smtp_parse_mail(arg, &m, &err);

	check_reply(rc, &err);
	if (rc == 0) {
		fuzz_assert(strlen(m.path) <= SMTP_PATH_MAX);
		fuzz_assert(m.path[0] == '\0' || smtp_valid_mailbox(m.path, m.smtputf8));
		fuzz_assert(strlen(m.envid) <= SMTP_ENVID_MAX);
	}
}

static void fuzz_rcpt(const char *arg, bool utf8)
{
	struct smtp_rcpt_args r;
	struct smtp_error err;
	int rc = smtp_parse_rcpt(arg, utf8, &r, &err);

	check_reply(rc, &err);
	if (rc == 0) {
		fuzz_assert(smtp_valid_mailbox(r.path, utf8));
		fuzz_assert(strlen(r.orcpt) <= SMTP_ORCPT_MAX);
		fuzz_assert(r.notify < 16);
	}
}

static void fuzz_helo(const char *arg)
{
	char out[SMTP_DOMAIN_MAX + 1];
	struct smtp_error err;
	int rc = smtp_parse_helo(arg, out, sizeof(out), &err);

	check_reply(rc, &err);
	if (rc == 0)
		fuzz_assert(out[0] != '\0' && strlen(out) <= SMTP_DOMAIN_MAX);
}

static void fuzz_bdat(const char *arg)
{
	struct smtp_error err;
	uint64_t size;
	bool last;

	check_reply(smtp_parse_bdat(arg, &size, &last, &err), &err);
}

/* decode(encode(decode(x))) == decode(x) */
static void fuzz_xtext(const char *in, size_t len)
{
	char dec[512], enc[1600], again[512];
	int n = smtp_xtext_decode(in, len, dec, sizeof(dec));

	if (n < 0)
		return;
	fuzz_assert((size_t)n == strlen(dec));
	n = smtp_xtext_encode(dec, enc, sizeof(enc));
	fuzz_assert(n >= 0);
	fuzz_assert(smtp_xtext_decode(enc, (size_t)n, again, sizeof(again)) >= 0);
	fuzz_assert(strcmp(dec, again) == 0);
}

/* Strict base64 has one encoding per byte string: re-encoding gives the input back. */
static void fuzz_base64(const char *in, size_t len)
{
	unsigned char dec[3 * FUZZ_LINE_MAX / 4 + 3];
	char enc[FUZZ_LINE_MAX + 8];
	char field[AUTH_FIELD_MAX + 1];
	struct sasl_credentials c;
	long n = base64_decode(in, len, dec, sizeof(dec));

	if (n >= 0) {
		fuzz_assert(base64_encode(dec, (size_t)n, enc, sizeof(enc)) == (long)len);
		fuzz_assert(memcmp(enc, in, len) == 0);
	}
	if (sasl_plain_decode(in, &c) == 0)
		fuzz_assert(c.authcid[0] != '\0' && c.password[0] != '\0');
	credentials_wipe(&c);
	if (sasl_login_decode(in, field, sizeof(field)) == 0)
		fuzz_assert(field[0] != '\0');
}

/* A whole line as the session sees it: split, then the verb's own parser. */
static void fuzz_command(const char *line, size_t len)
{
	struct smtp_command cmd;
	struct smtp_error err;
	int rc = smtp_parse_command(line, len, &cmd, &err);

	check_reply(rc, &err);
	if (rc < 0)
		return;
	fuzz_assert(cmd.arg >= line && cmd.arg <= line + len);
	switch (cmd.verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		fuzz_helo(cmd.arg);
		break;
	case SMTP_VERB_MAIL:
		fuzz_mail(cmd.arg);
		break;
	case SMTP_VERB_RCPT:
		fuzz_rcpt(cmd.arg, false);
		fuzz_rcpt(cmd.arg, true);
		break;
	case SMTP_VERB_BDAT:
		fuzz_bdat(cmd.arg);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[FUZZ_LINE_MAX + 1];
	size_t len;

	if (size == 0)
		return 0;
	len = size - 1 < FUZZ_LINE_MAX ? size - 1 : FUZZ_LINE_MAX;
	memcpy(line, data + 1, len);
	line[len] = '\0';
	switch (data[0]) {
	case 'H':
		fuzz_helo(line);
		break;
	case 'M':
		fuzz_mail(line);
		break;
	case 'R':
		fuzz_rcpt(line, false);
		break;
	case 'U':
		fuzz_rcpt(line, true);
		break;
	case 'B':
		fuzz_bdat(line);
		break;
	case 'V':
		smtp_valid_mailbox(line, false);
		smtp_valid_mailbox(line, true);
		break;
	case 'X':
		fuzz_xtext(line, len);
		break;
	case '6':
		fuzz_base64(line, strlen(line));
		break;
	default:
		fuzz_command(line, len);
		break;
	}
	return 0;
}
