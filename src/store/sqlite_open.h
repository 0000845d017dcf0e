/*
 * How every SQLite store of postern opens its database: created when
 * missing, one connection used by one thread at a time (the store
 * serialises), a busy timeout for the other processes on the same file
 * (`postern learn` beside the gateway), the schema applied, and the
 * store's statements prepared once.
 */
#ifndef POSTERN_STORE_SQLITE_OPEN_H
#define POSTERN_STORE_SQLITE_OPEN_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct store_sqlite_spec {
	const char *what;              /* "greylist database": the start of every error; NULL: none */
	const char *schema;            /* statements run once at open (CREATE ... IF NOT EXISTS) */
	const char *const *sql;        /* the statements to prepare, nsql of them */
	size_t nsql;
	int busy_ms;
};

/*
 * Open path per spec into *db and stmts[0..nsql). 0, or -1 with
 * "WHAT PATH: why" (or "PATH: why") in err; on failure what was opened or prepared is left
 * in *db and stmts for the caller's usual clean-up (finalize, close).
 */
int store_sqlite_open(const char *path, const struct store_sqlite_spec *spec, sqlite3 **db,
		      sqlite3_stmt **stmts, char *err, size_t errlen);

/*
 * Step a statement that answers one integer ("PRAGMA data_version", a
 * count) and reset it: 0 with the value in *out, -1 when no row came.
 * The stores that reload what other processes wrote ask data_version
 * this way.
 */
int store_sqlite_int64(sqlite3_stmt *st, int64_t *out);

#endif
