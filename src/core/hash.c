/* Shared hashing (see hash.h). */
#include "core/hash.h"

#include <string.h>

#include <sodium.h>

#define LOG_MODULE "hash"
#include "core/log.h"

_Static_assert(HASH_KEY_BYTES == crypto_shorthash_KEYBYTES, "SipHash key size");

void hash_key_init(struct hash_key *key)
{
	if (sodium_init() < 0)
		panic("sodium_init failed");
	randombytes_buf(key->bytes, sizeof(key->bytes));
}

uint64_t hash_keyed(const struct hash_key *key, const void *data, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, data, len, key->bytes);
	memcpy(&h, out, sizeof(h));
	return h;
}

uint64_t hash_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}
