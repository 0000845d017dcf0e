/*
 * RFC 4648 base64 without any leniency: SASL exchanges (RFC 4954) are the
 * main input and a strict decoder keeps two encodings of one credential
 * from both being accepted.
 */
#include "core/base64.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long base64_encode(const void *in, size_t inlen, char *out, size_t outlen)
{
	const unsigned char *p = in;
	size_t need, o = 0;

	if (inlen > (SIZE_MAX - 1) / 4 * 3 - 2)
		return -1;
	need = (inlen + 2) / 3 * 4;
	if (outlen < need + 1)
		return -1;
	for (size_t i = 0; i < inlen; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = inlen - i;

		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[o++] = base64_alphabet[(v >> 18) & 0x3f];
		out[o++] = base64_alphabet[(v >> 12) & 0x3f];
		out[o++] = left > 1 ? base64_alphabet[(v >> 6) & 0x3f] : '=';
		out[o++] = left > 2 ? base64_alphabet[v & 0x3f] : '=';
	}
	out[o] = '\0';
	return (long)o;
}

/* The 6-bit value of an alphabet character, -1 for anything else. */
static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Padding is only legal in the last quantum ("xx==" or "xxx="), and the
 * bits it discards must be zero, so every byte string has exactly one
 * accepted encoding.
 */
long base64_decode(const char *in, size_t inlen, void *out, size_t outlen)
{
	unsigned char *o = out;
	size_t pad = 0, need;

	if (inlen % 4 != 0)
		return -1;
	if (inlen > 0 && in[inlen - 1] == '=')
		pad = in[inlen - 2] == '=' ? 2 : 1;
	need = inlen / 4 * 3 - pad;
	if (need > outlen || need > (size_t)LONG_MAX)
		return -1;
	for (size_t i = 0, n = 0; i < inlen; i += 4) {
		bool last = i + 4 == inlen;
		int v[4];
		uint32_t q = 0;

		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];

			if (c == '=' && last && k >= 4 - (int)pad) {
				v[k] = 0;
				continue;
			}
			if ((v[k] = base64_value(c)) < 0)
				return -1;
		}
		q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		if (last && pad == 2 && (q & 0xffff) != 0)
			return -1;
		if (last && pad == 1 && (q & 0xff) != 0)
			return -1;
		o[n++] = (unsigned char)(q >> 16);
		if (!(last && pad == 2))
			o[n++] = (unsigned char)(q >> 8);
		if (!(last && pad >= 1))
			o[n++] = (unsigned char)q;
	}
	return (long)need;
}
