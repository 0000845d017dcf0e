/*
 * The sender history store on SQLite (see history_store.h).
 *
 * Why a cache in front of SQLite: every message with a positive score
 * looks its sender up, and most mail comes from a small set of senders,
 * so keys read or written stay in a hash table (bounded: when full, the
 * clean entries least recently used go) and changes are written behind in batches —
 * when enough have gathered, a few seconds after the first unwritten one,
 * before an expiry and on close.
 *
 * What is written behind are the messages counted since the last write
 * (decayed like the counts), merged into the row as it is in the file at
 * that moment, so two processes counting into one file add up rather
 * than overwrite each other.
 *
 * Locking: one mutex guards the table and the SQLite connection; a
 * lookup is a hash probe, or one indexed SELECT on a miss.
 */
#include "store/history_store.h"

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/hash.h"

#define LOG_MODULE "history"
#include "core/log.h"
#include "store/sqlite_open.h"

#define HISTORY_BUSY_MS 5000          /* wait this long for another process's write lock */
#define HISTORY_FLUSH_KEYS 1000       /* changed keys that trigger a write */
#define HISTORY_FLUSH_SECONDS 5       /* oldest unwritten change that triggers a write */
#define HISTORY_CACHE_MAX 200000      /* keys held in memory */
#define HISTORY_TABLE_MIN 1024
#define HISTORY_EXPIRE_EVERY 3600     /* seconds between expiries run by add() */
#define HISTORY_EXPIRE_HALF_LIVES 4   /* a key not updated for this many half-lives goes */

