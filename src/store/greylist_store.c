/*
 * The greylisting database on SQLite (see greylist_store.h).
 *
 * Why this may run on the event loop thread: each check is at most five
 * prepared statements, each a primary-key look-up or single-row upsert,
 * inside one transaction; with WAL and synchronous=NORMAL a commit appends
 * to the log without fsync, so a check costs tens of microseconds. The
 * rare slow moments are bounded too: expiry deletes at most a batch of
 * rows per table every few minutes, a WAL checkpoint runs every 1000
 * pages, and a lock held by another process is waited for at most
 * GREYLIST_BUSY_MS before the check gives up and lets the mail through.
 */
#include "store/greylist_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define LOG_MODULE "greylist"
#include "core/log.h"
#include "store/sqlite_open.h"

#define GREYLIST_BUSY_MS 50              /* wait for another process's lock, then fail open */
#define GREYLIST_EXPIRE_INTERVAL 300     /* seconds between expiry runs */
#define GREYLIST_EXPIRE_BATCH 1000       /* rows per table per run */
#define GREYLIST_HOUR 3600

static const char greylist_schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS triples ("
	" network TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,"
	" first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
	" passed INTEGER NOT NULL, expires INTEGER NOT NULL,"
	" PRIMARY KEY (network, sender, rcpt)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS triples_expires ON triples(expires);"
	"CREATE TABLE IF NOT EXISTS networks ("
	" network TEXT PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS networks_expires ON networks(expires);"
	"CREATE TABLE IF NOT EXISTS rates ("
	" network TEXT NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL,"
	" PRIMARY KEY (network, hour)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS rates_hour ON rates(hour);";

enum greylist_stmt {
	GL_BEGIN,
	GL_COMMIT,
	GL_ROLLBACK,
	GL_GET_NETWORK,
	GL_PUT_NETWORK,
	GL_GET_TRIPLE,
	GL_PUT_TRIPLE,
	GL_BUMP_RATE,
	GL_EXPIRE_TRIPLES,
	GL_EXPIRE_NETWORKS,
	GL_EXPIRE_RATES,
	GL_NSTMTS,
};

static const char *const greylist_sql[GL_NSTMTS] = {
	[GL_BEGIN] = "BEGIN IMMEDIATE",
	[GL_COMMIT] = "COMMIT",
	[GL_ROLLBACK] = "ROLLBACK",
	[GL_GET_NETWORK] = "SELECT expires FROM networks WHERE network = ?1",
	[GL_PUT_NETWORK] = "INSERT INTO networks (network, expires) VALUES (?1, ?2)"
			   " ON CONFLICT (network) DO UPDATE SET expires = excluded.expires",
	[GL_GET_TRIPLE] = "SELECT first_seen, passed FROM triples"
			  " WHERE network = ?1 AND sender = ?2 AND rcpt = ?3",
	[GL_PUT_TRIPLE] = "INSERT INTO triples (network, sender, rcpt, first_seen, last_seen, passed, expires)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
			  " ON CONFLICT (network, sender, rcpt) DO UPDATE SET first_seen = excluded.first_seen,"
			  " last_seen = excluded.last_seen, passed = excluded.passed, expires = excluded.expires",
	[GL_BUMP_RATE] = "INSERT INTO rates (network, hour, count) VALUES (?1, ?2, 1)"
			 " ON CONFLICT (network, hour) DO UPDATE SET count = count + 1 RETURNING count",
	[GL_EXPIRE_TRIPLES] = "DELETE FROM triples WHERE (network, sender, rcpt) IN"
			      " (SELECT network, sender, rcpt FROM triples WHERE expires <= ?1 LIMIT ?2)",
	[GL_EXPIRE_NETWORKS] = "DELETE FROM networks WHERE network IN"
			       " (SELECT network FROM networks WHERE expires <= ?1 LIMIT ?2)",
	[GL_EXPIRE_RATES] = "DELETE FROM rates WHERE (network, hour) IN"
			    " (SELECT network, hour FROM rates WHERE hour < ?1 LIMIT ?2)",
};

static const struct store_sqlite_spec greylist_spec = {
	.what = "greylist database",
	.schema = greylist_schema,
	.sql = greylist_sql,
	.nsql = GL_NSTMTS,
	.busy_ms = GREYLIST_BUSY_MS,
};

struct greylist {
	int refcount;
	char *path;
	sqlite3 *db;
	sqlite3_stmt *stmts[GL_NSTMTS];
	greylist_clock_fn clock;
	void *clock_arg;
	time_t next_expire;
};

static time_t greylist_now(const struct greylist *g)
{
	return g->clock != NULL ? g->clock(g->clock_arg) : time(NULL);
}

static void greylist_close(struct greylist *g)
{
	for (size_t i = 0; i < GL_NSTMTS; i++)
		sqlite3_finalize(g->stmts[i]);
	sqlite3_close(g->db);
	free(g->path);
	free(g);
}

struct greylist *greylist_open(const char *path, char *err, size_t errlen)
{
	struct greylist *g = xcalloc(1, sizeof(*g));

	g->refcount = 1;
	g->path = xstrdup(path);
	if (store_sqlite_open(path, &greylist_spec, &g->db, g->stmts, err, errlen) < 0) {
		greylist_close(g);
		return NULL;
	}
	return g;
}

struct greylist *greylist_ref(struct greylist *g)
{
	g->refcount++;
	return g;
}

void greylist_unref(struct greylist *g)
{
	if (g == NULL || --g->refcount > 0)
		return;
	greylist_close(g);
}

const char *greylist_path(const struct greylist *g)
{
	return g->path;
}

void greylist_set_clock(struct greylist *g, greylist_clock_fn clock, void *arg)
{
	g->clock = clock;
	g->clock_arg = arg;
	g->next_expire = 0;
}

/* Run a statement without rows (or with one ignored row); false on error, logged. */
static bool greylist_run(struct greylist *g, enum greylist_stmt s)
{
	sqlite3_stmt *st = g->stmts[s];
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return true;
	log_warn("greylist database %s: %s", g->path, sqlite3_errmsg(g->db));
	return false;
}

/* Step a look-up: 1 with a row (the caller resets), 0 without one, -1 on error. */
static int greylist_row(struct greylist *g, enum greylist_stmt s)
{
	sqlite3_stmt *st = g->stmts[s];
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return 0;
	log_warn("greylist database %s: %s", g->path, sqlite3_errmsg(g->db));
	return -1;
}

static void greylist_row_done(struct greylist *g, enum greylist_stmt s)
{
	sqlite3_reset(g->stmts[s]);
	sqlite3_clear_bindings(g->stmts[s]);
}

static void greylist_bind_text(struct greylist *g, enum greylist_stmt s, int i, const char *text)
{
	size_t len = strnlen(text, GREYLIST_KEY_MAX);

	sqlite3_bind_text(g->stmts[s], i, text, (int)len, SQLITE_TRANSIENT);
}

/* The network's whitelist entry expires after now: 1 yes, 0 no, -1 error. */
static int greylist_whitelisted_at(struct greylist *g, const char *network, time_t now)
{
	int r;

	greylist_bind_text(g, GL_GET_NETWORK, 1, network);
	r = greylist_row(g, GL_GET_NETWORK);
	if (r == 1) {
		r = sqlite3_column_int64(g->stmts[GL_GET_NETWORK], 0) > now;
		greylist_row_done(g, GL_GET_NETWORK);
	}
	return r;
}

bool greylist_network_whitelisted(struct greylist *g, const char *network)
{
	return greylist_whitelisted_at(g, network, greylist_now(g)) == 1;
}

static bool greylist_put_network(struct greylist *g, const char *network, time_t expires)
{
	greylist_bind_text(g, GL_PUT_NETWORK, 1, network);
	sqlite3_bind_int64(g->stmts[GL_PUT_NETWORK], 2, expires);
	return greylist_run(g, GL_PUT_NETWORK);
}

struct greylist_triple {
	const char *network, *sender, *rcpt;
	time_t first_seen, last_seen, expires;
	bool passed;
};

static bool greylist_put_triple(struct greylist *g, const struct greylist_triple *t)
{
	sqlite3_stmt *st = g->stmts[GL_PUT_TRIPLE];

	greylist_bind_text(g, GL_PUT_TRIPLE, 1, t->network);
	greylist_bind_text(g, GL_PUT_TRIPLE, 2, t->sender);
	greylist_bind_text(g, GL_PUT_TRIPLE, 3, t->rcpt);
	sqlite3_bind_int64(st, 4, t->first_seen);
	sqlite3_bind_int64(st, 5, t->last_seen);
	sqlite3_bind_int(st, 6, t->passed);
	sqlite3_bind_int64(st, 7, t->expires);
	return greylist_run(g, GL_PUT_TRIPLE);
}

/* Look the triple up: 1 found (first_seen, passed filled), 0 not, -1 error. */
static int greylist_get_triple(struct greylist *g, struct greylist_triple *t)
{
	sqlite3_stmt *st = g->stmts[GL_GET_TRIPLE];
	int r;

	greylist_bind_text(g, GL_GET_TRIPLE, 1, t->network);
	greylist_bind_text(g, GL_GET_TRIPLE, 2, t->sender);
	greylist_bind_text(g, GL_GET_TRIPLE, 3, t->rcpt);
	r = greylist_row(g, GL_GET_TRIPLE);
	if (r == 1) {
		t->first_seen = sqlite3_column_int64(st, 0);
		t->passed = sqlite3_column_int(st, 1) != 0;
		greylist_row_done(g, GL_GET_TRIPLE);
	}
	return r;
}

/* Count one more new triple for the network this hour; the new count, or -1. */
static long long greylist_bump_rate(struct greylist *g, const char *network, time_t now)
{
	long long count;

	greylist_bind_text(g, GL_BUMP_RATE, 1, network);
	sqlite3_bind_int64(g->stmts[GL_BUMP_RATE], 2, now / GREYLIST_HOUR);
	if (greylist_row(g, GL_BUMP_RATE) != 1)
		return -1;
	count = sqlite3_column_int64(g->stmts[GL_BUMP_RATE], 0);
	greylist_row_done(g, GL_BUMP_RATE);
	return count;
}

/* The decision, inside the transaction; GREYLIST_FAILED on any database error. */
static enum greylist_verdict greylist_decide(struct greylist *g, const struct greylist_params *p,
					     struct greylist_triple *t, time_t now)
{
	int found = greylist_get_triple(g, t);
	int whitelisted;
	long long rate;

	if (found < 0)
		return GREYLIST_FAILED;
	t->last_seen = now;
	if (found && t->passed) {
		t->expires = now + p->whitelist_ttl;
		return greylist_put_triple(g, t) ? GREYLIST_KNOWN : GREYLIST_FAILED;
	}
	if (found && now <= t->first_seen + (time_t)p->window) {
		if (now < t->first_seen + (time_t)p->delay) {
			t->expires = t->first_seen + p->window;
			return greylist_put_triple(g, t) ? GREYLIST_EARLY : GREYLIST_FAILED;
		}
		t->passed = true;
		t->expires = now + p->whitelist_ttl;
		if (!greylist_put_triple(g, t) || !greylist_put_network(g, t->network, t->expires))
			return GREYLIST_FAILED;
		return GREYLIST_RETRIED;
	}
	/* a new triple, or one whose retry window passed */
	whitelisted = greylist_whitelisted_at(g, t->network, now);
	rate = greylist_bump_rate(g, t->network, now);
	if (whitelisted < 0 || rate < 0)
		return GREYLIST_FAILED;
	t->first_seen = now;
	if (whitelisted && rate <= GREYLIST_NEW_TRIPLES_PER_HOUR) {
		t->passed = true;
		t->expires = now + p->whitelist_ttl;
		return greylist_put_triple(g, t) ? GREYLIST_WHITELISTED : GREYLIST_FAILED;
	}
	if (whitelisted)
		log_info("network %s started %lld new triples this hour: greylisted despite its whitelist",
			 t->network, rate);
	t->passed = false;
	t->expires = now + p->window;
	return greylist_put_triple(g, t) ? GREYLIST_NEW : GREYLIST_FAILED;
}

enum greylist_verdict greylist_check(struct greylist *g, const struct greylist_params *p,
				     const char *network, const char *sender, const char *rcpt)
{
	struct greylist_triple t = { .network = network, .sender = sender, .rcpt = rcpt };
	time_t now = greylist_now(g);
	enum greylist_verdict v;

	if (now >= g->next_expire) {
		g->next_expire = now + GREYLIST_EXPIRE_INTERVAL;
		greylist_expire(g);
	}
	if (!greylist_run(g, GL_BEGIN))
		return GREYLIST_FAILED;
	v = greylist_decide(g, p, &t, now);
	if (v == GREYLIST_FAILED || !greylist_run(g, GL_COMMIT)) {
		greylist_run(g, GL_ROLLBACK);
		return GREYLIST_FAILED;
	}
	return v;
}

static int greylist_expire_one(struct greylist *g, enum greylist_stmt s, sqlite3_int64 limit)
{
	sqlite3_bind_int64(g->stmts[s], 1, limit);
	sqlite3_bind_int64(g->stmts[s], 2, GREYLIST_EXPIRE_BATCH);
	if (!greylist_run(g, s))
		return -1;
	return sqlite3_changes(g->db);
}

int greylist_expire(struct greylist *g)
{
	time_t now = greylist_now(g);
	int a, b, c;

	a = greylist_expire_one(g, GL_EXPIRE_TRIPLES, now);
	b = greylist_expire_one(g, GL_EXPIRE_NETWORKS, now);
	c = greylist_expire_one(g, GL_EXPIRE_RATES, now / GREYLIST_HOUR);
	if (a < 0 || b < 0 || c < 0)
		return -1;
	if (a + b + c > 0)
		log_debug("expired %d triples, %d networks, %d rate counters", a, b, c);
	return a + b + c;
}

/* Keep the first prefix bits of n bytes. */
static void greylist_mask(unsigned char *bytes, size_t n, unsigned prefix)
{
	for (size_t i = 0; i < n; i++) {
		unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;

		bytes[i] &= (unsigned char)(0xff00u >> bits);
	}
}

int greylist_network(const struct sockaddr *sa, unsigned v4prefix, unsigned v6prefix, char *out,
		     size_t outlen)
{
	char text[INET6_ADDRSTRLEN];
	unsigned char bytes[16];

	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(bytes, &a6->s6_addr[12], 4);
		} else {
			memcpy(bytes, a6->s6_addr, 16);
			v6prefix = v6prefix > 128 ? 128 : v6prefix;
			greylist_mask(bytes, 16, v6prefix);
			inet_ntop(AF_INET6, bytes, text, sizeof(text));
			snprintf(out, outlen, "%s/%u", text, v6prefix);
			return 0;
		}
	} else if (sa->sa_family == AF_INET) {
		memcpy(bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else {
		return -1;
	}
	v4prefix = v4prefix > 32 ? 32 : v4prefix;
	greylist_mask(bytes, 4, v4prefix);
	inet_ntop(AF_INET, bytes, text, sizeof(text));
	snprintf(out, outlen, "%s/%u", text, v4prefix);
	return 0;
}

const char *greylist_verdict_str(enum greylist_verdict v)
{
	switch (v) {
	case GREYLIST_NEW:
		return "new";
	case GREYLIST_EARLY:
		return "early";
	case GREYLIST_RETRIED:
		return "retried";
	case GREYLIST_KNOWN:
		return "known";
	case GREYLIST_WHITELISTED:
		return "whitelisted";
	case GREYLIST_FAILED:
		return "failed";
	}
	return "?";
}
