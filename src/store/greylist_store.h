/*
 * The greylisting database: (client network, sender, recipient) triples
 * with when they were first and last seen and whether a retry passed, an
 * auto-whitelist of client networks that retried properly, and a count
 * of new triples per network and hour. SQLite in WAL mode at
 * <data_dir>/greylist.db, so the state survives restarts.
 *
 * Every call is a handful of indexed single-row statements in one
 * transaction, and commits do not fsync (synchronous=NORMAL: losing the
 * last commits in a power cut only greylists a few triples again), so the
 * calls are short enough for the event loop thread; see greylist_store.c.
 *
 * Reference-counted: the policy state holds one reference and every
 * engine built on it another, so a reload that moves the database cannot
 * pull it from under a policy still in use.
 */
#ifndef POSTERN_GREYLIST_STORE_H
#define POSTERN_GREYLIST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

struct greylist;

/*
 * New triples per network per clock hour beyond which the network's
 * whitelist entry is ignored: a whitelisted network that suddenly sends to
 * many new sender/recipient pairs (a compromised host, a spam run) is
 * greylisted again. Legitimate senders rarely start 50 new conversations
 * with one site within an hour.
 */
#define GREYLIST_NEW_TRIPLES_PER_HOUR 50

#define GREYLIST_KEY_MAX 320            /* sender and recipient are cut to this */

struct greylist_params {
	unsigned delay;          /* seconds before a retry passes */
	unsigned window;         /* seconds after the first attempt within which the retry must come */
	unsigned whitelist_ttl;  /* seconds a passed triple and its network stay known */
};

enum greylist_verdict {
	GREYLIST_NEW = 0,        /* first attempt (or the last one is too old): defer */
	GREYLIST_EARLY,          /* retried before the delay: defer */
	GREYLIST_RETRIED,        /* retried in time: pass, the network is now whitelisted */
	GREYLIST_KNOWN,          /* this triple passed before: pass */
	GREYLIST_WHITELISTED,    /* the network is whitelisted: pass */
	GREYLIST_FAILED,         /* the database failed (logged): pass */
};

/* Seconds on the wall clock (the database outlives the process); tests inject their own. */
typedef time_t (*greylist_clock_fn)(void *arg);

/* Open or create the database; NULL with err filled. refcount 1. */
struct greylist *greylist_open(const char *path, char *err, size_t errlen);
struct greylist *greylist_ref(struct greylist *g);
void greylist_unref(struct greylist *g);
const char *greylist_path(const struct greylist *g);
void greylist_set_clock(struct greylist *g, greylist_clock_fn clock, void *arg);

/*
 * Judge one attempt and record it. sender "<>" for the null sender;
 * sender and recipient are compared as given (callers lower-case them).
 * Expired rows are dropped now and then on the way.
 */
enum greylist_verdict greylist_check(struct greylist *g, const struct greylist_params *p,
				     const char *network, const char *sender, const char *rcpt);
bool greylist_network_whitelisted(struct greylist *g, const char *network);
/* Drop rows past their expiry, at most a batch per table; the number dropped or -1. */
int greylist_expire(struct greylist *g);

/* "192.0.2.0/24" or "2001:db8::/64" for the client address; -1 for another family. */
int greylist_network(const struct sockaddr *sa, unsigned v4prefix, unsigned v6prefix, char *out,
		     size_t outlen);
const char *greylist_verdict_str(enum greylist_verdict v);

#endif