static const char history_schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS senders ("
	" key TEXT PRIMARY KEY, ham REAL NOT NULL, spam REAL NOT NULL, as_of INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS senders_as_of ON senders (as_of);";

enum history_stmt {
	HS_BEGIN,
	HS_COMMIT,
	HS_ROLLBACK,
	HS_GET,
	HS_PUT,
	HS_EXPIRE,
	HS_NSTMTS,
};

static const char *const history_sql[HS_NSTMTS] = {
	[HS_BEGIN] = "BEGIN IMMEDIATE",
	[HS_COMMIT] = "COMMIT",
	[HS_ROLLBACK] = "ROLLBACK",
	[HS_GET] = "SELECT ham, spam, as_of FROM senders WHERE key = ?1",
	[HS_PUT] = ("INSERT INTO senders (key, ham, spam, as_of) VALUES (?1, ?2, ?3, ?4)"
		    " ON CONFLICT (key) DO UPDATE SET ham = excluded.ham, spam = excluded.spam, as_of = excluded.as_of"),
	[HS_EXPIRE] = "DELETE FROM senders WHERE as_of < ?1",
};

static const struct store_sqlite_spec history_spec = {
	.what = NULL,
	.schema = history_schema,
	.sql = history_sql,
	.nsql = HS_NSTMTS,
	.busy_ms = HISTORY_BUSY_MS,
};

/* One cached key: its counts as last known, and the messages not yet written. */
struct hist_entry {
	uint64_t hash;
	struct history_counts c;       /* what the store knows, unwritten messages included */
	struct history_counts pending; /* counted since the last write, decayed to pending.as_of */
	int64_t last_used;             /* the cache's tick when last looked at */
	bool dirty;
	char key[];
};

struct sqlite_be {
	sqlite3 *db;
	sqlite3_stmt *stmts[HS_NSTMTS];
	char *path;
	struct hash_key secret;
	pthread_mutex_t lock;
	struct hist_entry **table;     /* open addressing, NULL: empty slot */
	size_t cap;                    /* power of two */
	size_t used;
	int64_t tick;                  /* counts lookups, for least-recently-used eviction */
	size_t ndirty;
	time_t first_dirty;
	uint32_t half_life;            /* add()'s last, to merge unwritten messages */
	int64_t last_expire;           /* the `now` of add()'s last expiry */
};

void history_counts_decay(struct history_counts *c, int64_t now, uint32_t half_life)
{
	double f;

	/* A clock that went back never makes counts grow, nor moves as_of back. */
	if (now <= c->as_of)
		return;
	if (half_life > 0) {
		f = exp2(-(double)(now - c->as_of) / (double)half_life);
		c->ham *= f;
		c->spam *= f;
	}
	c->as_of = now;
}

/* Keyed (SipHash): senders choose their addresses, so they must not be able to cluster the table. */
static uint64_t key_hash(const struct sqlite_be *be, const char *key)
{
	return hash_keyed(&be->secret, key, strlen(key));
}

static struct hist_entry **table_slot(struct hist_entry **table, size_t cap, uint64_t hash, const char *key)
{
	size_t i = (size_t)hash & (cap - 1);

	while (table[i] != NULL && (table[i]->hash != hash || strcmp(table[i]->key, key) != 0))
		i = (i + 1) & (cap - 1);
	return &table[i];
}

/* Rebuild the table at new_cap without the clean entries drop() selects (keeping all when NULL). */
static size_t table_rebuild(struct sqlite_be *be, size_t new_cap,
			    bool (*drop)(const struct hist_entry *, int64_t), int64_t arg)
{
	struct hist_entry **t = xcalloc(new_cap, sizeof(*t));
	size_t dropped = 0;

	be->used = 0;
	for (size_t i = 0; i < be->cap; i++) {
		struct hist_entry *e = be->table[i];

		if (e == NULL)
			continue;
		if (drop != NULL && !e->dirty && drop(e, arg)) {
			free(e);
			dropped++;
			continue;
		}
		*table_slot(t, new_cap, e->hash, e->key) = e;
		be->used++;
	}
	free(be->table);
	be->table = t;
	be->cap = new_cap;
	return dropped;
}

static bool drop_unused_since(const struct hist_entry *e, int64_t tick)
{
	return e->last_used < tick;
}

static bool drop_updated_before(const struct hist_entry *e, int64_t before)
{
	return e->c.as_of < before;
}

static int be_exec(struct sqlite_be *be, enum history_stmt s)
{
	int rc = sqlite3_step(be->stmts[s]);

	sqlite3_reset(be->stmts[s]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* The row of key in the file, {0,0,0} when there is none. */
static int read_row(struct sqlite_be *be, const char *key, struct history_counts *out)
{
	sqlite3_stmt *st = be->stmts[HS_GET];
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->ham = sqlite3_column_double(st, 0);
		out->spam = sqlite3_column_double(st, 1);
		out->as_of = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_error("%s: reading sender %s: %s", be->path, key, sqlite3_errmsg(be->db));
		return -1;
	}
	return 0;
}

static int write_row(struct sqlite_be *be, const char *key, const struct history_counts *c)
{
	sqlite3_stmt *st = be->stmts[HS_PUT];
	int rc;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 2, c->ham);
	sqlite3_bind_double(st, 3, c->spam);
	sqlite3_bind_int64(st, 4, c->as_of);
	rc = be_exec(be, HS_PUT);
	sqlite3_clear_bindings(st);
	return rc;
}

/* The row as it is in the file now (another process may have counted too) plus our messages. */
static int merge_entry(struct sqlite_be *be, const struct hist_entry *e, struct history_counts *merged)
{
	struct history_counts pending = e->pending;

	if (read_row(be, e->key, merged) < 0)
		return -1;
	history_counts_decay(merged, pending.as_of, be->half_life);
	history_counts_decay(&pending, merged->as_of, be->half_life);
	merged->ham += pending.ham;
	merged->spam += pending.spam;
	return 0;
}

/* Write every unwritten change in one transaction; the caller holds the lock. */
static int flush_locked(struct sqlite_be *be)
{
	if (be->ndirty == 0)
		return 0;
	if (be_exec(be, HS_BEGIN) < 0) {
		log_error("%s: writing sender history: %s", be->path, sqlite3_errmsg(be->db));
		return -1;
	}
	for (size_t i = 0; i < be->cap; i++) {
		struct hist_entry *e = be->table[i];
		struct history_counts merged;

		if (e == NULL || !e->dirty)
			continue;
		if (merge_entry(be, e, &merged) < 0 || write_row(be, e->key, &merged) < 0)
			goto rollback;
		e->c = merged;
	}
	if (be_exec(be, HS_COMMIT) < 0)
		goto rollback;
	for (size_t i = 0; i < be->cap; i++) {
		struct hist_entry *e = be->table[i];

		if (e == NULL || !e->dirty)
			continue;
		e->dirty = false;
		memset(&e->pending, 0, sizeof(e->pending));
	}
	be->ndirty = 0;
	return 0;
rollback:
	log_error("%s: writing sender history: %s", be->path, sqlite3_errmsg(be->db));
	be_exec(be, HS_ROLLBACK);
	return -1;
}

/* Write behind: only once enough has gathered, or the oldest change has waited long enough. */
static void maybe_flush(struct sqlite_be *be)
{
	if (be->ndirty >= HISTORY_FLUSH_KEYS ||
	    (be->ndirty > 0 && time(NULL) - be->first_dirty >= HISTORY_FLUSH_SECONDS))
		flush_locked(be);
}

/*
 * Make room for one more key: the clean entries not looked at in the
 * last HISTORY_CACHE_MAX / 2 lookups go, which leaves at most half the
 * cache clean, so a sweep is needed only every so many new keys.
 */
static void cache_make_room(struct sqlite_be *be)
{
	int64_t keep_since = be->tick > HISTORY_CACHE_MAX / 2 ? be->tick - HISTORY_CACHE_MAX / 2 : 0;

	if (be->used < HISTORY_CACHE_MAX)
		return;
	table_rebuild(be, be->cap, drop_unused_since, keep_since);
	if (be->used >= HISTORY_CACHE_MAX / 2 + HISTORY_FLUSH_KEYS) {
		/* Unwritten entries piled up (writes failing): try once more to make them clean. */
		flush_locked(be);
		table_rebuild(be, be->cap, drop_unused_since, keep_since);
	}
}

/* The cached entry of key, read from the file on a miss; NULL on a read error. */
static struct hist_entry *cache_get(struct sqlite_be *be, const char *key)
{
	uint64_t hash = key_hash(be, key);
	struct hist_entry **slot = table_slot(be->table, be->cap, hash, key);
	struct history_counts row;
	struct hist_entry *e;
	size_t len;

	be->tick++;
	if (*slot != NULL) {
		(*slot)->last_used = be->tick;
		return *slot;
	}
	if (read_row(be, key, &row) < 0)
		return NULL;
	cache_make_room(be);
	if ((be->used + 1) * 10 > be->cap * 7)
		table_rebuild(be, be->cap * 2, NULL, 0);
	len = strlen(key);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->hash = hash;
	e->c = row;
	e->last_used = be->tick;
	*table_slot(be->table, be->cap, hash, key) = e;
	be->used++;
	return e;
}

static int sqlite_get(void *p, const char *key, struct history_counts *out)
{
	struct sqlite_be *be = p;
	struct hist_entry *e;

	pthread_mutex_lock(&be->lock);
	e = cache_get(be, key);
	if (e != NULL)
		*out = e->c;
	else
		memset(out, 0, sizeof(*out));
	maybe_flush(be);
	pthread_mutex_unlock(&be->lock);
	return e != NULL ? 0 : -1;
}

/* Drop keys not updated since before, from the file and the cache; the caller holds the lock. */
static long expire_locked(struct sqlite_be *be, int64_t before)
{
	int changes;

	/* Unwritten messages must reach the file before rows disappear from it. */
	if (flush_locked(be) < 0)
		return -1;
	sqlite3_bind_int64(be->stmts[HS_EXPIRE], 1, before);
	if (be_exec(be, HS_EXPIRE) < 0) {
		log_error("%s: expiring senders: %s", be->path, sqlite3_errmsg(be->db));
		return -1;
	}
	changes = sqlite3_changes(be->db);
	table_rebuild(be, be->cap, drop_updated_before, before);
	return changes;
}

static void expire_if_due(struct sqlite_be *be, int64_t now, uint32_t half_life)
{
	int64_t age = (int64_t)half_life * HISTORY_EXPIRE_HALF_LIVES;
	long n;

	if (be->last_expire != 0 && now - be->last_expire < HISTORY_EXPIRE_EVERY && now >= be->last_expire)
		return;
	be->last_expire = now;
	n = expire_locked(be, now - age);
	if (n > 0)
		log_info("%s: expired %ld senders not seen for %d half-lives", be->path, n, HISTORY_EXPIRE_HALF_LIVES);
}

static void count_message(struct sqlite_be *be, struct hist_entry *e, double ham_delta, double spam_delta,
			  int64_t now, uint32_t half_life)
{
	history_counts_decay(&e->c, now, half_life);
	if (e->dirty) {
		history_counts_decay(&e->pending, now, half_life);
	} else {
		memset(&e->pending, 0, sizeof(e->pending));
		e->pending.as_of = e->c.as_of;
		if (be->ndirty == 0)
			be->first_dirty = time(NULL);
		e->dirty = true;
		be->ndirty++;
	}
	e->c.ham += ham_delta;
	e->c.spam += spam_delta;
	e->pending.ham += ham_delta;
	e->pending.spam += spam_delta;
}

static int sqlite_add(void *p, const char *key, double ham_delta, double spam_delta, int64_t now,
		      uint32_t half_life)
{
	struct sqlite_be *be = p;
	struct hist_entry *e;

	pthread_mutex_lock(&be->lock);
	be->half_life = half_life;
	expire_if_due(be, now, half_life);
	e = cache_get(be, key);
	if (e != NULL)
		count_message(be, e, ham_delta, spam_delta, now, half_life);
	maybe_flush(be);
	pthread_mutex_unlock(&be->lock);
	return e != NULL ? 0 : -1;
}

static long sqlite_expire(void *p, int64_t before)
{
	struct sqlite_be *be = p;
	long n;

	pthread_mutex_lock(&be->lock);
	n = expire_locked(be, before);
	pthread_mutex_unlock(&be->lock);
	return n;
}

static void sqlite_be_free(struct sqlite_be *be)
{
	for (int i = 0; i < HS_NSTMTS; i++)
		sqlite3_finalize(be->stmts[i]);
	sqlite3_close(be->db);
	pthread_mutex_destroy(&be->lock);
	for (size_t i = 0; i < be->cap; i++)
		free(be->table[i]);
	free(be->table);
	free(be->path);
	free(be);
}

static void sqlite_close(void *p)
{
	struct sqlite_be *be = p;

	pthread_mutex_lock(&be->lock);
	flush_locked(be);
	pthread_mutex_unlock(&be->lock);
	sqlite_be_free(be);
}

static const struct history_store_ops sqlite_ops = {
	.get = sqlite_get,
	.add = sqlite_add,
	.expire = sqlite_expire,
	.close = sqlite_close,
};

struct history_store *history_store_open_sqlite(const char *path, char *err, size_t errlen)
{
	struct sqlite_be *be = xcalloc(1, sizeof(*be));
	struct history_store *s;

	hash_key_init(&be->secret);
	be->path = xstrdup(path);
	be->cap = HISTORY_TABLE_MIN;
	be->table = xcalloc(be->cap, sizeof(*be->table));
	pthread_mutex_init(&be->lock, NULL);
	if (store_sqlite_open(path, &history_spec, &be->db, be->stmts, err, errlen) < 0)
		goto fail;
	s = xmalloc(sizeof(*s));
	s->ops = &sqlite_ops;
	s->be = be;
	return s;
fail:
	sqlite_be_free(be);
	return NULL;
}

void history_store_close(struct history_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->be);
	free(s);
}
