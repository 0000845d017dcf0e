/*
 * SMTP command parsing (RFC 5321, with the ESMTP parameters of RFC 1870,
 * 6152, 6531, 3461, 3030, 4954). Pure functions over one command line; no
 * I/O, no allocation. Every rejection carries the reply to send.
 */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LOCAL_MAX 64      /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255    /* 4.5.3.1.2 */
#define SMTP_PATH_MAX 256      /* 4.5.3.1.3, without the angle brackets */
#define SMTP_ENVID_MAX 100     /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500     /* RFC 3461 4.2 */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_HELP,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

/* The reply for a rejected command: "501 5.5.4 text". */
struct smtp_error {
	int code;
	const char *enhanced;   /* "5.5.4" */
	const char *text;       /* static string */
};

struct smtp_command {
	enum smtp_verb verb;
	const char *arg;        /* rest of the line after the verb and one blank; "" if none */
};

/*
 * Split a line (without CRLF, NUL-terminated, len bytes) into verb and
 * argument. Verbs are case-insensitive. A NUL byte inside the line, or a
 * verb that does not take an argument but got one (DATA x, QUIT x), is an
 * error. Unknown verbs give SMTP_VERB_UNKNOWN and return 0: the session
 * answers 500 5.5.2 and counts the error.
 */
int smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd,
		       struct smtp_error *err);

/* HELO/EHLO argument: a domain or an address literal ([192.0.2.1], [IPv6:...]). */
int smtp_parse_helo(const char *arg, char *out, size_t outlen, struct smtp_error *err);

struct smtp_mail_args {
	char path[SMTP_PATH_MAX + 1];   /* "" for the null path <> */
	bool has_size;
	uint64_t size;
	enum { SMTP_BODY_UNSET, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME } body;
	bool smtputf8;
	enum { SMTP_RET_UNSET, SMTP_RET_FULL, SMTP_RET_HDRS } ret;
	char envid[SMTP_ENVID_MAX + 1]; /* xtext-decoded; "" when absent */
	char auth[SMTP_PATH_MAX + 1];   /* AUTH= value, xtext-decoded; "" when absent */
};

struct smtp_rcpt_args {
	char path[SMTP_PATH_MAX + 1];
	unsigned notify;                /* enum dsn_notify bits from queue/envelope.h; 0 absent */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* "rfc822;user@example.org" decoded; "" when absent */
};

/*
 * "FROM:<path> params" for MAIL and "TO:<path> params" for RCPT.
 * Accepts "FROM: <a@b>" (space after the colon, as many clients send);
 * strips an RFC 5321 source route (@a,@b:user@d). Non-ASCII in the path is
 * only accepted when utf8_allowed (SMTPUTF8 given on MAIL, or, for MAIL
 * itself, the SMTPUTF8 parameter on the same line). Unknown parameters are
 * 555 5.5.4, duplicate ones and bad values 501 5.5.4; a bad path is 553
 * 5.1.7 (sender) or 5.1.3 (recipient), a too long one 501 5.1.x, and
 * non-ASCII without SMTPUTF8 or invalid UTF-8 553 5.6.7. The path is copied
 * as given (case kept); RCPT TO:<postmaster> is valid without a domain.
 */
int smtp_parse_mail(const char *arg, struct smtp_mail_args *out, struct smtp_error *err);
int smtp_parse_rcpt(const char *arg, bool utf8_allowed, struct smtp_rcpt_args *out,
		    struct smtp_error *err);

/* "BDAT <size> [LAST]"; a size over 64 bits is 552 5.3.4. */
int smtp_parse_bdat(const char *arg, uint64_t *size, bool *last, struct smtp_error *err);

/* Check a mailbox "local@domain" (or the postmaster special case "postmaster"). */
bool smtp_valid_mailbox(const char *addr, bool utf8_allowed);

/*
 * RFC 3461 xtext: decode into out (NUL-terminated) and return the decoded
 * length; -1 if malformed, too long, or if it decodes to a control character.
 */
int smtp_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen);
/* Encode for forwarding ENVID/ORCPT to the next hop; the length, or -1 if it does not fit. */
int smtp_xtext_encode(const char *in, char *out, size_t outlen);

#endif
