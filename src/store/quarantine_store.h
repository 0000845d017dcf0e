/*
 * The quarantine's metadata: why each quarantined message was held (its
 * category, reasons, score and SCL), the envelope and subject for search,
 * and what the operator or the expiry did with it. SQLite in WAL mode at
 * <data_dir>/quarantine.db; the message itself stays in the spool, held
 * in the queue (see queue/quarantine.h), so this file never holds mail.
 *
 * Rows are never removed by the store: a released, deleted or expired
 * message keeps its row as history, with its state and when it changed.
 */
#ifndef POSTERN_QUARANTINE_STORE_H
#define POSTERN_QUARANTINE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/envelope.h"

/* Bounds of what one row keeps; longer values are cut. */
#define QUARANTINE_TEXT_MAX 998          /* sender, subject, category, client */
#define QUARANTINE_REASONS_MAX 1024
#define QUARANTINE_RCPTS_MAX (64 * 1024) /* recipients, one per line */
#define QUARANTINE_LIST_MAX 10000        /* rows one list call returns at most */

struct quarantine_store;

enum quarantine_state {
	QUARANTINE_HELD = 0,      /* in the queue, held: waiting for the operator */
	QUARANTINE_RELEASED,      /* sent on to its recipients */
	QUARANTINE_DELETED,       /* removed by the operator */
	QUARANTINE_EXPIRED,       /* removed by the expiry */
};

struct quarantine_entry {
	char id[QUEUE_ID_LEN + 1];
	time_t arrival;
	char *sender;             /* "" for the null reverse-path */
	char *recipients;         /* addresses, one per line ("\n" between) */
	char *subject;            /* as in the header, unfolded; "" when absent */
	char *category;           /* "spam", "virus", "rule", ... */
	char *reasons;
	char *client_addr;        /* "" when unknown */
	double score;
	int scl;
	uint64_t size;
	enum quarantine_state state;
	time_t changed;           /* when state was set */
};

/*
 * Which rows a list returns. Text filters are case-insensitive substrings
 * (NULL or "": any); category is matched whole. since/before bound the
 * arrival (0: no bound; before is exclusive). state < 0: every state.
 */
struct quarantine_filter {
	const char *sender;
	const char *rcpt;
	const char *category;
	time_t since;
	time_t before;
	int state;
	bool oldest_first;        /* default: newest first */
	size_t limit;             /* 0 or over QUARANTINE_LIST_MAX: QUARANTINE_LIST_MAX */
};

/* Seconds on the wall clock; tests inject their own. */
typedef time_t (*quarantine_clock_fn)(void *arg);

/* Open or create the database; NULL with err filled. */
struct quarantine_store *quarantine_store_open(const char *path, char *err, size_t errlen);
void quarantine_store_close(struct quarantine_store *qs);
void quarantine_store_set_clock(struct quarantine_store *qs, quarantine_clock_fn clock, void *arg);
time_t quarantine_store_now(const struct quarantine_store *qs);

/*
 * Record a newly held message (state held, changed now). A row with the
 * same id is replaced. 0, or -1 (logged).
 */
int quarantine_store_add(struct quarantine_store *qs, const struct quarantine_entry *e);
/* 1 with *out filled (free with quarantine_entry_clear), 0 unknown id, -1 error. */
int quarantine_store_get(struct quarantine_store *qs, const char *id, struct quarantine_entry *out);
/*
 * Matching rows in *out (an array of *n entries; free with
 * quarantine_entries_free). 0, or -1 (logged) with nothing returned.
 */
int quarantine_store_list(struct quarantine_store *qs, const struct quarantine_filter *f,
			  struct quarantine_entry **out, size_t *n);
/*
 * The held rows that arrived max_age seconds or more ago by the store's
 * clock, oldest first, at most limit: what the expiry deletes next.
 */
int quarantine_store_due(struct quarantine_store *qs, unsigned max_age, size_t limit,
			 struct quarantine_entry **out, size_t *n);
/*
 * Move a held message to state: 1 done, 0 the id is unknown or no longer
 * held (so two operators cannot release and delete the same message), -1 error.
 */
int quarantine_store_finish(struct quarantine_store *qs, const char *id, enum quarantine_state state);
/* Rows per state, indexed by enum quarantine_state; -1 on error. */
int quarantine_store_count(struct quarantine_store *qs, size_t counts[4]);

void quarantine_entry_clear(struct quarantine_entry *e);
void quarantine_entries_free(struct quarantine_entry *v, size_t n);
const char *quarantine_state_name(enum quarantine_state st);
/* The state named s, or -1. */
int quarantine_state_parse(const char *s);

#endif
