/*
 * The spool: one file per message, written to incoming/ while DATA arrives,
 * renamed into queue/ when accepted, and made durable by a committer thread
 * that fsyncs a whole batch at once (group commit) before the 250 reply.
 *
 * File layout: the message bytes from offset 0 (so delivery streams them
 * straight from the file), then the envelope as text records, then a
 * fixed-size (33 bytes) trailer
 * "PSTRN1 <16 hex digits: envelope offset> <8 hex digits: crc32>\n" (the
 * full format is in spool.c). A file in incoming/ was never acknowledged and
 * is discarded on recovery; a file in queue/ that fails validation is moved
 * to corrupt/, never deleted.
 *
 * Delivery progress goes to state/<id>, an append-only log that is not
 * fsynced: losing it means delivering again, never losing mail.
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue/envelope.h"

struct event_base;
struct spool;
struct spool_writer;

/*
 * Create (if needed) and open <dir>/{incoming,queue,state} and start the
 * committer thread. use_syncfs: one syncfs() per batch instead of one
 * fdatasync() per file. NULL with a reason in err on failure.
 */
struct spool *spool_open(const char *dir, struct event_base *base, bool use_syncfs,
			 char *err, size_t errlen);
/*
 * Finish every pending commit and run its callback (on the caller's
 * thread) before returning, so each spool_commit gets exactly one callback.
 */
void spool_close(struct spool *spool);

/* A fresh queue id: QUEUE_ID_LEN upper-case hex digits, strictly increasing. */
void spool_new_id(struct spool *spool, char id[QUEUE_ID_LEN + 1]);

/* Start a message file in incoming/. NULL with errno on failure (EEXIST: take a new id). */
struct spool_writer *spool_writer_new(struct spool *spool, const char *id);
/* Buffered append; -1 (errno set) on I/O error, which sticks. */
int spool_writer_write(struct spool_writer *w, const void *buf, size_t len);
uint64_t spool_writer_size(const struct spool_writer *w);
/*
 * Flush and open the message written so far for reading (the content
 * stage scans it before it is committed); the caller closes the fd.
 */
int spool_writer_open_read(struct spool_writer *w);
/* Throw the incoming file away. */
void spool_writer_abort(struct spool_writer *w);

/*
 * Called on the event loop thread once the message is durable (error == 0)
 * or could not be made so (error = errno value; the file is gone).
 */
typedef void (*spool_commit_cb)(void *arg, int error);

/*
 * Append the envelope and trailer, and queue the file for the next group
 * sync, after which it is renamed into queue/. Consumes the writer. env is
 * only read during the call; env->id must be the writer's id, sender must
 * not be NULL ("" is <>) and every recipient needs an address, else the
 * commit fails with EINVAL. The size record is the writer's byte count
 * (recovery sets env->size from it). The callback always comes later, from
 * the event loop, never from inside this call.
 */
void spool_commit(struct spool *spool, struct spool_writer *w, const struct envelope *env,
		  spool_commit_cb cb, void *arg);

/*
 * Write a complete message (a bounce) synchronously and durably under
 * env->id (from spool_new_id). 0, or -1 with errno.
 */
int spool_write_message(struct spool *spool, const struct envelope *env,
			const void *data, size_t len);

/*
 * Recovery, before any mail is accepted: empty incoming/, then call cb for
 * every valid message of queue/ in id order, with the state log applied
 * (cb owns the envelope). Invalid files go to corrupt/ with a log line.
 * Returns the number of messages recovered, -1 if queue/ cannot be read.
 */
int spool_recover(struct spool *spool, void (*cb)(void *arg, struct envelope *env), void *arg);

/* Open the message for reading: fd positioned anywhere, *len message bytes. */
int spool_open_message(struct spool *spool, const char *id, int *fd, uint64_t *len);
/* Remove the message and its state log. */
int spool_remove(struct spool *spool, const char *id);

/*
 * Append a delivery state record for recipient index: its state, last_code,
 * remote and last_reply (see spool.c). Not fsynced.
 */
void spool_state_record(struct spool *spool, const struct envelope *env, size_t rcpt_index);
void spool_state_hold(struct spool *spool, const char *id, bool held);

/* Counters, for monitoring and for tests that check batching happened. */
struct spool_stats {
	uint64_t commits;    /* commits handed to the committer */
	uint64_t syncs;      /* group syncs, one per batch */
	uint64_t failures;   /* commits whose callback got an error */
};

void spool_get_stats(struct spool *spool, struct spool_stats *st);

#endif
