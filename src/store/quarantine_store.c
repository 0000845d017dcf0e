/*
 * The quarantine's metadata on SQLite (see quarantine_store.h).
 *
 * Why this may run on the event loop thread: a message is quarantined at
 * most once per accepted message, and each write is one single-row
 * statement whose commit (WAL, synchronous=NORMAL) appends to the log
 * without fsync. Losing the last rows in a power cut loses only the
 * "why" of a few messages: the messages themselves are held in the spool,
 * whose hold flag is what keeps them from delivery. Lists are bounded by
 * QUARANTINE_LIST_MAX rows and served from the arrival index.
 */
#include "store/quarantine_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define LOG_MODULE "quarantine"
#include "core/log.h"
#include "store/sqlite_open.h"

#define QUARANTINE_BUSY_MS 200           /* wait for another process's lock (the CLI never writes) */

static const char quarantine_schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS messages ("
	" id TEXT PRIMARY KEY, arrival INTEGER NOT NULL, sender TEXT NOT NULL,"
	" recipients TEXT NOT NULL, subject TEXT NOT NULL, category TEXT NOT NULL,"
	" reasons TEXT NOT NULL, client TEXT NOT NULL, score REAL NOT NULL,"
	" scl INTEGER NOT NULL, size INTEGER NOT NULL, state INTEGER NOT NULL,"
	" changed INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS messages_arrival ON messages(arrival);"
	"CREATE INDEX IF NOT EXISTS messages_state ON messages(state, arrival);";

#define QUARANTINE_COLUMNS \
	"id, arrival, sender, recipients, subject, category, reasons, client, score, scl, size, state, changed"

/* Unset filters are bound as NULL, so one statement serves every combination. */
#define QUARANTINE_WHERE \
	" WHERE (?1 IS NULL OR instr(lower(sender), lower(?1)) > 0)" \
	" AND (?2 IS NULL OR instr(lower(recipients), lower(?2)) > 0)" \
	" AND (?3 IS NULL OR category = ?3 COLLATE NOCASE)" \
	" AND (?4 IS NULL OR arrival >= ?4) AND (?5 IS NULL OR arrival < ?5)" \
	" AND (?6 IS NULL OR state = ?6)"

enum quarantine_stmt {
	QS_PUT,
	QS_GET,
	QS_LIST_NEWEST,
	QS_LIST_OLDEST,
	QS_FINISH,
	QS_COUNT,
	QS_NSTMTS,
};

static const char *const quarantine_sql[QS_NSTMTS] = {
	[QS_PUT] = "INSERT OR REPLACE INTO messages (" QUARANTINE_COLUMNS ")"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[QS_GET] = "SELECT " QUARANTINE_COLUMNS " FROM messages WHERE id = ?1",
	[QS_LIST_NEWEST] = "SELECT " QUARANTINE_COLUMNS " FROM messages" QUARANTINE_WHERE
			   " ORDER BY arrival DESC, id DESC LIMIT ?7",
	[QS_LIST_OLDEST] = "SELECT " QUARANTINE_COLUMNS " FROM messages" QUARANTINE_WHERE
			   " ORDER BY arrival, id LIMIT ?7",
	[QS_FINISH] = "UPDATE messages SET state = ?2, changed = ?3 WHERE id = ?1 AND state = 0",
	[QS_COUNT] = "SELECT state, count(*) FROM messages GROUP BY state",
};

static const struct store_sqlite_spec quarantine_spec = {
	.what = "quarantine database",
	.schema = quarantine_schema,
	.sql = quarantine_sql,
	.nsql = QS_NSTMTS,
	.busy_ms = QUARANTINE_BUSY_MS,
};

struct quarantine_store {
	char *path;
	sqlite3 *db;
	sqlite3_stmt *stmts[QS_NSTMTS];
	quarantine_clock_fn clock;
	void *clock_arg;
};

void quarantine_store_close(struct quarantine_store *qs)
{
	if (qs == NULL)
		return;
	for (size_t i = 0; i < QS_NSTMTS; i++)
		sqlite3_finalize(qs->stmts[i]);
	sqlite3_close(qs->db);
	free(qs->path);
	free(qs);
}

struct quarantine_store *quarantine_store_open(const char *path, char *err, size_t errlen)
{
	struct quarantine_store *qs = xcalloc(1, sizeof(*qs));

	qs->path = xstrdup(path);
	if (store_sqlite_open(path, &quarantine_spec, &qs->db, qs->stmts, err, errlen) < 0)
		goto fail;
	return qs;
fail:
	quarantine_store_close(qs);
	return NULL;
}

void quarantine_store_set_clock(struct quarantine_store *qs, quarantine_clock_fn clock, void *arg)
{
	qs->clock = clock;
	qs->clock_arg = arg;
}

time_t quarantine_store_now(const struct quarantine_store *qs)
{
	return qs->clock != NULL ? qs->clock(qs->clock_arg) : time(NULL);
}

static void quarantine_reset(struct quarantine_store *qs, enum quarantine_stmt s)
{
	sqlite3_reset(qs->stmts[s]);
	sqlite3_clear_bindings(qs->stmts[s]);
}

/* Step once: SQLITE_ROW or SQLITE_DONE; anything else is logged and the statement reset. */
static int quarantine_step(struct quarantine_store *qs, enum quarantine_stmt s)
{
	int rc = sqlite3_step(qs->stmts[s]);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc;
	log_warn("quarantine database %s: %s", qs->path, sqlite3_errmsg(qs->db));
	quarantine_reset(qs, s);
	return rc;
}

/* Bind text cut to max bytes; NULL (or "" when empty_is_null) binds SQL NULL. */
static void quarantine_bind_text(struct quarantine_store *qs, enum quarantine_stmt s, int i,
				 const char *text, size_t max, bool empty_is_null)
{
	if (text == NULL || (empty_is_null && text[0] == '\0')) {
		sqlite3_bind_null(qs->stmts[s], i);
		return;
	}
	sqlite3_bind_text(qs->stmts[s], i, text, (int)strnlen(text, max), SQLITE_TRANSIENT);
}

int quarantine_store_add(struct quarantine_store *qs, const struct quarantine_entry *e)
{
	sqlite3_stmt *st = qs->stmts[QS_PUT];
	int rc;

	quarantine_bind_text(qs, QS_PUT, 1, e->id, QUEUE_ID_LEN, false);
	sqlite3_bind_int64(st, 2, e->arrival);
	quarantine_bind_text(qs, QS_PUT, 3, e->sender ? e->sender : "", QUARANTINE_TEXT_MAX, false);
	quarantine_bind_text(qs, QS_PUT, 4, e->recipients ? e->recipients : "", QUARANTINE_RCPTS_MAX, false);
	quarantine_bind_text(qs, QS_PUT, 5, e->subject ? e->subject : "", QUARANTINE_TEXT_MAX, false);
	quarantine_bind_text(qs, QS_PUT, 6, e->category ? e->category : "", QUARANTINE_TEXT_MAX, false);
	quarantine_bind_text(qs, QS_PUT, 7, e->reasons ? e->reasons : "", QUARANTINE_REASONS_MAX, false);
	quarantine_bind_text(qs, QS_PUT, 8, e->client_addr ? e->client_addr : "", QUARANTINE_TEXT_MAX, false);
	sqlite3_bind_double(st, 9, e->score);
	sqlite3_bind_int(st, 10, e->scl);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)e->size);
	sqlite3_bind_int(st, 12, QUARANTINE_HELD);
	sqlite3_bind_int64(st, 13, quarantine_store_now(qs));
	rc = quarantine_step(qs, QS_PUT);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return -1;
	quarantine_reset(qs, QS_PUT);
	return 0;
}

