/*
 * The worker pool: a fixed set of threads taking jobs from two FIFO queues
 * (high priority first), and a completion list handed back to the event
 * loop through an eventfd so every `done` runs on the loop thread, in the
 * order the jobs finished.
 *
 * Shutdown: workpool_free lets running jobs finish (and runs their `done`
 * on the caller's thread) but drops queued jobs that have not started:
 * neither their `run` nor their `done` is called, so a caller that needs
 * every job to complete must wait for its callbacks before freeing.
 */
#include "core/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#define LOG_MODULE "workpool"
#include "core/alloc.h"
#include "core/log.h"

struct work_item {
	void (*run)(void *arg);
	void (*done)(void *arg);
	void *arg;
	uint64_t id;
	struct work_item *next;
};

struct work_list {
	struct work_item *head;
	struct work_item *tail;
};

struct workpool {
	struct event_base *base;
	pthread_t *threads;
	unsigned nthreads;
	pthread_mutex_t lock;
	pthread_cond_t wake;                /* a job was queued, or stopping */
	struct work_list queued[2];         /* indexed by enum work_priority */
	struct work_list finished;          /* waiting for the loop thread */
	bool stopping;
	uint64_t last_id;                   /* ids handed out by workpool_submit_id */
	int efd;                            /* signals the loop: finished is non-empty */
	struct event *done_ev;
};

static void work_list_push(struct work_list *l, struct work_item *it)
{
	it->next = NULL;
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
}

static struct work_item *work_list_pop(struct work_list *l)
{
	struct work_item *it = l->head;

	if (it) {
		l->head = it->next;
		if (l->head == NULL)
			l->tail = NULL;
	}
	return it;
}

/* Take the whole list at once so the lock is held for O(1), not per job. */
static struct work_item *work_list_take(struct work_list *l)
{
	struct work_item *it = l->head;

	l->head = l->tail = NULL;
	return it;
}

static void workpool_notify_loop(struct workpool *pool)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
	while (write(pool->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Runs jobs until told to stop; a job in progress always completes. */
static void *workpool_thread(void *arg)
{
	struct workpool *pool = arg;
	struct work_item *it;
	bool was_empty;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->stopping && pool->queued[WORK_HIGH].head == NULL &&
		       pool->queued[WORK_LOW].head == NULL)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (pool->stopping)
			break;
		it = work_list_pop(&pool->queued[WORK_HIGH]);
		if (it == NULL)
			it = work_list_pop(&pool->queued[WORK_LOW]);
		pthread_mutex_unlock(&pool->lock);

		it->run(it->arg);

		pthread_mutex_lock(&pool->lock);
		was_empty = pool->finished.head == NULL;
		work_list_push(&pool->finished, it);
		if (was_empty)
			workpool_notify_loop(pool);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void workpool_run_done(struct work_item *it)
{
	struct work_item *next;

	for (; it; it = next) {
		next = it->next;
		if (it->done)
			it->done(it->arg);
		free(it);
	}
}

static void workpool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct workpool *pool = arg;
	struct work_item *batch;
	uint64_t count;

	while (read(pool->efd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&pool->lock);
	batch = work_list_take(&pool->finished);
	pthread_mutex_unlock(&pool->lock);
	workpool_run_done(batch);
}

static void workpool_stop_threads(struct workpool *pool, unsigned started)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(pool->threads[i], NULL);
}

struct workpool *workpool_new(struct event_base *base, unsigned nthreads)
{
	struct workpool *pool = xcalloc(1, sizeof(*pool));
	unsigned i;
	int rc;

	pool->base = base;
	pool->nthreads = nthreads ? nthreads : 1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0) {
		log_error("eventfd failed: %s", strerror(errno));
		goto err;
	}
	pool->done_ev = event_new(base, pool->efd, EV_READ | EV_PERSIST, workpool_done_cb, pool);
	if (pool->done_ev == NULL || event_add(pool->done_ev, NULL) < 0) {
		log_error("cannot watch the completion eventfd");
		goto err;
	}
	pool->threads = xcalloc(pool->nthreads, sizeof(*pool->threads));
	for (i = 0; i < pool->nthreads; i++) {
		rc = pthread_create(&pool->threads[i], NULL, workpool_thread, pool);
		if (rc != 0) {
			log_error("cannot start worker thread %u: %s", i, strerror(rc));
			workpool_stop_threads(pool, i);
			goto err;
		}
	}
	return pool;
err:
	if (pool->done_ev)
		event_free(pool->done_ev);
	if (pool->efd >= 0)
		close(pool->efd);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
	return NULL;
}

void workpool_free(struct workpool *pool)
{
	struct work_item *dropped, *next;
	unsigned ndropped = 0;

	if (pool == NULL)
		return;
	workpool_stop_threads(pool, pool->nthreads);
	for (int prio = WORK_HIGH; prio <= WORK_LOW; prio++) {
		for (dropped = work_list_take(&pool->queued[prio]); dropped; dropped = next) {
			next = dropped->next;
			free(dropped);
			ndropped++;
		}
	}
	if (ndropped)
		log_warn("shutdown dropped %u queued job(s) that had not started", ndropped);
	workpool_run_done(work_list_take(&pool->finished));
	event_free(pool->done_ev);
	close(pool->efd);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}

void workpool_submit(struct workpool *pool, enum work_priority prio,
		     void (*run)(void *arg), void (*done)(void *arg), void *arg)
{
	workpool_submit_id(pool, prio, run, done, arg);
}

uint64_t workpool_submit_id(struct workpool *pool, enum work_priority prio,
			    void (*run)(void *arg), void (*done)(void *arg), void *arg)
{
	struct work_item *it;
	uint64_t id;

	if (prio != WORK_HIGH && prio != WORK_LOW)
		panic("workpool_submit: bad priority %d", (int)prio);
	it = xmalloc(sizeof(*it));
	it->run = run;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&pool->lock);
	id = it->id = ++pool->last_id;
	work_list_push(&pool->queued[prio], it);
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	return id;
}

/* Unlinks the job `id` from l; NULL when it is not there. */
static struct work_item *work_list_remove(struct work_list *l, uint64_t id)
{
	struct work_item *it, *prev = NULL;

	for (it = l->head; it != NULL; prev = it, it = it->next) {
		if (it->id != id)
			continue;
		if (prev)
			prev->next = it->next;
		else
			l->head = it->next;
		if (l->tail == it)
			l->tail = prev;
		return it;
	}
	return NULL;
}

/* A linear search, but only of jobs not yet started, and only when someone waits. */
bool workpool_promote(struct workpool *pool, uint64_t id)
{
	struct work_item *it;

	pthread_mutex_lock(&pool->lock);
	it = work_list_remove(&pool->queued[WORK_LOW], id);
	if (it)
		work_list_push(&pool->queued[WORK_HIGH], it);
	pthread_mutex_unlock(&pool->lock);
	return it != NULL;
}
