/*
 * The queue manager: the in-memory index of spooled messages, the
 * scheduler that groups pending recipients by destination and starts
 * deliveries within the concurrency limits, retries with exponential
 * backoff, and bounces at the end of the queue lifetime.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/envelope.h"

struct postern;
struct queue;

struct queue_message {
	struct envelope *env;
	time_t next_attempt;        /* 0: due now */
	unsigned attempts;
	bool held;
	unsigned active;            /* deliveries in flight */
	char *last_error;
	struct queue_message *next; /* internal list links */
	struct queue_message *prev;
};

struct queue_stats {
	size_t messages;
	size_t recipients_pending;
	size_t held;
	size_t active_deliveries;
	uint64_t delivered;         /* recipients, since start */
	uint64_t deferred;
	uint64_t bounced;
};

struct queue *queue_new(struct postern *pt);
void queue_free(struct queue *q);
/* Load what the spool holds (after a restart) and start scheduling. */
int queue_recover(struct queue *q);
/* A freshly committed message; the queue takes ownership of env. */
void queue_add(struct queue *q, struct envelope *env);

/* Operator actions; -1 when the id is unknown. */
const struct queue_message *queue_find(struct queue *q, const char *id);
void queue_foreach(struct queue *q, void (*cb)(void *arg, const struct queue_message *m), void *arg);
int queue_delete(struct queue *q, const char *id);
int queue_hold(struct queue *q, const char *id);
int queue_release(struct queue *q, const char *id);
/* Make one (id) or all (id == NULL) deferred messages due now. */
int queue_flush(struct queue *q, const char *id);
void queue_get_stats(struct queue *q, struct queue_stats *st);

#endif
