#include "unit.h"

#include "core/strbuf.h"
#include "smtp/smtp_data.h"

static void collect(void *arg, const char *p, size_t n)
{
	strbuf_append(arg, p, n);
}

/* Decode in one piece; return consumed count, output in out. */
static size_t decode(const char *in, enum bare_newline_policy p, bool dot, struct strbuf *out,
		     struct smtp_data_decoder *d)
{
	size_t n;

	strbuf_init(out, 1 << 20);
	smtp_data_init(d, dot, p, 1000);
	n = smtp_data_feed(d, in, strlen(in), collect, out);
	if (!dot)
		smtp_data_finish(d, collect, out);
	return n;
}

TEST(data_plain_end)
{
	struct smtp_data_decoder d;
	struct strbuf out;
	const char *in = "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
	size_t n = decode(in, BARE_NEWLINE_NORMALIZE, true, &out, &d);

	CHECK_INT(d.state, SMTP_DATA_DONE);
	CHECK_INT(n, strlen(in) - strlen("QUIT\r\n"));
	CHECK_STR(out.data, "Subject: x\r\n\r\nhello\r\n");
	CHECK(!d.bare_newline_seen);
	strbuf_free(&out);
}

TEST(data_empty_message)
{
	struct smtp_data_decoder d;
	struct strbuf out;

	decode(".\r\n", BARE_NEWLINE_NORMALIZE, true, &out, &d);
	CHECK_INT(d.state, SMTP_DATA_DONE);
	CHECK_INT(out.len, 0);
	strbuf_free(&out);
}

TEST(data_dot_unstuffing)
{
	struct smtp_data_decoder d;
	struct strbuf out;

	decode("..a\r\n...\r\n..\r\nx.y\r\n.\r\n", BARE_NEWLINE_NORMALIZE, true, &out, &d);
	CHECK_INT(d.state, SMTP_DATA_DONE);
	CHECK_STR(out.data, ".a\r\n..\r\n.\r\nx.y\r\n");
	strbuf_free(&out);
}

/* Every known smuggling end-marker variant must be content, never an end. */
TEST(data_smuggling_variants_are_not_ends)
{
	static const char *variants[] = { "\n.\n", "\r.\r", "\r\n.\r", "\n.\r\n", "\r.\r\n",
					  "\r\n.\n", "\n.\r", ".\n" };

	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		for (int policy = 0; policy < 2; policy++) {
			struct smtp_data_decoder d;
			struct strbuf out;
			char in[256];
			size_t n;

			snprintf(in, sizeof(in), "a%sMAIL FROM:<evil@x>\r\nDATA\r\nz\r\n.\r\nNEXT",
				 variants[v]);
			n = decode(in, policy ? BARE_NEWLINE_NORMALIZE : BARE_NEWLINE_REJECT, true,
				   &out, &d);
			CHECK_INT(d.state, SMTP_DATA_DONE);
			CHECK_INT(n, strlen(in) - 4);
			CHECK(strstr(out.data, "MAIL FROM:<evil@x>") != NULL);
			CHECK(d.bare_newline_seen);
			strbuf_free(&out);
		}
	}
}

TEST(data_normalize_bare_newlines)
{
	struct smtp_data_decoder d;
	struct strbuf out;

	decode("a\nb\rc\r\n.\r\n", BARE_NEWLINE_NORMALIZE, true, &out, &d);
	CHECK_STR(out.data, "a\r\nb\r\nc\r\n");
	CHECK(d.bare_newline_seen);
	strbuf_free(&out);
}

TEST(data_byte_by_byte_equals_whole)
{
	const char *in = "H: v\r\n\r\n..dot\r\nbare\nlf\r\r\nx\r\n.\r\nREST";
	struct smtp_data_decoder whole, split;
	struct strbuf a, b;
	size_t consumed = 0;

	decode(in, BARE_NEWLINE_NORMALIZE, true, &a, &whole);
	strbuf_init(&b, 1 << 20);
	smtp_data_init(&split, true, BARE_NEWLINE_NORMALIZE, 1000);
	for (size_t i = 0; i < strlen(in) && split.state != SMTP_DATA_DONE; i++)
		consumed += smtp_data_feed(&split, in + i, 1, collect, &b);
	CHECK_STR(b.data, a.data);
	CHECK_INT(consumed, strlen(in) - 4);
	strbuf_free(&a);
	strbuf_free(&b);
}

TEST(data_line_too_long)
{
	struct smtp_data_decoder d;
	struct strbuf out;
	char in[2100];

	memset(in, 'x', 1001);
	strcpy(in + 1001, "\r\n.\r\n");
	decode(in, BARE_NEWLINE_NORMALIZE, true, &out, &d);
	CHECK(d.line_too_long);
	strbuf_free(&out);

	memset(in, 'x', 1000);
	strcpy(in + 1000, "\r\n.\r\n");
	decode(in, BARE_NEWLINE_NORMALIZE, true, &out, &d);
	CHECK(!d.line_too_long);
	strbuf_free(&out);
}

TEST(data_bdat_has_no_end_marker)
{
	struct smtp_data_decoder d;
	struct strbuf out;
	const char *in = "a\r\n.\r\nb\r";
	size_t n = decode(in, BARE_NEWLINE_NORMALIZE, false, &out, &d);

	CHECK_INT(n, strlen(in));
	CHECK_STR(out.data, "a\r\n.\r\nb\r\n");
	strbuf_free(&out);
}
