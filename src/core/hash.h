/*
 * Hashing shared by the tables: a keyed hash for keys a sender chooses
 * (addresses, host names: with a per-process random key nobody can
 * craft collisions to cluster a table), and a 64-bit finaliser for
 * values that are already well spread or not attacker-chosen.
 */
#ifndef POSTERN_CORE_HASH_H
#define POSTERN_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_KEY_BYTES 16

struct hash_key {
	unsigned char bytes[HASH_KEY_BYTES];
};

/* A fresh random key (libsodium's generator; panics if libsodium cannot start). */
void hash_key_init(struct hash_key *key);
/* SipHash-2-4 of data under key, as 64 bits. */
uint64_t hash_keyed(const struct hash_key *key, const void *data, size_t len);
/* splitmix64's finaliser: every input bit reaches every output bit. */
uint64_t hash_mix64(uint64_t x);

#endif
