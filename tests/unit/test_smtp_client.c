/* The I/O-free SMTP client pieces: replies, EHLO keywords, dot-stuffing. */
#include <stdlib.h>

#include "smtp/smtp_client.h"
#include "unit.h"

static enum smtp_reply_state feed(struct smtp_reply *r, const char *line)
{
	const char *text;
	size_t len;

	return smtp_reply_feed(r, line, strlen(line), &text, &len);
}

TEST(smtp_reply_single_and_multiline)
{
	struct smtp_reply r;

	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, "250 2.1.0 Ok"), SMTP_REPLY_DONE);
	CHECK_INT(r.code, 250);
	CHECK_STR(r.text, "250 2.1.0 Ok");

	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, "550-5.1.1 first"), SMTP_REPLY_MORE);
	CHECK_INT(feed(&r, "550-5.1.1 second"), SMTP_REPLY_MORE);
	CHECK_INT(feed(&r, "550 5.1.1 last"), SMTP_REPLY_DONE);
	CHECK_INT(r.code, 550);
	CHECK_INT(r.nlines, 3);
	CHECK_STR(r.text, "550 5.1.1 first");

	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, "354"), SMTP_REPLY_DONE);   /* code alone is a last line */
	CHECK_STR(r.text, "354");
}

TEST(smtp_reply_malformed)
{
	static const char *bad[] = { "", "25", "250x", "abc ok", "650 no", "199 no", "2a0 x", "25 0" };
	struct smtp_reply r;
	char long_line[SMTP_REPLY_LINE_MAX + 2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		smtp_reply_reset(&r);
		CHECK_INT(feed(&r, bad[i]), SMTP_REPLY_MALFORMED);
	}
	/* a continuation must keep the code */
	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, "250-a"), SMTP_REPLY_MORE);
	CHECK_INT(feed(&r, "251 b"), SMTP_REPLY_MALFORMED);
	/* at most SMTP_REPLY_LINES_MAX lines */
	smtp_reply_reset(&r);
	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		CHECK_INT(feed(&r, "250-x"), SMTP_REPLY_MORE);
	CHECK_INT(feed(&r, "250 x"), SMTP_REPLY_MALFORMED);
	/* and lines of at most SMTP_REPLY_LINE_MAX bytes */
	memset(long_line, 'a', sizeof(long_line) - 1);
	memcpy(long_line, "250 ", 4);
	long_line[sizeof(long_line) - 1] = '\0';
	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, long_line), SMTP_REPLY_MALFORMED);
	long_line[sizeof(long_line) - 2] = '\0';
	smtp_reply_reset(&r);
	CHECK_INT(feed(&r, long_line), SMTP_REPLY_DONE);
	CHECK_INT(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
}

TEST(smtp_reply_text_is_cleaned)
{
	struct smtp_reply r;
	const char line[] = "550 bad\x01\ttext\x7f";
	const char *text;
	size_t len;

	smtp_reply_reset(&r);
	CHECK_INT(smtp_reply_feed(&r, line, sizeof(line) - 1, &text, &len), SMTP_REPLY_DONE);
	CHECK_STR(r.text, "550 bad??text?");
	CHECK_INT(len, sizeof(line) - 1 - 4);
}

TEST(smtp_ext_keywords)
{
	static const char *lines[] = { "PIPELINING", "size 10240000", "8BITMIME", "SMTPUTF8", "DSN",
				       "STARTTLS", "CHUNKING", "BINARYMIME", "ENHANCEDSTATUSCODES",
				       "AUTH PLAIN LOGIN", "DSNX", "PIPELININGX" };
	struct smtp_ext ext = { 0 };

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		smtp_ext_parse(&ext, lines[i], strlen(lines[i]));
	CHECK_INT(ext.flags, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
			     SMTP_EXT_DSN | SMTP_EXT_STARTTLS | SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME |
			     SMTP_EXT_ENHANCEDSTATUSCODES);
	CHECK_INT(ext.size_max, 10240000);

	memset(&ext, 0, sizeof(ext));
	smtp_ext_parse(&ext, "SIZE", 4);
	CHECK_INT(ext.flags, SMTP_EXT_SIZE);
	CHECK_INT(ext.size_max, 0);
	smtp_ext_parse(&ext, "SIZE 12x", 8);
	CHECK_INT(ext.size_max, 0);
	/* beyond 64 bits is no practical limit */
	smtp_ext_parse(&ext, "SIZE 99999999999999999999999", 27);
	CHECK_INT(ext.size_max, 0);
}

/* Stuff in pieces of every size: the result must not depend on the split. */
TEST(smtp_dotstuff_any_split)
{
	const char msg[] = ".a\r\n..b\r\nc.d\r\n.\r\n\r\n.";
	const char want[] = "..a\r\n...b\r\nc.d\r\n..\r\n\r\n..\r\n.\r\n";
	char out[128], end[5];

	for (size_t piece = 1; piece <= sizeof(msg) - 1; piece++) {
		struct smtp_dotstuff ds;
		size_t o = 0, n;

		smtp_dotstuff_init(&ds);
		for (size_t i = 0; i < sizeof(msg) - 1; i += piece) {
			n = sizeof(msg) - 1 - i < piece ? sizeof(msg) - 1 - i : piece;
			o += smtp_dotstuff(&ds, msg + i, n, out + o);
		}
		n = smtp_dotstuff_end(&ds, end);
		memcpy(out + o, end, n);
		out[o + n] = '\0';
		CHECK_STR(out, want);
	}
}

TEST(smtp_dotstuff_end_after_crlf)
{
	struct smtp_dotstuff ds;
	char out[16], end[5];
	size_t n;

	smtp_dotstuff_init(&ds);
	n = smtp_dotstuff(&ds, "x\r\n", 3, out);
	CHECK_INT(n, 3);
	CHECK_INT(smtp_dotstuff_end(&ds, end), 3);
	CHECK(memcmp(end, ".\r\n", 3) == 0);
	/* an empty message is just the terminator */
	smtp_dotstuff_init(&ds);
	CHECK_INT(smtp_dotstuff_end(&ds, end), 3);
}
