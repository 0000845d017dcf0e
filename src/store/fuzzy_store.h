/*
 * The fuzzy checksum store: MinHash signatures of spam (content/fuzzy.h)
 * with how often and when they were last seen. Lookups find the stored
 * signature most similar to a query among those that share at least one
 * LSH band (FUZZY_BANDS bands of FUZZY_HASHES / FUZZY_BANDS values each),
 * so a lookup costs a few hash probes, not a scan.
 *
 * An operations table, like the Bayes store's, so that a shared (Redis)
 * backend can take the SQLite one's place in a cluster. Thread-safe:
 * lookups run concurrently from the worker pool.
 */
#ifndef POSTERN_STORE_FUZZY_STORE_H
#define POSTERN_STORE_FUZZY_STORE_H

#include <stddef.h>
#include <stdint.h>

#define FUZZY_HASHES 32
#define FUZZY_BANDS 8

struct fuzzy_match {
	int64_t id;                    /* the stored entry, 0: none */
	unsigned agree;                /* positions (of FUZZY_HASHES) equal to the query's */
	uint32_t hits;                 /* times learned or matched-and-learned */
	int64_t last_seen;             /* unix time */
};

struct fuzzy_store_ops {
	/* The stored entry agreeing with h in the most positions (ties: the newest); match.id 0 when none shares a band. */
	int (*lookup)(void *be, const uint64_t h[FUZZY_HASHES], struct fuzzy_match *match);
	/* Store a new entry seen now; its id in *id. */
	int (*add)(void *be, const uint64_t h[FUZZY_HASHES], int64_t now, int64_t *id);
	/* One more sighting of an entry. */
	int (*touch)(void *be, int64_t id, int64_t now);
	int (*remove)(void *be, int64_t id);
	/* Drop entries last seen before `before`; how many, -1 on error. */
	long (*expire)(void *be, int64_t before);
	/* Entries stored. */
	long (*count)(void *be);
	/*
	 * Take in what other writers (another process on the same database,
	 * such as `postern learn`) added, touched or removed since we last
	 * read it: 1 when the entries were reloaded, 0 when there was nothing
	 * new, -1 on error (logged; the entries held so far stay). May be NULL
	 * for a backend that shares one copy and so never goes stale. Not
	 * concurrently with close.
	 */
	int (*refresh)(void *be);
	void (*close)(void *be);
};

struct fuzzy_store {
	const struct fuzzy_store_ops *ops;
	void *be;
};

/*
 * The SQLite backend: every entry is kept in memory with a band index,
 * and written through to the database (WAL) so a restart keeps them.
 * NULL with err filled when the database cannot be opened or read.
 *
 * What another process writes reaches this copy through refresh: when
 * SQLite's data_version says another connection committed since the last
 * read (our own commits never move it), the file is read whole into new
 * arrays and band tables while lookups go on (for a while two copies are
 * held), and they are swapped in under the lock. Changes through this
 * store wait for the read, so none is lost.
 */
struct fuzzy_store *fuzzy_store_open_sqlite(const char *path, char *err, size_t errlen);
void fuzzy_store_close(struct fuzzy_store *s);

#endif