static char *quarantine_column_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return xstrdup(t != NULL ? (const char *)t : "");
}

/* The current row of a SELECT of QUARANTINE_COLUMNS. */
static void quarantine_read_row(sqlite3_stmt *st, struct quarantine_entry *e)
{
	const unsigned char *id = sqlite3_column_text(st, 0);
	int state = sqlite3_column_int(st, 11);

	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id != NULL ? (const char *)id : "");
	e->arrival = (time_t)sqlite3_column_int64(st, 1);
	e->sender = quarantine_column_text(st, 2);
	e->recipients = quarantine_column_text(st, 3);
	e->subject = quarantine_column_text(st, 4);
	e->category = quarantine_column_text(st, 5);
	e->reasons = quarantine_column_text(st, 6);
	e->client_addr = quarantine_column_text(st, 7);
	e->score = sqlite3_column_double(st, 8);
	e->scl = sqlite3_column_int(st, 9);
	e->size = (uint64_t)sqlite3_column_int64(st, 10);
	/* a row written by a later version with a state this one does not know reads as held */
	e->state = state >= QUARANTINE_HELD && state <= QUARANTINE_EXPIRED ? (enum quarantine_state)state
									    : QUARANTINE_HELD;
	e->changed = (time_t)sqlite3_column_int64(st, 12);
}

