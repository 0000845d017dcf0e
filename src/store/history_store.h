/*
 * The sender history store (content/sender_history.h): per sender key,
 * decayed ham and spam counts as of a time. An operations table so that a
 * shared (Redis) backend can take the SQLite one's place in a cluster.
 * Thread-safe.
 */
#ifndef POSTERN_STORE_HISTORY_STORE_H
#define POSTERN_STORE_HISTORY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct history_counts {
	double ham;                    /* decayed to `as_of` */
	double spam;
	int64_t as_of;                 /* unix time the counts were last brought up to date */
};

struct history_store_ops {
	/* The counts of key, {0,0,0} when unknown: 0, or -1 on error. */
	int (*get)(void *be, const char *key, struct history_counts *out);
	/*
	 * Decay key's counts to now with half_life, then add ham_delta and
	 * spam_delta (one message: 1 and 0, or 0 and 1). 0, or -1 on error.
	 */
	int (*add)(void *be, const char *key, double ham_delta, double spam_delta, int64_t now,
		   uint32_t half_life);
	/* Drop keys not updated since before. How many, -1 on error. */
	long (*expire)(void *be, int64_t before);
	void (*close)(void *be);
};

struct history_store {
	const struct history_store_ops *ops;
	void *be;
};

/* Decay c to now (half_life seconds). */
void history_counts_decay(struct history_counts *c, int64_t now, uint32_t half_life);

/*
 * The SQLite backend (WAL): an in-memory cache of the keys seen, written
 * behind in batches like the Bayes store. NULL with err filled when the
 * database cannot be opened.
 */
struct history_store *history_store_open_sqlite(const char *path, char *err, size_t errlen);
void history_store_close(struct history_store *s);

#endif
