/*
 * Worker threads for blocking or CPU-heavy work (password hashing, local
 * delivery fsyncs, later virus scans) so the event loop never waits.
 * Two priorities: high is always served first. `done` runs on the event
 * loop thread.
 */
#ifndef POSTERN_WORKPOOL_H
#define POSTERN_WORKPOOL_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct workpool;

enum work_priority { WORK_HIGH = 0, WORK_LOW = 1 };

struct workpool *workpool_new(struct event_base *base, unsigned nthreads);
void workpool_free(struct workpool *pool);
void workpool_submit(struct workpool *pool, enum work_priority prio,
		     void (*run)(void *arg), void (*done)(void *arg), void *arg);
/* The same, returning the job's id (never 0) for workpool_promote. */
uint64_t workpool_submit_id(struct workpool *pool, enum work_priority prio,
			    void (*run)(void *arg), void (*done)(void *arg), void *arg);
/*
 * Something now waits on a low-priority job (a background scan whose
 * verdict a session needs): move it to the end of the high queue. False
 * when it already started, finished, or was not low priority.
 */
bool workpool_promote(struct workpool *pool, uint64_t id);

#endif
