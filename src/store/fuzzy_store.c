/*
 * The fuzzy checksum store on SQLite (see fuzzy_store.h).
 *
 * Why everything is in memory: every message is looked up, and a lookup
 * must find the best of many stored signatures in microseconds without
 * touching the database. The entries sit in an array sorted by id (SQLite
 * AUTOINCREMENT ids only grow, so appending keeps the order and an id is
 * found by binary search); each LSH band has an open-addressed table from
 * the band's hash to entry indexes. Removing an entry only marks it dead;
 * the array and the band tables are rebuilt without dead entries once
 * enough have gathered, and by expiry and eviction.
 *
 * Writes are rare (only spam is learned) and go straight to the database.
 * Locking: `writer` serializes every change and is the only user of the
 * SQLite connection; `lock` (read-write) guards the in-memory copy, which
 * the writer changes only under the write lock, so lookups run
 * concurrently and never wait for the disk.
 *
 * Other writers (`postern learn` on the same file) are noticed through
 * the connection's PRAGMA data_version, which moves when another
 * connection commits but not when ours does. A refresh then reads the
 * whole table again, holding `writer` (so no change of ours can slip
 * between the read and the swap, and nothing needs carrying over) but not
 * `lock`, and swaps the new copy in. Reading everything rather than only
 * the new ids is what sees the other side's touches and removals too; it
 * is done only when something changed, which operators' runs make rare.
 */
#include "store/fuzzy_store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"

#define LOG_MODULE "fuzzy"
#include "core/log.h"
#include "store/sqlite_open.h"

#define FUZZY_BUSY_MS 5000              /* wait this long for another process's write lock */
#define FUZZY_MAX_ENTRIES 1000000       /* memory bound: about 400 bytes an entry with the index */
#define FUZZY_EVICT_SHARE 100           /* when full, drop the oldest 1/this of the entries at once */
#define FUZZY_BAND_VALUES (FUZZY_HASHES / FUZZY_BANDS)
#define FUZZY_BLOB_LEN (FUZZY_HASHES * 8)
#define FUZZY_TABLE_MIN 1024

static const char fuzzy_schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS entries ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, h BLOB NOT NULL, hits INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS entries_last_seen ON entries (last_seen);";

enum fuzzy_stmt {
	FS_BEGIN,
	FS_COMMIT,
	FS_ROLLBACK,
	FS_ADD,
	FS_TOUCH,
	FS_REMOVE,
	FS_EXPIRE,
	FS_LOAD,
	FS_DATA_VERSION,
	FS_NSTMTS,
};

static const char *const fuzzy_sql[FS_NSTMTS] = {
	[FS_BEGIN] = "BEGIN IMMEDIATE",
	[FS_COMMIT] = "COMMIT",
	[FS_ROLLBACK] = "ROLLBACK",
	[FS_ADD] = "INSERT INTO entries (h, hits, last_seen) VALUES (?1, 1, ?2)",
	[FS_TOUCH] = "UPDATE entries SET hits = hits + 1, last_seen = max(last_seen, ?2) WHERE id = ?1",
	[FS_REMOVE] = "DELETE FROM entries WHERE id = ?1",
	[FS_EXPIRE] = "DELETE FROM entries WHERE last_seen < ?1",
	[FS_LOAD] = "SELECT id, h, hits, last_seen FROM entries ORDER BY id",
	[FS_DATA_VERSION] = "PRAGMA data_version",
};

static const struct store_sqlite_spec fuzzy_spec = {
	.what = NULL,
	.schema = fuzzy_schema,
	.sql = fuzzy_sql,
	.nsql = FS_NSTMTS,
	.busy_ms = FUZZY_BUSY_MS,
};

struct fz_entry {
	uint64_t h[FUZZY_HASHES];
	int64_t id;
	int64_t last_seen;
	uint32_t hits;
	bool dead;
};

