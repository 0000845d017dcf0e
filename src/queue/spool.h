/*
 * The spool: one file per message, written to incoming/ while DATA arrives,
 * renamed into queue/ when accepted, and made durable by a committer thread
 * that fsyncs a whole batch at once (group commit) before the 250 reply.
 *
 * File layout: the message bytes from offset 0 (so delivery streams them
 * straight from the file), then the envelope as text records, then a
 * fixed-size trailer "PSTRN1 <16 hex digits: envelope offset>\n". A file
 * without a valid trailer was never acknowledged and is discarded on
 * recovery.
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

struct spool *spool_open(const char *dir, struct event_base *base, bool use_syncfs,
			 char *err, size_t errlen);
void spool_close(struct spool *spool);

/* A fresh queue id (time-ordered, unique within this spool). */
void spool_new_id(struct spool *spool, char id[QUEUE_ID_LEN + 1]);

/* Start a message file in incoming/. NULL with errno on failure. */
struct spool_writer *spool_writer_new(struct spool *spool, const char *id);
/* Buffered append; -1 (errno set) on I/O error, which sticks. */
int spool_writer_write(struct spool_writer *w, const void *buf, size_t len);
uint64_t spool_writer_size(const struct spool_writer *w);
/* Throw the incoming file away. */
void spool_writer_abort(struct spool_writer *w);

/*
 * Called on the event loop thread once the message is durable (error == 0)
 * or could not be made so (error = errno value; the file is gone).
 */
typedef void (*spool_commit_cb)(void *arg, int error);

/*
 * Append the envelope and trailer, move the file into queue/, and queue it
 * for the next group fsync. Consumes the writer.
 */
void spool_commit(struct spool *spool, struct spool_writer *w, const struct envelope *env,
		  spool_commit_cb cb, void *arg);

/* Write a complete message (a bounce) synchronously and durably. */
int spool_write_message(struct spool *spool, const struct envelope *env,
			const void *data, size_t len);

/* Recovery: call cb for every committed message (cb owns the envelope). */
int spool_recover(struct spool *spool, void (*cb)(void *arg, struct envelope *env), void *arg);

/* Open the message for reading: fd positioned anywhere, *len message bytes. */
int spool_open_message(struct spool *spool, const char *id, int *fd, uint64_t *len);
/* Remove the message and its state log. */
int spool_remove(struct spool *spool, const char *id);

/* Append a delivery state record for recipient index (see spool.c). */
void spool_state_record(struct spool *spool, const struct envelope *env, size_t rcpt_index);
void spool_state_hold(struct spool *spool, const char *id, bool held);

#endif
