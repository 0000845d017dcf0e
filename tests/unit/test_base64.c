#include "unit.h"

#include "core/base64.h"

static const struct {
	const char *plain;
	const char *encoded;
} rfc4648_vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

TEST(base64_rfc4648_vectors)
{
	for (size_t i = 0; i < sizeof(rfc4648_vectors) / sizeof(rfc4648_vectors[0]); i++) {
		const char *plain = rfc4648_vectors[i].plain, *enc = rfc4648_vectors[i].encoded;
		char out[32], dec[32];
		long n;

		CHECK_INT(base64_encode(plain, strlen(plain), out, sizeof(out)), strlen(enc));
		CHECK_STR(out, enc);
		n = base64_decode(enc, strlen(enc), dec, sizeof(dec));
		CHECK_INT(n, strlen(plain));
		CHECK(n >= 0 && memcmp(dec, plain, (size_t)n) == 0);
	}
}

TEST(base64_binary_round_trip)
{
	unsigned char in[256], dec[256];
	char enc[400];

	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)(255 - i);
	for (size_t len = 0; len <= sizeof(in); len++) {
		long n = base64_encode(in, len, enc, sizeof(enc));

		CHECK_INT(n, (len + 2) / 3 * 4);
		CHECK_INT(base64_decode(enc, (size_t)n, dec, sizeof(dec)), len);
		CHECK(memcmp(in, dec, len) == 0);
	}
}

TEST(base64_rejects_malformed)
{
	static const char *const bad[] = {
		"Zg",           /* padding missing */
		"Zg=",          /* padding incomplete */
		"Z===",         /* too much padding */
		"====",
		"=",            /* RFC 4954 empty response: the caller's business */
		"Zg==Zg==",     /* padding in the middle */
		"Zm=v",
		"Zh==",         /* non-zero bits under the padding */
		"Zm9=",
		"Zm9v\n",       /* whitespace */
		"Zm 9v",
		" Zm9v",
		"Zm9v\r\n",
		"Zm9v-_==",     /* URL-safe alphabet is a different encoding */
		"Zm9v*A==",
		"Zm9vYmFy=",
	};
	char out[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	}
}

TEST(base64_decode_nul_inside_input)
{
	char out[8];

	CHECK_INT(base64_decode("Zm\0v", 4, out, sizeof(out)), -1);
}

TEST(base64_output_limits)
{
	char enc[9], dec[6];

	/* "foobar" needs 8 characters and the NUL. */
	CHECK_INT(base64_encode("foobar", 6, enc, 8), -1);
	CHECK_INT(base64_encode("foobar", 6, enc, 9), 8);
	CHECK_INT(base64_encode("", 0, enc, 0), -1);
	CHECK_INT(base64_encode("", 0, enc, 1), 0);
	CHECK_STR(enc, "");
	CHECK_INT(base64_decode("Zm9vYmFy", 8, dec, 5), -1);
	CHECK_INT(base64_decode("Zm9vYmFy", 8, dec, 6), 6);
	CHECK_INT(base64_decode("Zm9vYg==", 8, dec, 4), 4);
	CHECK_INT(base64_decode("Zm9vYg==", 8, dec, 3), -1);
}