/* One slot of a band table: ref is the entry's index + 1, 0 marks an empty slot. */
struct band_slot {
	uint32_t key;
	uint32_t ref;
};

struct band_table {
	struct band_slot *slots;
	size_t cap;                     /* power of two */
};

struct sqlite_be {
	sqlite3 *db;
	sqlite3_stmt *stmts[FS_NSTMTS];
	char *path;
	pthread_rwlock_t lock;
	pthread_mutex_t writer;
	struct fz_entry *entries;       /* sorted by id */
	size_t n, cap;
	size_t ndead;
	struct band_table bands[FUZZY_BANDS];
	int64_t data_version;           /* of db when the entries were last read */
};

/* The hash of band b of h: equal whenever all its values are equal. */
static uint32_t band_key(const uint64_t h[FUZZY_HASHES], unsigned b)
{
	uint64_t k = 0x9e3779b97f4a7c15ULL * (b + 1);

	for (unsigned j = 0; j < FUZZY_BAND_VALUES; j++)
		k = hash_mix64(k ^ h[b * FUZZY_BAND_VALUES + j]);
	return (uint32_t)(k >> 32);
}

static void band_insert(struct band_table *t, uint32_t key, uint32_t ref)
{
	size_t mask = t->cap - 1, i = hash_mix64(key) & mask;

	while (t->slots[i].ref != 0)
		i = (i + 1) & mask;
	t->slots[i].key = key;
	t->slots[i].ref = ref;
}

/* Band tables for entries[0..n) at a load of at most one half. */
static void bands_build(struct band_table bands[FUZZY_BANDS], const struct fz_entry *entries, size_t n)
{
	size_t cap = FUZZY_TABLE_MIN;

	while (cap < n * 2)
		cap *= 2;
	for (unsigned b = 0; b < FUZZY_BANDS; b++) {
		bands[b].cap = cap;
		bands[b].slots = xcalloc(cap, sizeof(*bands[b].slots));
		for (size_t i = 0; i < n; i++)
			band_insert(&bands[b], band_key(entries[i].h, b), (uint32_t)(i + 1));
	}
}

static void bands_free(struct band_table bands[FUZZY_BANDS])
{
	for (unsigned b = 0; b < FUZZY_BANDS; b++) {
		free(bands[b].slots);
		bands[b].slots = NULL;
		bands[b].cap = 0;
	}
}

/*
 * Make entries[0..n) (live, sorted by id, room for cap) the in-memory
 * copy. Its band tables are built while lookups go on over the old copy,
 * which only the swap, under the write lock, takes away; the caller holds
 * `writer` (or is opening), so nothing else changes the copy meanwhile.
 */
static void memory_install(struct sqlite_be *be, struct fz_entry *entries, size_t n, size_t cap)
{
	struct band_table bands[FUZZY_BANDS];
	struct fz_entry *old_entries;
	struct band_table old_bands[FUZZY_BANDS];

	bands_build(bands, entries, n);
	pthread_rwlock_wrlock(&be->lock);
	old_entries = be->entries;
	memcpy(old_bands, be->bands, sizeof(old_bands));
	be->entries = entries;
	be->n = n;
	be->cap = cap;
	be->ndead = 0;
	memcpy(be->bands, bands, sizeof(bands));
	pthread_rwlock_unlock(&be->lock);
	free(old_entries);
	bands_free(old_bands);
}

/* Replace the in-memory copy by the live entries for which keep() holds (all live ones when NULL). */
static void be_rebuild(struct sqlite_be *be, bool (*keep)(const struct fz_entry *, int64_t), int64_t arg)
{
	size_t n = 0, cap = be->n > 0 ? be->n : 1;
	struct fz_entry *entries = xreallocarray(NULL, cap, sizeof(*entries));

	for (size_t i = 0; i < be->n; i++) {
		if (!be->entries[i].dead && (keep == NULL || keep(&be->entries[i], arg)))
			entries[n++] = be->entries[i];
	}
	memory_install(be, entries, n, cap);
}

