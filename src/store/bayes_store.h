/*
 * The Bayesian filter's token database: per token hash, how many learned
 * spam and ham messages held it and the day it was last learned; the
 * number of messages learned of each class; and the digests of learned
 * messages (so one message is never counted twice).
 *
 * The interface is a table of operations so that a shared backend (Redis,
 * for a cluster) can take the SQLite one's place. Every operation is
 * thread-safe: lookups run concurrently from the worker pool, changes are
 * serialized inside the backend.
 */
#ifndef POSTERN_STORE_BAYES_STORE_H
#define POSTERN_STORE_BAYES_STORE_H

#include <stddef.h>
#include <stdint.h>

struct bayes_counts {
	uint32_t spam;
	uint32_t ham;
};

struct bayes_totals {
	uint64_t spam;             /* messages learned as spam */
	uint64_t ham;
	uint64_t tokens;           /* distinct tokens known */
};

enum bayes_class {
	BAYES_CLASS_NONE = 0,
	BAYES_CLASS_SPAM = 1,
	BAYES_CLASS_HAM = 2,
};

#define BAYES_DIGEST_LEN 16

struct bayes_store_ops {
	/* Counts of tokens[i] into out[i] ({0,0} when unknown) and the totals, as one snapshot. */
	void (*lookup)(void *be, const uint64_t *tokens, size_t n, struct bayes_counts *out,
		       struct bayes_totals *totals);
	/*
	 * Count one message of class cls holding these n distinct tokens:
	 * delta +1 learns it, -1 unlearns it (counts never go below 0).
	 * `day` (days since the epoch) becomes the tokens' last-seen day when
	 * learning. Returns 0, or -1 with the reason logged.
	 */
	int (*train)(void *be, const uint64_t *tokens, size_t n, enum bayes_class cls, int delta, uint32_t day);
	/* The class a message of this digest was learned as, BAYES_CLASS_NONE if never; -1 on error. */
	int (*seen_get)(void *be, const unsigned char digest[BAYES_DIGEST_LEN], enum bayes_class *cls);
	/* Record (or, with BAYES_CLASS_NONE, drop) a learned message's digest. */
	int (*seen_set)(void *be, const unsigned char digest[BAYES_DIGEST_LEN], enum bayes_class cls);
	/* Make every change so far durable. */
	int (*flush)(void *be);
	/*
	 * Drop tokens last seen before today - max_age_days whose spam + ham
	 * count is at most max_count. Returns how many were dropped, -1 on error.
	 */
	long (*expire)(void *be, uint32_t today, uint32_t max_age_days, uint32_t max_count);
	/*
	 * Take in what other writers (another process on the same database)
	 * learned since we last read it: 1 when the counts were reloaded, 0
	 * when there was nothing new, -1 on error (logged; the counts held
	 * so far stay). May be NULL for a backend that shares one copy and
	 * so never goes stale. Not concurrently with close.
	 */
	int (*refresh)(void *be);
	/* Flush and release everything. */
	void (*close)(void *be);
};

struct bayes_store {
	const struct bayes_store_ops *ops;
	void *be;
};

/*
 * The SQLite backend: every token is held in memory (an open-addressed
 * hash table behind a read-write lock, about 32 bytes a token) and
 * changes are written behind in batches — when enough have gathered, a
 * few seconds after the first unwritten one, on flush and on close. What
 * is written are differences (count = count + delta), so two processes
 * learning into one file (the gateway's autolearn and `postern learn`)
 * add up rather than overwrite each other. NULL with err filled when the
 * database cannot be opened or read.
 *
 * What another process learns reaches this copy through refresh: when
 * SQLite's data_version says another connection committed since the last
 * load, our pending changes are written, the file is read whole into a
 * new table (for a while two copies are held) with learning and lookups
 * going on meanwhile, and the new table is swapped in under the lock.
 * Changes made during the reload are carried onto the new table; should a
 * flush or an expiry run during the reload, what it wrote is in the file
 * but not in the new table, and the next refresh reloads again to bring
 * it (our own commits alone would not prompt one). A refresh with nothing
 * to reload writes behind changes that have waited long enough. The
 * learned-message digests are not cached (seen_get reads the file past
 * our own unwritten ones), so they need no reload.
 */
struct bayes_store *bayes_store_open_sqlite(const char *path, char *err, size_t errlen);
/* Closes the backend and frees the store; NULL is fine. */
void bayes_store_close(struct bayes_store *s);

/* Today as days since the epoch, the unit of the last-seen day. */
uint32_t bayes_store_today(void);

#endif
