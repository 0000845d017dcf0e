#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "core/workpool.h"
#include "unit.h"

/* Shared by the jobs of one test; the lock guards the fields the workers write. */
struct wp_test {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocker_running;
	bool release;
	char order[16];          /* run order, one letter per job */
	size_t norder;
	pthread_t loop_thread;
	unsigned ran;
	unsigned done;
	unsigned done_off_loop;  /* done callbacks seen on another thread */
};

struct wp_job {
	struct wp_test *t;
	char name;
};

static void wp_test_init(struct wp_test *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->loop_thread = pthread_self();
}

static void wp_test_destroy(struct wp_test *t)
{
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

static void wp_record_run(void *arg)
{
	struct wp_job *j = arg;

	pthread_mutex_lock(&j->t->lock);
	if (j->t->norder < sizeof(j->t->order) - 1)
		j->t->order[j->t->norder++] = j->name;
	j->t->ran++;
	pthread_mutex_unlock(&j->t->lock);
}

/* Occupies the only worker until the test releases it. */
static void wp_block_run(void *arg)
{
	struct wp_job *j = arg;

	pthread_mutex_lock(&j->t->lock);
	j->t->blocker_running = true;
	pthread_cond_broadcast(&j->t->cond);
	while (!j->t->release)
		pthread_cond_wait(&j->t->cond, &j->t->lock);
	pthread_mutex_unlock(&j->t->lock);
	wp_record_run(arg);
}

static void wp_done(void *arg)
{
	struct wp_job *j = arg;

	if (!pthread_equal(pthread_self(), j->t->loop_thread))
		j->t->done_off_loop++;
	j->t->done++;
	free(j);
}

static struct wp_job *wp_job(struct wp_test *t, char name)
{
	struct wp_job *j = calloc(1, sizeof(*j));

	j->t = t;
	j->name = name;
	return j;
}

static void wp_run_until(struct event_base *base, struct wp_test *t, unsigned want)
{
	for (int i = 0; i < 100000 && t->done < want; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

TEST(workpool_high_priority_first)
{
	struct event_base *base = event_base_new();
	struct workpool *pool = workpool_new(base, 1);
	struct wp_test t;

	wp_test_init(&t);
	CHECK(pool != NULL);
	workpool_submit(pool, WORK_LOW, wp_block_run, wp_done, wp_job(&t, 'B'));
	pthread_mutex_lock(&t.lock);
	while (!t.blocker_running)
		pthread_cond_wait(&t.cond, &t.lock);
	pthread_mutex_unlock(&t.lock);

	workpool_submit(pool, WORK_LOW, wp_record_run, wp_done, wp_job(&t, 'l'));
	workpool_submit(pool, WORK_LOW, wp_record_run, wp_done, wp_job(&t, 'm'));
	workpool_submit(pool, WORK_HIGH, wp_record_run, wp_done, wp_job(&t, 'H'));
	workpool_submit(pool, WORK_HIGH, wp_record_run, wp_done, wp_job(&t, 'I'));

	pthread_mutex_lock(&t.lock);
	t.release = true;
	pthread_cond_broadcast(&t.cond);
	pthread_mutex_unlock(&t.lock);

	wp_run_until(base, &t, 5);
	CHECK_INT(t.done, 5);
	CHECK_STR(t.order, "BHIlm");
	CHECK_INT(t.done_off_loop, 0);
	workpool_free(pool);
	event_base_free(base);
	wp_test_destroy(&t);
}

TEST(workpool_thousand_jobs_complete_on_loop_thread)
{
	struct event_base *base = event_base_new();
	struct workpool *pool = workpool_new(base, 4);
	struct wp_test t;

	wp_test_init(&t);
	for (int i = 0; i < 1000; i++)
		workpool_submit(pool, i % 3 ? WORK_LOW : WORK_HIGH, wp_record_run, wp_done,
				wp_job(&t, 'x'));
	wp_run_until(base, &t, 1000);
	CHECK_INT(t.done, 1000);
	CHECK_INT(t.ran, 1000);
	CHECK_INT(t.done_off_loop, 0);
	workpool_free(pool);
	event_base_free(base);
	wp_test_destroy(&t);
}

static void wp_done_no_free(void *arg)
{
	struct wp_job *j = arg;

	j->t->done++;
}

/* Lets workpool_free start stopping the pool before the blocker returns. */
static void *wp_release_later(void *arg)
{
	struct wp_test *t = arg;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	pthread_mutex_lock(&t->lock);
	t->release = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Queued jobs that never started are dropped at free; the running one finishes. */
TEST(workpool_free_drops_unstarted_jobs)
{
	struct event_base *base = event_base_new();
	struct workpool *pool = workpool_new(base, 1);
	struct wp_job jobs[4];
	struct wp_test t;
	pthread_t releaser;

	wp_test_init(&t);
	for (int i = 0; i < 4; i++) {
		jobs[i].t = &t;
		jobs[i].name = (char)('a' + i);
	}
	workpool_submit(pool, WORK_HIGH, wp_block_run, wp_done_no_free, &jobs[0]);
	pthread_mutex_lock(&t.lock);
	while (!t.blocker_running)
		pthread_cond_wait(&t.cond, &t.lock);
	pthread_mutex_unlock(&t.lock);
	for (int i = 1; i < 4; i++)
		workpool_submit(pool, WORK_LOW, wp_record_run, wp_done_no_free, &jobs[i]);

	pthread_create(&releaser, NULL, wp_release_later, &t);
	workpool_free(pool);
	pthread_join(releaser, NULL);
	CHECK_INT(t.done, 1);
	CHECK_INT(t.ran, 1);
	CHECK_STR(t.order, "a");
	event_base_free(base);
	wp_test_destroy(&t);
}

/* A low job something waits on jumps the low queue, behind high jobs already queued. */
TEST(workpool_promote_low_job)
{
	struct event_base *base = event_base_new();
	struct workpool *pool = workpool_new(base, 1);
	struct wp_test t;
	uint64_t waited, first;

	wp_test_init(&t);
	workpool_submit(pool, WORK_HIGH, wp_block_run, wp_done, wp_job(&t, 'B'));
	pthread_mutex_lock(&t.lock);
	while (!t.blocker_running)
		pthread_cond_wait(&t.cond, &t.lock);
	pthread_mutex_unlock(&t.lock);

	first = workpool_submit_id(pool, WORK_LOW, wp_record_run, wp_done, wp_job(&t, 'a'));
	workpool_submit(pool, WORK_LOW, wp_record_run, wp_done, wp_job(&t, 'b'));
	waited = workpool_submit_id(pool, WORK_LOW, wp_record_run, wp_done, wp_job(&t, 'c'));
	workpool_submit(pool, WORK_HIGH, wp_record_run, wp_done, wp_job(&t, 'H'));
	CHECK(first != 0 && waited != first);
	CHECK(workpool_promote(pool, waited));
	CHECK(!workpool_promote(pool, waited));          /* already high */
	CHECK(!workpool_promote(pool, 999999));          /* unknown id */

	pthread_mutex_lock(&t.lock);
	t.release = true;
	pthread_cond_broadcast(&t.cond);
	pthread_mutex_unlock(&t.lock);
	wp_run_until(base, &t, 5);
	CHECK_INT(t.done, 5);
	CHECK_STR(t.order, "BHcab");
	CHECK(!workpool_promote(pool, first));           /* finished */
	workpool_free(pool);
	event_base_free(base);
	wp_test_destroy(&t);
}