/* The index of the live entry id, or -1. */
static long entry_find(const struct sqlite_be *be, int64_t id)
{
	size_t lo = 0, hi = be->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (be->entries[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < be->n && be->entries[lo].id == id && !be->entries[lo].dead)
		return (long)lo;
	return -1;
}

static unsigned agreement(const uint64_t a[FUZZY_HASHES], const uint64_t b[FUZZY_HASHES])
{
	unsigned n = 0;

	for (unsigned i = 0; i < FUZZY_HASHES; i++)
		n += a[i] == b[i];
	return n;
}

static bool better_match(const struct fz_entry *e, unsigned agree, const struct fuzzy_match *best)
{
	if (best->id == 0 || agree != best->agree)
		return best->id == 0 || agree > best->agree;
	return e->last_seen > best->last_seen || (e->last_seen == best->last_seen && e->id > best->id);
}

static int sqlite_lookup(void *p, const uint64_t h[FUZZY_HASHES], struct fuzzy_match *match)
{
	struct sqlite_be *be = p;

	memset(match, 0, sizeof(*match));
	pthread_rwlock_rdlock(&be->lock);
	for (unsigned b = 0; b < FUZZY_BANDS; b++) {
		const struct band_table *t = &be->bands[b];
		uint32_t key = band_key(h, b);
		size_t mask = t->cap - 1;

		for (size_t i = hash_mix64(key) & mask; t->slots[i].ref != 0; i = (i + 1) & mask) {
			const struct fz_entry *e;
			unsigned agree;

			if (t->slots[i].key != key)
				continue;
			e = &be->entries[t->slots[i].ref - 1];
			if (e->dead)
				continue;
			agree = agreement(h, e->h);
			if (better_match(e, agree, match)) {
				match->id = e->id;
				match->agree = agree;
				match->hits = e->hits;
				match->last_seen = e->last_seen;
			}
		}
	}
	pthread_rwlock_unlock(&be->lock);
	return 0;
}

static int stmt_run(struct sqlite_be *be, enum fuzzy_stmt s)
{
	int rc = sqlite3_step(be->stmts[s]);

	sqlite3_reset(be->stmts[s]);
	sqlite3_clear_bindings(be->stmts[s]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static bool newer_than(const struct fz_entry *e, int64_t before)
{
	return e->last_seen >= before;
}

struct age {
	int64_t last_seen;
	int64_t id;
	size_t index;
};

static int age_cmp(const void *a, const void *b)
{
	const struct age *x = a, *y = b;

	if (x->last_seen != y->last_seen)
		return x->last_seen < y->last_seen ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Delete the entries ages[0..n) from the database in one transaction; the caller holds `writer`. */
static int delete_entries(struct sqlite_be *be, const struct age *ages, size_t n)
{
	if (stmt_run(be, FS_BEGIN) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(be->stmts[FS_REMOVE], 1, ages[i].id);
		if (stmt_run(be, FS_REMOVE) < 0) {
			stmt_run(be, FS_ROLLBACK);
			return -1;
		}
	}
	if (stmt_run(be, FS_COMMIT) < 0) {
		stmt_run(be, FS_ROLLBACK);
		return -1;
	}
	return 0;
}

/*
 * Make room when full: drop the oldest share of the entries (by last
 * sighting, then id) in one go, so the sort this takes is paid once per
 * FUZZY_MAX_ENTRIES / FUZZY_EVICT_SHARE additions. The caller holds `writer`.
 */
static int evict_oldest(struct sqlite_be *be)
{
	size_t live = be->n - be->ndead, want = live - FUZZY_MAX_ENTRIES + FUZZY_MAX_ENTRIES / FUZZY_EVICT_SHARE;
	struct age *ages = xreallocarray(NULL, live, sizeof(*ages));
	size_t k = 0;

	for (size_t i = 0; i < be->n; i++) {
		if (!be->entries[i].dead)
			ages[k++] = (struct age){ be->entries[i].last_seen, be->entries[i].id, i };
	}
	qsort(ages, live, sizeof(*ages), age_cmp);
	if (delete_entries(be, ages, want) < 0) {
		log_error("%s: dropping the oldest entries: %s", be->path, sqlite3_errmsg(be->db));
		free(ages);
		return -1;
	}
	pthread_rwlock_wrlock(&be->lock);
	for (size_t i = 0; i < want; i++)
		be->entries[ages[i].index].dead = true;
	be->ndead += want;
	pthread_rwlock_unlock(&be->lock);
	log_info("%s: full (%d entries): dropped the %zu last seen longest ago", be->path, FUZZY_MAX_ENTRIES, want);
	free(ages);
	be_rebuild(be, NULL, 0);
	return 0;
}

static void encode_hashes(const uint64_t h[FUZZY_HASHES], unsigned char blob[FUZZY_BLOB_LEN])
{
	for (unsigned i = 0; i < FUZZY_HASHES; i++) {
		for (unsigned j = 0; j < 8; j++)
			blob[i * 8 + j] = (unsigned char)(h[i] >> (8 * j));
	}
}

static void decode_hashes(const unsigned char blob[FUZZY_BLOB_LEN], uint64_t h[FUZZY_HASHES])
{
	for (unsigned i = 0; i < FUZZY_HASHES; i++) {
		h[i] = 0;
		for (unsigned j = 0; j < 8; j++)
			h[i] |= (uint64_t)blob[i * 8 + j] << (8 * j);
	}
}

/* Append a new entry (seen once) to the in-memory copy, growing it (and its band tables) as needed. */
static void memory_append(struct sqlite_be *be, const uint64_t h[FUZZY_HASHES], int64_t id, int64_t now)
{
	struct fz_entry *e;

	if (be->n > 0 && id <= be->entries[be->n - 1].id)
		panic("%s: new fuzzy id %lld not above %lld", be->path, (long long)id,
		      (long long)be->entries[be->n - 1].id);
	if (be->n == be->cap) {
		be->cap = be->cap ? be->cap * 2 : 1024;
		be->entries = xreallocarray(be->entries, be->cap, sizeof(*be->entries));
	}
	e = &be->entries[be->n++];
	memcpy(e->h, h, sizeof(e->h));
	e->id = id;
	e->last_seen = now;
	e->hits = 1;
	e->dead = false;
	if (be->n * 2 > be->bands[0].cap) {
		struct band_table bands[FUZZY_BANDS];

		bands_build(bands, be->entries, be->n);
		bands_free(be->bands);
		memcpy(be->bands, bands, sizeof(bands));
		return;
	}
	for (unsigned b = 0; b < FUZZY_BANDS; b++)
		band_insert(&be->bands[b], band_key(h, b), (uint32_t)be->n);
}

static int sqlite_add(void *p, const uint64_t h[FUZZY_HASHES], int64_t now, int64_t *id)
{
	struct sqlite_be *be = p;
	unsigned char blob[FUZZY_BLOB_LEN];
	sqlite3_stmt *st = be->stmts[FS_ADD];

	encode_hashes(h, blob);
	pthread_mutex_lock(&be->writer);
	if (be->n - be->ndead >= FUZZY_MAX_ENTRIES && evict_oldest(be) < 0) {
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	sqlite3_bind_blob(st, 1, blob, sizeof(blob), SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	if (stmt_run(be, FS_ADD) < 0) {
		log_error("%s: adding an entry: %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	*id = sqlite3_last_insert_rowid(be->db);
	pthread_rwlock_wrlock(&be->lock);
	memory_append(be, h, *id, now);
	pthread_rwlock_unlock(&be->lock);
	pthread_mutex_unlock(&be->writer);
	return 0;
}

static int sqlite_touch(void *p, int64_t id, int64_t now)
{
	struct sqlite_be *be = p;
	long i;

	pthread_mutex_lock(&be->writer);
	sqlite3_bind_int64(be->stmts[FS_TOUCH], 1, id);
	sqlite3_bind_int64(be->stmts[FS_TOUCH], 2, now);
	if (stmt_run(be, FS_TOUCH) < 0) {
		log_error("%s: updating entry %lld: %s", be->path, (long long)id, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	pthread_rwlock_wrlock(&be->lock);
	if ((i = entry_find(be, id)) >= 0) {
		struct fz_entry *e = &be->entries[i];

		if (e->hits < UINT32_MAX)
			e->hits++;
		if (now > e->last_seen)
			e->last_seen = now;
	}
	pthread_rwlock_unlock(&be->lock);
	pthread_mutex_unlock(&be->writer);
	return 0;
}

static int sqlite_remove(void *p, int64_t id)
{
	struct sqlite_be *be = p;
	long i;

	pthread_mutex_lock(&be->writer);
	sqlite3_bind_int64(be->stmts[FS_REMOVE], 1, id);
	if (stmt_run(be, FS_REMOVE) < 0) {
		log_error("%s: removing entry %lld: %s", be->path, (long long)id, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	pthread_rwlock_wrlock(&be->lock);
	if ((i = entry_find(be, id)) >= 0) {
		be->entries[i].dead = true;
		be->ndead++;
	}
	pthread_rwlock_unlock(&be->lock);
	/* Dead entries still cost memory and probes: drop them once they are a quarter. */
	if (be->ndead > FUZZY_TABLE_MIN && be->ndead * 4 > be->n)
		be_rebuild(be, NULL, 0);
	pthread_mutex_unlock(&be->writer);
	return 0;
}

static long sqlite_expire(void *p, int64_t before)
{
	struct sqlite_be *be = p;
	size_t live;

	pthread_mutex_lock(&be->writer);
	sqlite3_bind_int64(be->stmts[FS_EXPIRE], 1, before);
	if (stmt_run(be, FS_EXPIRE) < 0) {
		log_error("%s: expiring entries: %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	live = be->n - be->ndead;
	be_rebuild(be, newer_than, before);
	live -= be->n;
	pthread_mutex_unlock(&be->writer);
	return (long)live;
}

static long sqlite_count(void *p)
{
	struct sqlite_be *be = p;
	long n;

	pthread_rwlock_rdlock(&be->lock);
	n = (long)(be->n - be->ndead);
	pthread_rwlock_unlock(&be->lock);
	return n;
}

static void sqlite_be_free(struct sqlite_be *be)
{
	for (int i = 0; i < FS_NSTMTS; i++)
		sqlite3_finalize(be->stmts[i]);
	sqlite3_close(be->db);
	pthread_rwlock_destroy(&be->lock);
	pthread_mutex_destroy(&be->writer);
	free(be->entries);
	bands_free(be->bands);
	free(be->path);
	free(be);
}

static void sqlite_close(void *p)
{
	sqlite_be_free(p);
}

static int read_data_version(struct sqlite_be *be, int64_t *out)
{
	return store_sqlite_int64(be->stmts[FS_DATA_VERSION], out);
}

static uint32_t hits_of_column(sqlite3_int64 hits)
{
	return hits < 1 ? 1 : hits > UINT32_MAX ? UINT32_MAX : (uint32_t)hits;
}

/*
 * Read every entry of the file into a new array (sorted by id, as the
 * query asks), sized at first for about `expect`; rows whose hash blob
 * has the wrong size are skipped with a warning. The caller holds
 * `writer` or is opening. -1 on a database error, with nothing allocated.
 */
static int entries_read(struct sqlite_be *be, size_t expect, struct fz_entry **out, size_t *nout, size_t *capout)
{
	sqlite3_stmt *st = be->stmts[FS_LOAD];
	size_t n = 0, cap = expect > 0 ? expect : 1, bad = 0;
	struct fz_entry *entries = xreallocarray(NULL, cap, sizeof(*entries));
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *blob = sqlite3_column_blob(st, 1);
		struct fz_entry *e;

		if (blob == NULL || sqlite3_column_bytes(st, 1) != FUZZY_BLOB_LEN) {
			bad++;
			continue;
		}
		if (n == cap) {
			cap *= 2;
			entries = xreallocarray(entries, cap, sizeof(*entries));
		}
		e = &entries[n++];
		decode_hashes(blob, e->h);
		e->id = sqlite3_column_int64(st, 0);
		e->hits = hits_of_column(sqlite3_column_int64(st, 2));
		e->last_seen = sqlite3_column_int64(st, 3);
		e->dead = false;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		free(entries);
		return -1;
	}
	if (bad > 0)
		log_warn("%s: %zu entries with a malformed hash ignored", be->path, bad);
	*out = entries;
	*nout = n;
	*capout = cap;
	return 0;
}

/*
 * Read the file into memory. data_version is read first: a commit
 * slipping in before the entries are read is then noticed again by the
 * next refresh, which costs a reload, never a missed change. The caller
 * holds `writer` or is opening.
 */
static int memory_load(struct sqlite_be *be)
{
	struct fz_entry *entries;
	size_t n, cap;
	int64_t version;

	if (read_data_version(be, &version) < 0 || entries_read(be, be->n, &entries, &n, &cap) < 0)
		return -1;
	memory_install(be, entries, n, cap);
	be->data_version = version;
	return 0;
}

/*
 * Take in what other writers committed. Holding `writer` throughout keeps
 * our own changes out until the swap (they wait, lookups do not), so the
 * copy read is exactly the file's.
 */
static int sqlite_refresh(void *p)
{
	struct sqlite_be *be = p;
	int64_t version;

	pthread_mutex_lock(&be->writer);
	if (read_data_version(be, &version) < 0) {
		log_error("%s: checking for other writers: %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	if (version == be->data_version) {
		pthread_mutex_unlock(&be->writer);
		return 0;
	}
	if (memory_load(be) < 0) {
		log_error("%s: reloading entries (keeping those in memory): %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	/* Another process may have filled the file past our bound; what eviction fails to drop stays until the next add. */
	if (be->n > FUZZY_MAX_ENTRIES)
		evict_oldest(be);
	pthread_mutex_unlock(&be->writer);
	return 1;
}

static const struct fuzzy_store_ops sqlite_ops = {
	.lookup = sqlite_lookup,
	.add = sqlite_add,
	.touch = sqlite_touch,
	.remove = sqlite_remove,
	.expire = sqlite_expire,
	.count = sqlite_count,
	.refresh = sqlite_refresh,
	.close = sqlite_close,
};

struct fuzzy_store *fuzzy_store_open_sqlite(const char *path, char *err, size_t errlen)
{
	struct sqlite_be *be = xcalloc(1, sizeof(*be));
	struct fuzzy_store *s;

	be->path = xstrdup(path);
	bands_build(be->bands, NULL, 0);
	pthread_rwlock_init(&be->lock, NULL);
	pthread_mutex_init(&be->writer, NULL);
	if (store_sqlite_open(path, &fuzzy_spec, &be->db, be->stmts, err, errlen) < 0)
		goto fail;
	if (memory_load(be) < 0) {
		snprintf(err, errlen, "%s: reading entries: %s", path, sqlite3_errmsg(be->db));
		goto fail;
	}
	if (be->n > FUZZY_MAX_ENTRIES && evict_oldest(be) < 0) {
		snprintf(err, errlen, "%s: dropping the oldest entries: %s", path, sqlite3_errmsg(be->db));
		goto fail;
	}
	s = xmalloc(sizeof(*s));
	s->ops = &sqlite_ops;
	s->be = be;
	return s;
fail:
	sqlite_be_free(be);
	return NULL;
}

void fuzzy_store_close(struct fuzzy_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->be);
	free(s);
}
