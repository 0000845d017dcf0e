/*
 * The Bayesian token database on SQLite (see bayes_store.h).
 *
 * Why everything is in memory: a classification looks up to 10,000
 * tokens, and doing that in SQLite on a worker thread would cost
 * milliseconds and contend for the connection; a hash table under a
 * read lock costs microseconds and lets every worker read at once. The
 * file is the durable copy: it is read whole at open and receives
 * changes in batches, so learning a folder of messages is a handful of
 * transactions rather than one per message.
 *
 * Locking: `lock` (read-write) guards the table and the totals against
 * the one writer; `writer` serializes every change and is the only user
 * of the SQLite connection `db`, so flushing never blocks a reader.
 *
 * Other writers (`postern learn` on the same file): `db` is also where we
 * notice them, since its PRAGMA data_version moves when another
 * connection commits but not when it commits itself. A refresh then reads
 * a fresh copy through a second, read-only connection `rdb` into a new
 * table, without holding `writer` (learning goes on) or `lock` (scans go
 * on), and swaps it in. Changes made to the old table meanwhile are still
 * unwritten (write-behind waits while a reload runs), so they are carried
 * onto the new table as counts and as pending differences. Only a flush
 * or an expiry forced during the reload (flush, expire) leaves the new
 * table without what it wrote; the file has it, and `stale` makes the
 * next refresh reload even though data_version did not move (our own
 * commits never move it).
 */
#include "store/bayes_store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"

#define LOG_MODULE "bayes"
#include "core/log.h"
#include "store/sqlite_open.h"

#define BAYES_BUSY_MS 5000            /* wait this long for another process's write lock */
#define BAYES_FLUSH_TOKENS 50000      /* changed tokens that trigger a write */
#define BAYES_FLUSH_SEEN 500          /* learned messages that trigger a write */
#define BAYES_FLUSH_SECONDS 5         /* oldest unwritten change that triggers a write */
#define BAYES_TABLE_MIN 1024

