/* The common open sequence of the SQLite stores (see sqlite_open.h). */
#include "store/sqlite_open.h"

#include <stdio.h>

/* "WHAT PATH: why", or "PATH: why" for a store whose caller names it. */
static void store_sqlite_error(const struct store_sqlite_spec *spec, const char *path, const char *why,
			       char *err, size_t errlen)
{
	snprintf(err, errlen, "%s%s%s: %s", spec->what != NULL ? spec->what : "", spec->what != NULL ? " " : "",
		 path, why);
}

int store_sqlite_open(const char *path, const struct store_sqlite_spec *spec, sqlite3 **db,
		      sqlite3_stmt **stmts, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		store_sqlite_error(spec, path, *db != NULL ? sqlite3_errmsg(*db) : "out of memory", err, errlen);
		return -1;
	}
	sqlite3_busy_timeout(*db, spec->busy_ms);
	if (sqlite3_exec(*db, spec->schema, NULL, NULL, &msg) != SQLITE_OK) {
		store_sqlite_error(spec, path, msg != NULL ? msg : sqlite3_errmsg(*db), err, errlen);
		sqlite3_free(msg);
		return -1;
	}
	for (size_t i = 0; i < spec->nsql; i++) {
		if (sqlite3_prepare_v3(*db, spec->sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts[i], NULL) !=
		    SQLITE_OK) {
			store_sqlite_error(spec, path, sqlite3_errmsg(*db), err, errlen);
			return -1;
		}
	}
	return 0;
}

int store_sqlite_int64(sqlite3_stmt *st, int64_t *out)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : -1;
}
