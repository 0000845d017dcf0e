/*
 * The quarantine as the gateway runs it: a quarantined message is
 * committed to the spool and held in the queue like any held message, and
 * its metadata (why, from whom, to whom) goes to the quarantine store.
 * Releasing it lets the queue deliver it to its original recipients;
 * deleting it (by the operator, or by the expiry once it is older than
 * [quarantine] expire) removes it from the queue. The store keeps every
 * row as history with the message's final state.
 *
 * The hold itself lives in the spool's state log, so a held message and
 * its store row both survive a restart.
 */
#ifndef POSTERN_QUARANTINE_H
#define POSTERN_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>

struct postern;
struct envelope;
struct quarantine;
struct quarantine_store;

/*
 * Open <data_dir>/quarantine.db and start the expiry timer, which looks
 * once a minute (more often for an expire under two minutes) for held
 * messages past their time. NULL with err on failure.
 */
struct quarantine *quarantine_new(struct postern *pt, char *err, size_t errlen);
void quarantine_free(struct quarantine *q);
struct quarantine_store *quarantine_store(struct quarantine *q);

/*
 * Record a message the content stage quarantined, right after it was
 * committed and held (env is the queue's envelope): its envelope, the
 * Subject read from the spool, and the verdict. 0, or -1 (logged; the
 * message stays held all the same and `postern queue release` frees it).
 */
int quarantine_record(struct postern *pt, const struct envelope *env, const char *category,
		      const char *reasons, double score, int scl);

/*
 * The operator's decisions. release: the queue delivers the message to its
 * original recipients; delete: it leaves the queue and the spool. 0, or -1
 * with why in err (not quarantined, already released/deleted/expired, no
 * longer in the queue).
 */
int quarantine_release(struct postern *pt, const char *id, char *err, size_t errlen);
int quarantine_delete(struct postern *pt, const char *id, char *err, size_t errlen);

/*
 * The operator released or deleted id with `postern queue` instead: if it
 * was quarantined and held, its record follows (released or deleted), so
 * the quarantine never shows a message as waiting that is gone.
 */
void quarantine_queue_changed(struct postern *pt, const char *id, bool released);

/* Delete the held messages older than [quarantine] expire now; how many, or -1. */
int quarantine_expire(struct postern *pt);

#endif