int quarantine_store_get(struct quarantine_store *qs, const char *id, struct quarantine_entry *out)
{
	int rc;

	quarantine_bind_text(qs, QS_GET, 1, id, QUEUE_ID_LEN, false);
	rc = quarantine_step(qs, QS_GET);
	if (rc == SQLITE_ROW)
		quarantine_read_row(qs->stmts[QS_GET], out);
	else if (rc != SQLITE_DONE)
		return -1;
	quarantine_reset(qs, QS_GET);
	return rc == SQLITE_ROW;
}

static void quarantine_bind_time(sqlite3_stmt *st, int i, time_t t)
{
	if (t == 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_int64(st, i, t);
}

int quarantine_store_list(struct quarantine_store *qs, const struct quarantine_filter *f,
			  struct quarantine_entry **out, size_t *n)
{
	enum quarantine_stmt s = f->oldest_first ? QS_LIST_OLDEST : QS_LIST_NEWEST;
	sqlite3_stmt *st = qs->stmts[s];
	size_t limit = f->limit == 0 || f->limit > QUARANTINE_LIST_MAX ? QUARANTINE_LIST_MAX : f->limit;
	struct quarantine_entry *v = NULL;
	size_t count = 0, cap = 0;
	int rc;

	quarantine_bind_text(qs, s, 1, f->sender, QUARANTINE_TEXT_MAX, true);
	quarantine_bind_text(qs, s, 2, f->rcpt, QUARANTINE_TEXT_MAX, true);
	quarantine_bind_text(qs, s, 3, f->category, QUARANTINE_TEXT_MAX, true);
	quarantine_bind_time(st, 4, f->since);
	quarantine_bind_time(st, 5, f->before);
	if (f->state >= 0)
		sqlite3_bind_int(st, 6, f->state);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)limit);
	while ((rc = quarantine_step(qs, s)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap ? 2 * cap : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		quarantine_read_row(st, &v[count++]);
	}
	if (rc != SQLITE_DONE) {
		quarantine_entries_free(v, count);
		*out = NULL;
		*n = 0;
		return -1;
	}
	quarantine_reset(qs, s);
	*out = v;
	*n = count;
	return 0;
}

int quarantine_store_due(struct quarantine_store *qs, unsigned max_age, size_t limit,
			 struct quarantine_entry **out, size_t *n)
{
	struct quarantine_filter f;

	memset(&f, 0, sizeof(f));
	f.state = QUARANTINE_HELD;
	f.before = quarantine_store_now(qs) - (time_t)max_age + 1;
	f.oldest_first = true;
	f.limit = limit;
	return quarantine_store_list(qs, &f, out, n);
}

int quarantine_store_finish(struct quarantine_store *qs, const char *id, enum quarantine_state state)
{
	sqlite3_stmt *st = qs->stmts[QS_FINISH];
	int rc;

	quarantine_bind_text(qs, QS_FINISH, 1, id, QUEUE_ID_LEN, false);
	sqlite3_bind_int(st, 2, state);
	sqlite3_bind_int64(st, 3, quarantine_store_now(qs));
	rc = quarantine_step(qs, QS_FINISH);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return -1;
	quarantine_reset(qs, QS_FINISH);
	return sqlite3_changes(qs->db) > 0;
}

int quarantine_store_count(struct quarantine_store *qs, size_t counts[4])
{
	sqlite3_stmt *st = qs->stmts[QS_COUNT];
	int rc;

	memset(counts, 0, 4 * sizeof(counts[0]));
	while ((rc = quarantine_step(qs, QS_COUNT)) == SQLITE_ROW) {
		int state = sqlite3_column_int(st, 0);

		if (state >= QUARANTINE_HELD && state <= QUARANTINE_EXPIRED)
			counts[state] = (size_t)sqlite3_column_int64(st, 1);
	}
	if (rc != SQLITE_DONE)
		return -1;
	quarantine_reset(qs, QS_COUNT);
	return 0;
}

void quarantine_entry_clear(struct quarantine_entry *e)
{
	free(e->sender);
	free(e->recipients);
	free(e->subject);
	free(e->category);
	free(e->reasons);
	free(e->client_addr);
	memset(e, 0, sizeof(*e));
}

void quarantine_entries_free(struct quarantine_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		quarantine_entry_clear(&v[i]);
	free(v);
}

static const char *const quarantine_state_names[] = { "held", "released", "deleted", "expired" };

const char *quarantine_state_name(enum quarantine_state st)
{
	if ((unsigned)st >= sizeof(quarantine_state_names) / sizeof(quarantine_state_names[0]))
		panic("bad quarantine state %d", (int)st);
	return quarantine_state_names[st];
}

int quarantine_state_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(quarantine_state_names) / sizeof(quarantine_state_names[0]); i++) {
		if (strcmp(s, quarantine_state_names[i]) == 0)
			return (int)i;
	}
	return -1;
}
