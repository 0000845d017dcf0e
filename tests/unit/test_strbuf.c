#include <stdlib.h>

#include "core/strbuf.h"
#include "unit.h"

TEST(strbuf_append_and_nul_termination)
{
	struct strbuf sb;

	strbuf_init(&sb, 1024);
	CHECK_INT(strbuf_append(&sb, "abc", 3), 0);
	CHECK_INT(strbuf_appends(&sb, "def"), 0);
	CHECK_INT(sb.len, 6);
	CHECK_STR(sb.data, "abcdef");
	CHECK_INT(strbuf_append(&sb, "", 0), 0);
	CHECK_INT(sb.len, 6);
	CHECK_INT(strbuf_append(&sb, "x\0y", 3), 0);
	CHECK_INT(sb.len, 9);
	CHECK(memcmp(sb.data, "abcdefx\0y", 10) == 0);
	strbuf_free(&sb);
	CHECK(sb.data == NULL);
	CHECK_INT(sb.len, 0);
}

TEST(strbuf_limit_is_exact_and_failure_changes_nothing)
{
	struct strbuf sb;

	strbuf_init(&sb, 8);
	CHECK_INT(strbuf_appends(&sb, "12345"), 0);
	CHECK_INT(strbuf_appends(&sb, "6789"), -1);
	CHECK_INT(sb.len, 5);
	CHECK_STR(sb.data, "12345");
	CHECK_INT(strbuf_appends(&sb, "678"), 0);
	CHECK_INT(sb.len, 8);
	CHECK_STR(sb.data, "12345678");
	CHECK_INT(strbuf_append(&sb, "9", 1), -1);
	CHECK_INT(strbuf_appendf(&sb, "%d", 9), -1);
	CHECK_STR(sb.data, "12345678");
	CHECK_INT(strbuf_append(&sb, "", 0), 0);
	strbuf_free(&sb);
}

TEST(strbuf_limit_zero_and_huge_length)
{
	struct strbuf sb;

	strbuf_init(&sb, 0);
	CHECK_INT(strbuf_append(&sb, "a", 1), -1);
	CHECK_INT(strbuf_append(&sb, "", 0), 0);
	CHECK_STR(sb.data, "");
	strbuf_free(&sb);

	strbuf_init(&sb, 16);
	CHECK_INT(strbuf_append(&sb, "ab", 2), 0);
	/* a length that would overflow len + extra must fail, not wrap */
	CHECK_INT(strbuf_append(&sb, "x", (size_t)-1), -1);
	CHECK_INT(sb.len, 2);
	strbuf_free(&sb);
}

TEST(strbuf_appendf_formats_and_grows)
{
	struct strbuf sb;
	char want[64];

	strbuf_init(&sb, 1 << 20);
	CHECK_INT(strbuf_appendf(&sb, "%s=%d;", "n", 42), 0);
	CHECK_INT(strbuf_appendf(&sb, "%05u|%x", 7u, 255u), 0);
	CHECK_STR(sb.data, "n=42;00007|ff");
	strbuf_reset(&sb);
	for (int i = 0; i < 10000; i++)
		CHECK_INT(strbuf_appendf(&sb, "%04d", i % 10000), 0);
	CHECK_INT(sb.len, 40000);
	CHECK(sb.cap > sb.len);
	snprintf(want, sizeof(want), "%04d", 9999);
	CHECK(memcmp(sb.data + 39996, want, 4) == 0);
	CHECK_INT(sb.data[40000], '\0');
	strbuf_free(&sb);
}

TEST(strbuf_reset_keeps_buffer)
{
	struct strbuf sb;
	char *before;

	strbuf_init(&sb, 100);
	strbuf_reset(&sb);
	CHECK(sb.data == NULL);
	CHECK_INT(strbuf_appends(&sb, "hello"), 0);
	before = sb.data;
	strbuf_reset(&sb);
	CHECK_INT(sb.len, 0);
	CHECK_STR(sb.data, "");
	CHECK(sb.data == before);
	CHECK_INT(strbuf_appends(&sb, "again"), 0);
	CHECK_STR(sb.data, "again");
	strbuf_free(&sb);
}

TEST(strbuf_detach_hands_over_and_resets)
{
	struct strbuf sb;
	size_t len = 99;
	char *s;

	strbuf_init(&sb, 100);
	s = strbuf_detach(&sb, &len);
	CHECK_STR(s, "");
	CHECK_INT(len, 0);
	free(s);

	CHECK_INT(strbuf_appendf(&sb, "id=%s", "ABC"), 0);
	s = strbuf_detach(&sb, &len);
	CHECK_STR(s, "id=ABC");
	CHECK_INT(len, 6);
	CHECK(sb.data == NULL);
	CHECK_INT(sb.len, 0);
	CHECK_INT(sb.cap, 0);
	CHECK_INT(sb.limit, 100);
	free(s);

	CHECK_INT(strbuf_appends(&sb, "reused"), 0);
	s = strbuf_detach(&sb, NULL);
	CHECK_STR(s, "reused");
	free(s);
	strbuf_free(&sb);
}