static const char bayes_schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS tokens ("
	" token INTEGER PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL, day INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS totals ("
	" id INTEGER PRIMARY KEY CHECK (id = 1), spam INTEGER NOT NULL, ham INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO totals (id, spam, ham) VALUES (1, 0, 0);"
	"CREATE TABLE IF NOT EXISTS seen ("
	" digest BLOB PRIMARY KEY, class INTEGER NOT NULL) WITHOUT ROWID;";

enum bayes_stmt {
	BS_BEGIN,
	BS_COMMIT,
	BS_ROLLBACK,
	BS_ADD_TOKEN,
	BS_DROP_EMPTY,
	BS_ADD_TOTALS,
	BS_SEEN_GET,
	BS_SEEN_PUT,
	BS_SEEN_DEL,
	BS_EXPIRE,
	BS_DATA_VERSION,
	BS_NSTMTS,
};

static const char *const bayes_sql[BS_NSTMTS] = {
	[BS_BEGIN] = "BEGIN IMMEDIATE",
	[BS_COMMIT] = "COMMIT",
	[BS_ROLLBACK] = "ROLLBACK",
	[BS_ADD_TOKEN] = "INSERT INTO tokens (token, spam, ham, day) VALUES (?1, max(?2, 0), max(?3, 0), ?4)"
			 " ON CONFLICT (token) DO UPDATE SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0),"
			 " day = max(day, ?4)",
	[BS_DROP_EMPTY] = "DELETE FROM tokens WHERE token = ?1 AND spam = 0 AND ham = 0",
	[BS_ADD_TOTALS] = "UPDATE totals SET spam = max(spam + ?1, 0), ham = max(ham + ?2, 0) WHERE id = 1",
	[BS_SEEN_GET] = "SELECT class FROM seen WHERE digest = ?1",
	[BS_SEEN_PUT] = "INSERT INTO seen (digest, class) VALUES (?1, ?2)"
			" ON CONFLICT (digest) DO UPDATE SET class = excluded.class",
	[BS_SEEN_DEL] = "DELETE FROM seen WHERE digest = ?1",
	[BS_EXPIRE] = "DELETE FROM tokens WHERE day < ?1 AND spam + ham <= ?2",
	[BS_DATA_VERSION] = "PRAGMA data_version",
};

static const struct store_sqlite_spec bayes_spec = {
	.what = NULL,
	.schema = bayes_schema,
	.sql = bayes_sql,
	.nsql = BS_NSTMTS,
	.busy_ms = BAYES_BUSY_MS,
};

/* The read-only connection's statements: one snapshot of the file, read by a load. */
enum bayes_read_stmt {
	RS_BEGIN,
	RS_END,
	RS_ABORT,
	RS_TOTALS,
	RS_TOKENS,
	RS_NSTMTS,
};

static const char *const bayes_read_sql[RS_NSTMTS] = {
	[RS_BEGIN] = "BEGIN",
	[RS_END] = "COMMIT",
	[RS_ABORT] = "ROLLBACK",
	[RS_TOTALS] = "SELECT spam, ham FROM totals WHERE id = 1",
	[RS_TOKENS] = "SELECT token, spam, ham, day FROM tokens",
};

/* One token; key 0 marks an empty slot (token_hash never returns 0). */
struct tok_entry {
	uint64_t key;
	uint32_t spam;
	uint32_t ham;
	uint32_t day;
	int32_t dspam;             /* unwritten changes, owned by the writer */
	int32_t dham;
	uint32_t dirty;
};

struct tok_table {
	struct tok_entry *slots;
	size_t cap;                /* power of two */
	size_t used;               /* occupied slots */
	uint64_t live;             /* slots with a non-zero count */
};

struct seen_change {
	unsigned char digest[BAYES_DIGEST_LEN];
	enum bayes_class cls;
};

struct sqlite_be {
	sqlite3 *db;
	sqlite3_stmt *stmts[BS_NSTMTS];
	sqlite3 *rdb;              /* read-only: loads, used by one load at a time */
	sqlite3_stmt *rstmts[RS_NSTMTS];
	char *path;
	pthread_rwlock_t lock;
	pthread_mutex_t writer;
	struct tok_table tokens;
	uint64_t nspam, nham;
	/* The following, like the pending changes below, are guarded by `writer`. */
	int64_t data_version;      /* of db when the table was last loaded */
	bool reloading;            /* a refresh is reading the file */
	bool stale;                /* the table lacks something we wrote: reload next time */
	int64_t dnspam, dnham;     /* unwritten changes of the totals */
	size_t ndirty;
	time_t first_dirty;
	struct seen_change *seen;  /* unwritten digests, in order */
	size_t nseen, seen_cap;
};

uint32_t bayes_store_today(void)
{
	return (uint32_t)(time(NULL) / 86400);
}

/* An empty table sized so that `expect` tokens fit without growing. */
static void table_init(struct tok_table *t, size_t expect)
{
	memset(t, 0, sizeof(*t));
	t->cap = BAYES_TABLE_MIN;
	while ((expect + 1) * 10 > t->cap * 7)
		t->cap *= 2;
	t->slots = xcalloc(t->cap, sizeof(*t->slots));
}

static void table_free(struct tok_table *t)
{
	free(t->slots);
	t->slots = NULL;
}

static struct tok_entry *table_slot(struct tok_entry *slots, size_t cap, uint64_t key)
{
	size_t i = (size_t)key & (cap - 1);

	while (slots[i].key != 0 && slots[i].key != key)
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static const struct tok_entry *table_find(const struct tok_table *t, uint64_t key)
{
	const struct tok_entry *e = table_slot(t->slots, t->cap, key);

	return e->key == key ? e : NULL;
}

/* Rebuild the table at new_cap without the entries drop() selects (keeping all when NULL). */
static size_t table_rebuild(struct tok_table *t, size_t new_cap,
			    bool (*drop)(const struct tok_entry *, uint32_t, uint32_t), uint32_t a, uint32_t b)
{
	struct tok_entry *slots = xcalloc(new_cap, sizeof(*slots));
	size_t dropped = 0;

	t->used = 0;
	for (size_t i = 0; i < t->cap; i++) {
		const struct tok_entry *e = &t->slots[i];

		if (e->key == 0)
			continue;
		if (drop != NULL && drop(e, a, b)) {
			if (e->spam != 0 || e->ham != 0)
				t->live--;
			dropped++;
			continue;
		}
		*table_slot(slots, new_cap, e->key) = *e;
		t->used++;
	}
	free(t->slots);
	t->slots = slots;
	t->cap = new_cap;
	return dropped;
}

/* The entry of key, inserted with zero counts if new; a shared table needs the write lock. */
static struct tok_entry *table_get(struct tok_table *t, uint64_t key)
{
	struct tok_entry *e;

	if ((t->used + 1) * 10 > t->cap * 7)
		table_rebuild(t, t->cap * 2, NULL, 0, 0);
	e = table_slot(t->slots, t->cap, key);
	if (e->key == 0) {
		memset(e, 0, sizeof(*e));
		e->key = key;
		t->used++;
	}
	return e;
}

static uint32_t clamp_count(int64_t v)
{
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Keep `live` right around a change of e's counts. */
static void table_set_counts(struct tok_table *t, struct tok_entry *e, uint32_t spam, uint32_t ham)
{
	bool was_live = e->spam != 0 || e->ham != 0;

	e->spam = spam;
	e->ham = ham;
	if (was_live && spam == 0 && ham == 0)
		t->live--;
	else if (!was_live && (spam != 0 || ham != 0))
		t->live++;
}

static int be_exec(struct sqlite_be *be, enum bayes_stmt s)
{
	int rc = sqlite3_step(be->stmts[s]);

	sqlite3_reset(be->stmts[s]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static void sqlite_lookup(void *p, const uint64_t *tokens, size_t n, struct bayes_counts *out,
			  struct bayes_totals *totals)
{
	struct sqlite_be *be = p;

	pthread_rwlock_rdlock(&be->lock);
	for (size_t i = 0; i < n; i++) {
		const struct tok_entry *e = table_find(&be->tokens, tokens[i]);

		out[i].spam = e != NULL ? e->spam : 0;
		out[i].ham = e != NULL ? e->ham : 0;
	}
	if (totals != NULL) {
		totals->spam = be->nspam;
		totals->ham = be->nham;
		totals->tokens = be->tokens.live;
	}
	pthread_rwlock_unlock(&be->lock);
}

/* Write every unwritten change in one transaction; the caller holds `writer`. */
static int flush_locked(struct sqlite_be *be)
{
	if (be->ndirty == 0 && be->nseen == 0 && be->dnspam == 0 && be->dnham == 0)
		return 0;
	if (be_exec(be, BS_BEGIN) < 0)
		goto fail;
	for (size_t i = 0; i < be->tokens.cap; i++) {
		const struct tok_entry *e = &be->tokens.slots[i];
		sqlite3_stmt *st = be->stmts[BS_ADD_TOKEN];

		if (e->key == 0 || !e->dirty)
			continue;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)e->key);
		sqlite3_bind_int64(st, 2, e->dspam);
		sqlite3_bind_int64(st, 3, e->dham);
		sqlite3_bind_int64(st, 4, e->day);
		if (be_exec(be, BS_ADD_TOKEN) < 0)
			goto rollback;
		if (e->spam == 0 && e->ham == 0) {
			sqlite3_bind_int64(be->stmts[BS_DROP_EMPTY], 1, (sqlite3_int64)e->key);
			if (be_exec(be, BS_DROP_EMPTY) < 0)
				goto rollback;
		}
	}
	sqlite3_bind_int64(be->stmts[BS_ADD_TOTALS], 1, be->dnspam);
	sqlite3_bind_int64(be->stmts[BS_ADD_TOTALS], 2, be->dnham);
	if (be_exec(be, BS_ADD_TOTALS) < 0)
		goto rollback;
	for (size_t i = 0; i < be->nseen; i++) {
		const struct seen_change *c = &be->seen[i];
		enum bayes_stmt s = c->cls == BAYES_CLASS_NONE ? BS_SEEN_DEL : BS_SEEN_PUT;

		sqlite3_bind_blob(be->stmts[s], 1, c->digest, BAYES_DIGEST_LEN, SQLITE_STATIC);
		if (s == BS_SEEN_PUT)
			sqlite3_bind_int(be->stmts[s], 2, (int)c->cls);
		if (be_exec(be, s) < 0)
			goto rollback;
	}
	if (be_exec(be, BS_COMMIT) < 0)
		goto rollback;
	for (size_t i = 0; i < be->tokens.cap; i++) {
		struct tok_entry *e = &be->tokens.slots[i];

		e->dirty = 0;
		e->dspam = 0;
		e->dham = 0;
	}
	be->ndirty = 0;
	be->nseen = 0;
	be->dnspam = 0;
	be->dnham = 0;
	if (be->reloading)
		be->stale = true;
	return 0;
rollback:
	log_error("%s: writing learned tokens: %s", be->path, sqlite3_errmsg(be->db));
	be_exec(be, BS_ROLLBACK);
	return -1;
fail:
	log_error("%s: writing learned tokens: %s", be->path, sqlite3_errmsg(be->db));
	return -1;
}

/*
 * Write behind: only once enough has gathered, or the oldest change has
 * waited long enough. Not while a reload reads the file: what is still
 * unwritten when it ends is carried onto the new table, what was written
 * would be missing from it.
 */
static void maybe_flush(struct sqlite_be *be)
{
	if (be->reloading)
		return;
	if (be->ndirty >= BAYES_FLUSH_TOKENS || be->nseen >= BAYES_FLUSH_SEEN ||
	    ((be->ndirty > 0 || be->nseen > 0) && time(NULL) - be->first_dirty >= BAYES_FLUSH_SECONDS))
		flush_locked(be);
}

static void mark_dirty(struct sqlite_be *be)
{
	if (be->ndirty == 0 && be->nseen == 0)
		be->first_dirty = time(NULL);
}

static uint32_t add_clamped(uint32_t v, int delta)
{
	if (delta < 0)
		return v > 0 ? v - 1 : 0;
	return v < UINT32_MAX ? v + 1 : v;
}

static int sqlite_train(void *p, const uint64_t *tokens, size_t n, enum bayes_class cls, int delta, uint32_t day)
{
	struct sqlite_be *be = p;
	bool spam = cls == BAYES_CLASS_SPAM;

	if (cls == BAYES_CLASS_NONE || (delta != 1 && delta != -1))
		panic("bayes train with class %d delta %d", (int)cls, delta);
	pthread_mutex_lock(&be->writer);
	mark_dirty(be);
	pthread_rwlock_wrlock(&be->lock);
	for (size_t i = 0; i < n; i++) {
		struct tok_entry *e = table_get(&be->tokens, tokens[i]);

		if (spam) {
			table_set_counts(&be->tokens, e, add_clamped(e->spam, delta), e->ham);
			e->dspam += delta;
		} else {
			table_set_counts(&be->tokens, e, e->spam, add_clamped(e->ham, delta));
			e->dham += delta;
		}
		if (delta > 0 && day > e->day)
			e->day = day;
		if (!e->dirty) {
			e->dirty = 1;
			be->ndirty++;
		}
	}
	if (spam) {
		be->nspam = delta > 0 ? be->nspam + 1 : (be->nspam > 0 ? be->nspam - 1 : 0);
		be->dnspam += delta;
	} else {
		be->nham = delta > 0 ? be->nham + 1 : (be->nham > 0 ? be->nham - 1 : 0);
		be->dnham += delta;
	}
	pthread_rwlock_unlock(&be->lock);
	maybe_flush(be);
	pthread_mutex_unlock(&be->writer);
	return 0;
}

static int sqlite_seen_get(void *p, const unsigned char digest[BAYES_DIGEST_LEN], enum bayes_class *cls)
{
	struct sqlite_be *be = p;
	sqlite3_stmt *st = be->stmts[BS_SEEN_GET];
	int rc, status = 0;

	pthread_mutex_lock(&be->writer);
	for (size_t i = be->nseen; i > 0; i--) {
		if (memcmp(be->seen[i - 1].digest, digest, BAYES_DIGEST_LEN) == 0) {
			*cls = be->seen[i - 1].cls;
			pthread_mutex_unlock(&be->writer);
			return 0;
		}
	}
	*cls = BAYES_CLASS_NONE;
	sqlite3_bind_blob(st, 1, digest, BAYES_DIGEST_LEN, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int v = sqlite3_column_int(st, 0);

		*cls = v == BAYES_CLASS_SPAM ? BAYES_CLASS_SPAM : v == BAYES_CLASS_HAM ? BAYES_CLASS_HAM : BAYES_CLASS_NONE;
	} else if (rc != SQLITE_DONE) {
		log_error("%s: reading learned messages: %s", be->path, sqlite3_errmsg(be->db));
		status = -1;
	}
	sqlite3_reset(st);
	pthread_mutex_unlock(&be->writer);
	return status;
}

static int sqlite_seen_set(void *p, const unsigned char digest[BAYES_DIGEST_LEN], enum bayes_class cls)
{
	struct sqlite_be *be = p;

	pthread_mutex_lock(&be->writer);
	mark_dirty(be);
	if (be->nseen == be->seen_cap) {
		be->seen_cap = be->seen_cap ? be->seen_cap * 2 : 64;
		be->seen = xreallocarray(be->seen, be->seen_cap, sizeof(*be->seen));
	}
	memcpy(be->seen[be->nseen].digest, digest, BAYES_DIGEST_LEN);
	be->seen[be->nseen].cls = cls;
	be->nseen++;
	maybe_flush(be);
	pthread_mutex_unlock(&be->writer);
	return 0;
}

static int sqlite_flush(void *p)
{
	struct sqlite_be *be = p;
	int rc;

	pthread_mutex_lock(&be->writer);
	rc = flush_locked(be);
	pthread_mutex_unlock(&be->writer);
	return rc;
}

static bool expired(const struct tok_entry *e, uint32_t before_day, uint32_t max_count)
{
	return e->day < before_day && (uint64_t)e->spam + e->ham <= max_count;
}

static long sqlite_expire(void *p, uint32_t today, uint32_t max_age_days, uint32_t max_count)
{
	struct sqlite_be *be = p;
	uint32_t before = today > max_age_days ? today - max_age_days : 0;
	size_t dropped;

	pthread_mutex_lock(&be->writer);
	/* Unwritten differences must reach the file before rows disappear from it. */
	if (flush_locked(be) < 0) {
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	sqlite3_bind_int64(be->stmts[BS_EXPIRE], 1, before);
	sqlite3_bind_int64(be->stmts[BS_EXPIRE], 2, max_count);
	if (be_exec(be, BS_EXPIRE) < 0) {
		log_error("%s: expiring tokens: %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	pthread_rwlock_wrlock(&be->lock);
	dropped = table_rebuild(&be->tokens, be->tokens.cap, expired, before, max_count);
	pthread_rwlock_unlock(&be->lock);
	/* A reload under way may have read the rows before they went. */
	if (be->reloading)
		be->stale = true;
	pthread_mutex_unlock(&be->writer);
	return (long)dropped;
}

static void sqlite_be_free(struct sqlite_be *be)
{
	for (int i = 0; i < BS_NSTMTS; i++)
		sqlite3_finalize(be->stmts[i]);
	for (int i = 0; i < RS_NSTMTS; i++)
		sqlite3_finalize(be->rstmts[i]);
	sqlite3_close(be->db);
	sqlite3_close(be->rdb);
	pthread_rwlock_destroy(&be->lock);
	pthread_mutex_destroy(&be->writer);
	table_free(&be->tokens);
	free(be->seen);
	free(be->path);
	free(be);
}

static void sqlite_close(void *p)
{
	struct sqlite_be *be = p;

	sqlite_flush(be);
	sqlite_be_free(be);
}

static int read_data_version(struct sqlite_be *be, int64_t *out)
{
	return store_sqlite_int64(be->stmts[BS_DATA_VERSION], out);
}

static int read_exec(struct sqlite_be *be, enum bayes_read_stmt s)
{
	int rc = sqlite3_step(be->rstmts[s]);

	sqlite3_reset(be->rstmts[s]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static uint64_t add_total(uint64_t v, int64_t delta)
{
	if (delta < 0)
		return (uint64_t)-delta > v ? 0 : v - (uint64_t)-delta;
	return v + (uint64_t)delta;
}

/*
 * Start one read transaction on rdb and read the totals in it: the
 * snapshot that the tokens read next belong to. Ends with snapshot_end,
 * whatever happened.
 */
static int snapshot_begin(struct sqlite_be *be, uint64_t *nspam, uint64_t *nham, char *err, size_t errlen)
{
	sqlite3_stmt *st = be->rstmts[RS_TOTALS];
	int rc;

	*nspam = *nham = 0;
	if (read_exec(be, RS_BEGIN) < 0) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(be->rdb));
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*nspam = add_total(0, sqlite3_column_int64(st, 0));
		*nham = add_total(0, sqlite3_column_int64(st, 1));
	} else if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(be->rdb));
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Every token of the snapshot into t. */
static int snapshot_read_tokens(struct sqlite_be *be, struct tok_table *t, char *err, size_t errlen)
{
	sqlite3_stmt *st = be->rstmts[RS_TOKENS];
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t key = (uint64_t)sqlite3_column_int64(st, 0);
		struct tok_entry *e;

		/* 0 marks a free slot and is never a token hash: such a row is not ours. */
		if (key == 0)
			continue;
		e = table_get(t, key);
		table_set_counts(t, e, clamp_count(sqlite3_column_int64(st, 1)), clamp_count(sqlite3_column_int64(st, 2)));
		e->day = (uint32_t)sqlite3_column_int64(st, 3);
	}
	if (rc != SQLITE_DONE)
		snprintf(err, errlen, "%s", sqlite3_errmsg(be->rdb));
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void snapshot_end(struct sqlite_be *be)
{
	if (!sqlite3_get_autocommit(be->rdb) && read_exec(be, RS_END) < 0)
		read_exec(be, RS_ABORT);
}

/*
 * Carry onto a freshly read table what the old one has and the file had
 * not when it was read: our changes since the snapshot, all still
 * unwritten (see maybe_flush). They stay pending on the new table, so the
 * next flush writes them once.
 */
static void table_carry_pending(struct tok_table *to, const struct tok_table *from)
{
	for (size_t i = 0; i < from->cap; i++) {
		const struct tok_entry *o = &from->slots[i];
		struct tok_entry *e;

		if (o->key == 0 || !o->dirty)
			continue;
		e = table_get(to, o->key);
		table_set_counts(to, e, clamp_count((int64_t)e->spam + o->dspam),
				 clamp_count((int64_t)e->ham + o->dham));
		if (o->day > e->day)
			e->day = o->day;
		e->dspam = o->dspam;
		e->dham = o->dham;
		e->dirty = 1;
	}
}

/*
 * Take in what other writers committed: our pending changes are written
 * first so the copy read holds them, the copy is read with neither lock
 * held, and only the swap takes the write lock. With nothing new, the
 * check doubles as the write-behind timer for a quiet gateway.
 */
static int sqlite_refresh(void *p)
{
	struct sqlite_be *be = p;
	struct tok_table fresh, old;
	uint64_t nspam, nham;
	int64_t version;
	char err[256];
	size_t expect;
	int rc;

	pthread_mutex_lock(&be->writer);
	if (be->reloading) {
		pthread_mutex_unlock(&be->writer);
		return 0;
	}
	if (read_data_version(be, &version) < 0) {
		log_error("%s: checking for other writers: %s", be->path, sqlite3_errmsg(be->db));
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	if (version == be->data_version && !be->stale) {
		maybe_flush(be);
		pthread_mutex_unlock(&be->writer);
		return 0;
	}
	if (flush_locked(be) < 0) {
		pthread_mutex_unlock(&be->writer);
		return -1;
	}
	if (snapshot_begin(be, &nspam, &nham, err, sizeof(err)) < 0) {
		snapshot_end(be);
		pthread_mutex_unlock(&be->writer);
		log_error("%s: reloading tokens: %s", be->path, err);
		return -1;
	}
	be->reloading = true;
	be->stale = false;
	expect = be->tokens.used;
	pthread_mutex_unlock(&be->writer);

	table_init(&fresh, expect);
	rc = snapshot_read_tokens(be, &fresh, err, sizeof(err));
	snapshot_end(be);

	pthread_mutex_lock(&be->writer);
	be->reloading = false;
	if (rc < 0) {
		be->stale = true;
		pthread_mutex_unlock(&be->writer);
		log_error("%s: reloading tokens (keeping those in memory): %s", be->path, err);
		table_free(&fresh);
		return -1;
	}
	table_carry_pending(&fresh, &be->tokens);
	nspam = add_total(nspam, be->dnspam);
	nham = add_total(nham, be->dnham);
	pthread_rwlock_wrlock(&be->lock);
	old = be->tokens;
	be->tokens = fresh;
	be->nspam = nspam;
	be->nham = nham;
	pthread_rwlock_unlock(&be->lock);
	be->data_version = version;
	pthread_mutex_unlock(&be->writer);
	table_free(&old);
	return 1;
}

static const struct bayes_store_ops sqlite_ops = {
	.lookup = sqlite_lookup,
	.train = sqlite_train,
	.seen_get = sqlite_seen_get,
	.seen_set = sqlite_seen_set,
	.flush = sqlite_flush,
	.expire = sqlite_expire,
	.refresh = sqlite_refresh,
	.close = sqlite_close,
};

/* The read-only connection loads use, so that reading the file never holds up the writer's. */
static int open_reader(struct sqlite_be *be, char *err, size_t errlen)
{
	if (sqlite3_open_v2(be->path, &be->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", be->path, be->rdb != NULL ? sqlite3_errmsg(be->rdb) : "out of memory");
		return -1;
	}
	sqlite3_busy_timeout(be->rdb, BAYES_BUSY_MS);
	for (int i = 0; i < RS_NSTMTS; i++) {
		if (sqlite3_prepare_v2(be->rdb, bayes_read_sql[i], -1, &be->rstmts[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s", be->path, sqlite3_errmsg(be->rdb));
			return -1;
		}
	}
	return 0;
}

/*
 * Read the whole token table and the totals into memory. data_version is
 * read first: a commit slipping in before the snapshot is then noticed
 * again by the next refresh, which costs a reload, never a missed change.
 */
static int sqlite_load(struct sqlite_be *be, char *err, size_t errlen)
{
	char why[256];
	int rc;

	if (read_data_version(be, &be->data_version) < 0) {
		snprintf(err, errlen, "%s: %s", be->path, sqlite3_errmsg(be->db));
		return -1;
	}
	rc = snapshot_begin(be, &be->nspam, &be->nham, why, sizeof(why));
	if (rc == 0)
		rc = snapshot_read_tokens(be, &be->tokens, why, sizeof(why));
	snapshot_end(be);
	if (rc < 0)
		snprintf(err, errlen, "%s: reading tokens: %s", be->path, why);
	return rc;
}

struct bayes_store *bayes_store_open_sqlite(const char *path, char *err, size_t errlen)
{
	struct sqlite_be *be = xcalloc(1, sizeof(*be));
	struct bayes_store *s;

	be->path = xstrdup(path);
	table_init(&be->tokens, 0);
	pthread_rwlock_init(&be->lock, NULL);
	pthread_mutex_init(&be->writer, NULL);
	if (store_sqlite_open(path, &bayes_spec, &be->db, be->stmts, err, errlen) < 0)
		goto fail;
	if (open_reader(be, err, errlen) < 0 || sqlite_load(be, err, errlen) < 0)
		goto fail;
	s = xmalloc(sizeof(*s));
	s->ops = &sqlite_ops;
	s->be = be;
	return s;
fail:
	sqlite_be_free(be);
	return NULL;
}

void bayes_store_close(struct bayes_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->be);
	free(s);
}
