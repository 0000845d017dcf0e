/*
 * `postern passwd`: hash a password for a [user] entry, or check one
 * against a hash. The password comes from standard input (the first line)
 * so it never shows in the process list or the shell history; on a
 * terminal it is asked twice without echo.
 */
#include "cli/cli.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "smtp/auth.h"

/* SASL fields are at most AUTH_FIELD_MAX bytes: a longer password could never log in. */
#define PASSWORD_MAX AUTH_FIELD_MAX

enum read_status {
	READ_OK = 0,
	READ_ERROR = -1,
	READ_TOO_LONG = -2,
	READ_NUL = -3,
	READ_MISMATCH = -4,
};

/*
 * One line from fd, read byte by byte so no copy of the password is left
 * in a stdio buffer; the newline (and a CR before it) is dropped.
 */
static enum read_status read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return READ_ERROR;
		if (r == 0 || c == '\n')
			break;
		if (c == '\0')
			return READ_NUL;
		if (n + 1 >= size)
			return READ_TOO_LONG;
		buf[n++] = c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return READ_OK;
}

static enum read_status prompt_noecho(const char *prompt, char *buf, size_t size)
{
	struct termios saved, quiet;
	enum read_status st;

	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return READ_ERROR;
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fputs(prompt, stderr);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return READ_ERROR;
	st = read_line(STDIN_FILENO, buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	fputc('\n', stderr);
	return st;
}

/* On a terminal a new password is asked twice so a typo does not lock the account. */
static enum read_status password_read(bool confirm, char *buf, size_t size)
{
	char again[PASSWORD_MAX + 1];
	enum read_status st;

	if (!isatty(STDIN_FILENO))
		return read_line(STDIN_FILENO, buf, size);
	if ((st = prompt_noecho("Password: ", buf, size)) != READ_OK || !confirm)
		return st;
	st = prompt_noecho("Retype password: ", again, sizeof(again));
	if (st == READ_OK && strcmp(buf, again) != 0)
		st = READ_MISMATCH;
	sodium_memzero(again, sizeof(again));
	return st;
}

static void passwd_usage(FILE *out)
{
	fprintf(out,
		"usage: postern passwd               read a password, print its argon2id hash\n"
		"       postern passwd --check HASH  exit 0 if the password matches HASH, 1 if not\n"
		"The password is the first line of standard input (asked twice on a terminal).\n");
}

static int passwd_report_read_error(enum read_status st)
{
	switch (st) {
	case READ_TOO_LONG:
		fprintf(stderr, "postern passwd: password too long (at most %d bytes)\n", PASSWORD_MAX);
		break;
	case READ_NUL:
		fprintf(stderr, "postern passwd: password contains a NUL byte\n");
		break;
	case READ_MISMATCH:
		fprintf(stderr, "postern passwd: the passwords do not match\n");
		break;
	case READ_ERROR:
		fprintf(stderr, "postern passwd: cannot read the password: %s\n", strerror(errno));
		break;
	case READ_OK:
		break;
	}
	return 1;
}

static int passwd_check(const char *hash, const char *password)
{
	if (strncmp(hash, "$argon2id$", 10) != 0) {
		fprintf(stderr, "postern passwd: not an argon2id hash\n");
		return 1;
	}
	if (!password_verify(hash, password)) {
		fprintf(stderr, "postern passwd: password does not match\n");
		return 1;
	}
	return 0;
}

static int passwd_print_hash(const char *password)
{
	char hash[crypto_pwhash_STRBYTES];

	if (password_hash(password, hash, sizeof(hash)) < 0) {
		fprintf(stderr, "postern passwd: hashing failed (out of memory?)\n");
		return 1;
	}
	printf("%s\n", hash);
	return fflush(stdout) == 0 ? 0 : 1;
}

int cli_passwd(int argc, char **argv)
{
	char password[PASSWORD_MAX + 1];
	const char *check = NULL;
	enum read_status st;
	int rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		passwd_usage(stdout);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "--check") == 0) {
		check = argv[2];
	} else if (argc != 1) {
		passwd_usage(stderr);
		return 2;
	}
	st = password_read(check == NULL, password, sizeof(password));
	if (st != READ_OK) {
		rc = passwd_report_read_error(st);
	} else if (password[0] == '\0') {
		fprintf(stderr, "postern passwd: empty password refused\n");
		rc = 1;
	} else if (check != NULL) {
		rc = passwd_check(check, password);
	} else {
		rc = passwd_print_hash(password);
	}
	sodium_memzero(password, sizeof(password));
	return rc;
}
