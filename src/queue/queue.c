/*
 * The queue manager.
 *
 * Every spooled message is in exactly one of four lists: ready (due now),
 * deferred (waiting for its next attempt), active (deliveries in flight) or
 * held (by the operator). A delivery attempt splits a message's pending
 * recipients into jobs, one per destination (the local mailboxes, or one
 * remote domain), and runs them in parallel within the global and the
 * per-destination concurrency limits. When the last job of an attempt
 * reports, the message is finished (removed), bounced, or deferred with
 * exponential backoff until its lifetime runs out.
 *
 * Results reach the spool's state log before anything else, so a restart
 * never delivers a recipient twice unless the state log itself was lost.
 */
#include "queue/queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/workpool.h"
#include "queue/delivery.h"
#include "queue/dsn.h"
#include "queue/maildir.h"
#include "queue/spool.h"

#define LOG_MODULE "queue"
#include "core/log.h"

/* How far down the ready list one scheduling pass looks for admissible work. */
#define QUEUE_SCAN_LIMIT 2000
#define QUEUE_DEST_BUCKETS 256

enum queue_list_id { QL_READY, QL_DEFERRED, QL_ACTIVE, QL_HELD, QL_COUNT };

struct queue_list {
	struct queue_message *head, *tail;
	size_t count;
};

/* Active connections per destination, for max_per_destination. */
struct dest_count {
	char *name;
	unsigned active;
	struct dest_count *next;
};

struct queue {
	struct postern *pt;
	struct queue_list lists[QL_COUNT];
	struct dest_count *dests[QUEUE_DEST_BUCKETS];
	struct event *tick;
	struct event *kick;
	unsigned active_jobs;
	uint64_t delivered, deferred, bounced;
};

/* Per-message bookkeeping that the public struct does not show. */
struct queue_message_private {
	struct queue_message pub;
	enum queue_list_id list;
	bool deleted;                 /* delete requested while active */
	bool hold_requested;          /* hold requested while active */
	struct attempt *attempt;      /* while active */
};

struct attempt;

struct job {
	struct attempt *at;
	struct delivery_request req;
	char *domain;                 /* NULL for the local job */
	struct dest_count *dest;
	struct delivery_rcpt_result *local_results;
};

struct attempt {
	struct queue *q;
	struct queue_message_private *m;
	struct config *cfg;
	int fd;
	uint64_t len;
	struct job *jobs;
	size_t njobs;
	size_t pending;
	size_t *failed;               /* recipients that failed permanently in this attempt */
	size_t nfailed;
};

static void queue_kick(struct queue *q);

static struct queue_message_private *qm_private(const struct queue_message *m)
{
	return (struct queue_message_private *)m;
}

static void list_append(struct queue *q, struct queue_message_private *m, enum queue_list_id id)
{
	struct queue_list *l = &q->lists[id];

	m->list = id;
	m->pub.next = NULL;
	m->pub.prev = l->tail;
	if (l->tail)
		l->tail->next = &m->pub;
	else
		l->head = &m->pub;
	l->tail = &m->pub;
	l->count++;
}

static void list_unlink(struct queue *q, struct queue_message_private *m)
{
	struct queue_list *l = &q->lists[m->list];

	if (m->pub.prev)
		m->pub.prev->next = m->pub.next;
	else
		l->head = m->pub.next;
	if (m->pub.next)
		m->pub.next->prev = m->pub.prev;
	else
		l->tail = m->pub.prev;
	m->pub.next = m->pub.prev = NULL;
	l->count--;
}

static void list_move(struct queue *q, struct queue_message_private *m, enum queue_list_id id)
{
	list_unlink(q, m);
	list_append(q, m, id);
}

static void message_free(struct queue_message_private *m)
{
	envelope_free(m->pub.env);
	free(m->pub.last_error);
	free(m);
}

static unsigned dest_hash(const char *s)
{
	unsigned h = 5381;

	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h % QUEUE_DEST_BUCKETS;
}

static struct dest_count *dest_get(struct queue *q, const char *name)
{
	unsigned h = dest_hash(name);
	struct dest_count *d;

	for (d = q->dests[h]; d != NULL; d = d->next) {
		if (strcmp(d->name, name) == 0)
			return d;
	}
	d = xcalloc(1, sizeof(*d));
	d->name = xstrdup(name);
	d->next = q->dests[h];
	q->dests[h] = d;
	return d;
}

static size_t pending_rcpts(const struct envelope *env)
{
	size_t n = 0;

	for (size_t i = 0; i < env->nrcpts; i++)
		n += env->rcpts[i].state == RCPT_PENDING;
	return n;
}

static void lower_domain(const char *addr, char *out, size_t len)
{
	const char *d = address_domain(addr);
	size_t i;

	for (i = 0; d[i] != '\0' && i + 1 < len; i++)
		out[i] = (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] + 32 : d[i]);
	out[i] = '\0';
}

/* ---- results ----------------------------------------------------------- */

static void rcpt_set_reply(struct envelope_rcpt *r, const struct delivery_rcpt_result *res)
{
	free(r->last_reply);
	free(r->remote);
	r->last_code = res->code;
	r->last_reply = xstrdup(res->reply);
	r->remote = res->remote[0] ? xstrdup(res->remote) : NULL;
}

static void attempt_record(struct attempt *at, size_t idx, const struct delivery_rcpt_result *res)
{
	struct queue *q = at->q;
	struct envelope *env = at->m->pub.env;
	struct envelope_rcpt *r = &env->rcpts[idx];
	const char *status;

	rcpt_set_reply(r, res);
	switch (res->status) {
	case DELIVERY_OK:
		r->state = RCPT_DELIVERED;
		q->delivered++;
		status = "sent";
		break;
	case DELIVERY_PERMFAIL:
		r->state = RCPT_FAILED;
		at->failed = xreallocarray(at->failed, at->nfailed + 1, sizeof(*at->failed));
		at->failed[at->nfailed++] = idx;
		q->bounced++;
		status = "bounced";
		break;
	default:
		q->deferred++;
		status = "deferred";
		free(at->m->pub.last_error);
		at->m->pub.last_error = xstrdup(res->reply);
		break;
	}
	if (r->state != RCPT_PENDING)
		spool_state_record(q->pt->spool, env, idx);
	log_info("deliver queue_id=%s to=<%s> status=%s relay=%s delay=%lds attempts=%u reply=\"%s\"",
		 env->id, r->addr, status, res->remote[0] ? res->remote : "none",
		 (long)(time(NULL) - env->arrival), at->m->pub.attempts + 1, res->reply);
}

/* Send the sender an RFC 3464 report for the recipients that failed. */
static void queue_bounce(struct queue *q, const struct envelope *env, const size_t *idx, size_t n,
			 int fd, uint64_t len)
{
	struct config *cfg = q->pt->cfg;
	size_t *wanted = xcalloc(n ? n : 1, sizeof(*wanted));
	size_t nwanted = 0;
	struct strbuf sb;
	struct envelope *b;
	char from[600];

	for (size_t i = 0; i < n; i++) {
		if (dsn_wants_failure_report(env, &env->rcpts[idx[i]]))
			wanted[nwanted++] = idx[i];
	}
	if (nwanted == 0) {
		free(wanted);
		return;
	}
	if (cfg->bounce_from)
		snprintf(from, sizeof(from), "%s", cfg->bounce_from);
	else
		snprintf(from, sizeof(from), "MAILER-DAEMON@%s", cfg->hostname);
	strbuf_init(&sb, 2 * DSN_RETURN_FULL_MAX + 1024 * 1024);
	struct dsn_report rep = {
		.env = env, .rcpt_index = wanted, .nrcpts = nwanted, .reporting_mta = cfg->hostname,
		.from = from, .now = time(NULL), .orig_fd = fd, .orig_len = len,
	};
	if (dsn_build_bounce(&rep, &sb) < 0) {
		log_error("bounce queue_id=%s: cannot build the report", env->id);
		goto out;
	}
	b = envelope_new();
	spool_new_id(q->pt->spool, b->id);
	b->arrival = time(NULL);
	b->sender = xstrdup("");
	b->is_bounce = true;
	/* The report quotes the original: 8-bit content or addresses stay 8-bit. */
	b->body = env->body != BODY_7BIT || env->smtputf8 ? BODY_8BITMIME : BODY_7BIT;
	b->smtputf8 = env->smtputf8;
	b->client_addr = xstrdup("127.0.0.1");
	b->client_helo = xstrdup(cfg->hostname);
	b->size = sb.len;
	envelope_add_rcpt(b, env->sender);
	if (spool_write_message(q->pt->spool, b, sb.data, sb.len) < 0) {
		log_error("bounce queue_id=%s: cannot write the report: %s", env->id, strerror(errno));
		envelope_free(b);
		goto out;
	}
	log_info("bounce queue_id=%s report_id=%s to=<%s> rcpts=%zu", env->id, b->id, env->sender, nwanted);
	queue_add(q, b);
out:
	strbuf_free(&sb);
	free(wanted);
}

static unsigned queue_backoff(const struct config *cfg, unsigned attempts)
{
	unsigned delay = cfg->retry_min ? cfg->retry_min : 1;

	for (unsigned i = 1; i < attempts && delay < cfg->retry_max; i++)
		delay *= 2;
	return delay < cfg->retry_max ? delay : cfg->retry_max;
}

/* Recipients still pending when the lifetime ends fail with their last reply. */
static void attempt_expire(struct attempt *at)
{
	struct envelope *env = at->m->pub.env;

	for (size_t i = 0; i < env->nrcpts; i++) {
		struct envelope_rcpt *r = &env->rcpts[i];
		char reply[600];

		if (r->state != RCPT_PENDING)
			continue;
		snprintf(reply, sizeof(reply), "delivery time expired (4.4.7); last error: %s",
			 r->last_reply ? r->last_reply : "none");
		free(r->last_reply);
		r->last_reply = xstrdup(reply);
		r->state = RCPT_FAILED;
		spool_state_record(at->q->pt->spool, env, i);
		at->failed = xreallocarray(at->failed, at->nfailed + 1, sizeof(*at->failed));
		at->failed[at->nfailed++] = i;
		at->q->bounced++;
		log_info("expire queue_id=%s to=<%s> attempts=%u", env->id, r->addr, at->m->pub.attempts);
	}
}

static void attempt_free(struct attempt *at)
{
	for (size_t i = 0; i < at->njobs; i++) {
		free(at->jobs[i].req.rcpt_index);
		free(at->jobs[i].domain);
		free(at->jobs[i].local_results);
	}
	if (at->fd >= 0)
		close(at->fd);
	config_unref(at->cfg);
	free(at->jobs);
	free(at->failed);
	free(at);
}

/* The last job reported: the message is done, bounced, or waits for a retry. */
static void attempt_finish(struct attempt *at)
{
	struct queue *q = at->q;
	struct queue_message_private *m = at->m;
	struct envelope *env = m->pub.env;
	time_t now = time(NULL);

	m->pub.active = 0;
	m->attempt = NULL;
	if (m->deleted) {
		spool_remove(q->pt->spool, env->id);
		list_unlink(q, m);
		message_free(m);
		attempt_free(at);
		return;
	}
	m->pub.attempts++;
	if (pending_rcpts(env) > 0 && now - env->arrival >= (time_t)at->cfg->queue_lifetime)
		attempt_expire(at);
	if (at->nfailed > 0)
		queue_bounce(q, env, at->failed, at->nfailed, at->fd, at->len);
	if (pending_rcpts(env) == 0) {
		log_info("done queue_id=%s attempts=%u", env->id, m->pub.attempts);
		spool_remove(q->pt->spool, env->id);
		list_unlink(q, m);
		message_free(m);
	} else {
		m->pub.next_attempt = now + queue_backoff(at->cfg, m->pub.attempts);
		if (m->hold_requested) {
			m->hold_requested = false;
			m->pub.held = env->held = true;
			list_move(q, m, QL_HELD);
		} else {
			list_move(q, m, QL_DEFERRED);
		}
	}
	attempt_free(at);
	queue_kick(q);
}

static void job_finished(struct job *j)
{
	struct attempt *at = j->at;
	struct queue *q = at->q;

	q->active_jobs--;
	if (j->dest != NULL)
		j->dest->active--;
	if (--at->pending == 0)
		attempt_finish(at);
	else
		queue_kick(q);
}

static void job_smtp_done(void *arg, const struct delivery_rcpt_result *results, size_t n)
{
	struct job *j = arg;

	for (size_t i = 0; i < n && i < j->req.nrcpts; i++)
		attempt_record(j->at, j->req.rcpt_index[i], &results[i]);
	job_finished(j);
}

/* Worker thread: write each local recipient's Maildir copy (blocking fsyncs). */
static void job_local_run(void *arg)
{
	struct job *j = arg;
	const struct envelope *env = j->req.env;
	const struct config *cfg = j->at->cfg;

	for (size_t i = 0; i < j->req.nrcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[j->req.rcpt_index[i]];
		struct delivery_rcpt_result *res = &j->local_results[i];
		const struct user_account *u = config_find_user(cfg, r->addr);
		char dir[4096], err[256] = "";
		enum maildir_result mr;

		snprintf(res->remote, sizeof(res->remote), "local");
		if (u == NULL) {
			res->status = DELIVERY_PERMFAIL;
			res->code = 550;
			snprintf(res->reply, sizeof(res->reply), "550 5.1.1 <%s>: user unknown", r->addr);
			continue;
		}
		if (maildir_expand(u->maildir ? u->maildir : cfg->maildir_template, r->addr, dir, sizeof(dir)) < 0) {
			res->status = DELIVERY_PERMFAIL;
			res->code = 550;
			snprintf(res->reply, sizeof(res->reply), "550 5.3.5 <%s>: cannot map to a mailbox", r->addr);
			continue;
		}
		mr = maildir_deliver(dir, r->addr, env, j->req.body_fd, j->req.body_len, u->quota_bytes, err,
				     sizeof(err));
		res->status = mr == MAILDIR_OK ? DELIVERY_OK : mr == MAILDIR_PERMFAIL ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;
		res->code = mr == MAILDIR_OK ? 250 : mr == MAILDIR_PERMFAIL ? 552 : 451;
		if (mr == MAILDIR_OK)
			snprintf(res->reply, sizeof(res->reply), "250 2.0.0 delivered to maildir");
		else
			snprintf(res->reply, sizeof(res->reply), "%d %s", res->code, err);
	}
}

static void job_local_done(void *arg)
{
	struct job *j = arg;

	job_smtp_done(j, j->local_results, j->req.nrcpts);
}

/* ---- scheduling -------------------------------------------------------- */

static struct job *attempt_job_for(struct attempt *at, const char *domain)
{
	for (size_t i = 0; i < at->njobs; i++) {
		struct job *j = &at->jobs[i];
		if ((domain == NULL && j->domain == NULL) ||
		    (domain != NULL && j->domain != NULL && strcmp(domain, j->domain) == 0))
			return j;
	}
	at->jobs = xreallocarray(at->jobs, at->njobs + 1, sizeof(*at->jobs));
	memset(&at->jobs[at->njobs], 0, sizeof(at->jobs[0]));
	at->jobs[at->njobs].at = at;
	at->jobs[at->njobs].domain = xstrdup_or_null(domain);
	return &at->jobs[at->njobs++];
}

/* Group the pending recipients by destination. */
static void attempt_plan(struct attempt *at)
{
	const struct envelope *env = at->m->pub.env;

	for (size_t i = 0; i < env->nrcpts; i++) {
		char domain[256];
		struct job *j;

		if (env->rcpts[i].state != RCPT_PENDING)
			continue;
		lower_domain(env->rcpts[i].addr, domain, sizeof(domain));
		j = attempt_job_for(at, config_is_local_domain(at->cfg, domain) ? NULL : domain);
		j->req.rcpt_index = xreallocarray(j->req.rcpt_index, j->req.nrcpts + 1, sizeof(size_t));
		j->req.rcpt_index[j->req.nrcpts++] = i;
	}
}

static bool attempt_admissible(struct queue *q, struct attempt *at)
{
	for (size_t i = 0; i < at->njobs; i++) {
		if (at->jobs[i].domain != NULL &&
		    dest_get(q, at->jobs[i].domain)->active >= at->cfg->max_per_destination)
			return false;
	}
	return true;
}

static void attempt_start_jobs(struct attempt *at)
{
	struct queue *q = at->q;
	const struct envelope *env = at->m->pub.env;

	at->pending = at->njobs;
	for (size_t i = 0; i < at->njobs; i++) {
		struct job *j = &at->jobs[i];

		j->req.env = env;
		j->req.body_fd = at->fd;
		j->req.body_len = at->len;
		q->active_jobs++;
		if (j->domain == NULL) {
			j->local_results = xcalloc(j->req.nrcpts, sizeof(*j->local_results));
			workpool_submit(q->pt->workers, WORK_LOW, job_local_run, job_local_done, j);
			continue;
		}
		const struct relay_domain *rd = config_find_domain(at->cfg, j->domain);
		j->dest = dest_get(q, j->domain);
		j->dest->active++;
		j->req.domain = j->domain;
		j->req.hosts = rd ? rd->hosts : NULL;
		j->req.nhosts = rd ? rd->nhosts : 0;
		delivery_smtp_start(q->pt->delivery, &j->req, job_smtp_done, j);
	}
}

/* Try to start one message; false when its destinations are busy. */
static bool queue_start(struct queue *q, struct queue_message_private *m)
{
	struct attempt *at = xcalloc(1, sizeof(*at));

	at->q = q;
	at->m = m;
	at->cfg = config_ref(q->pt->cfg);
	at->fd = -1;
	attempt_plan(at);
	if (!attempt_admissible(q, at)) {
		attempt_free(at);
		return false;
	}
	if (spool_open_message(q->pt->spool, m->pub.env->id, &at->fd, &at->len) < 0) {
		log_error("queue_id=%s: cannot open the spool file: %s; holding it", m->pub.env->id, strerror(errno));
		attempt_free(at);
		m->pub.held = true;
		list_move(q, m, QL_HELD);
		return true;
	}
	m->pub.active = (unsigned)at->njobs;
	m->attempt = at;
	list_move(q, m, QL_ACTIVE);
	if (at->njobs == 0)
		attempt_finish(at);     /* nothing pending: recovered after delivery */
	else
		attempt_start_jobs(at);
	return true;
}

static void queue_run(struct queue *q)
{
	struct queue_message *m = q->lists[QL_READY].head;
	size_t scanned = 0;

	while (m != NULL && q->active_jobs < q->pt->cfg->max_deliveries && scanned++ < QUEUE_SCAN_LIMIT) {
		struct queue_message *next = m->next;
		queue_start(q, qm_private(m));
		m = next;
	}
}

static void queue_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	queue_run(arg);
}

static void queue_kick(struct queue *q)
{
	if (!event_pending(q->kick, EV_TIMEOUT, NULL))
		event_active(q->kick, EV_TIMEOUT, 0);
}

/* Once a second: deferred messages whose time has come become ready. */
static void queue_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	time_t now = time(NULL);
	struct queue_message *m = q->lists[QL_DEFERRED].head;

	while (m != NULL) {
		struct queue_message *next = m->next;
		if (m->next_attempt <= now)
			list_move(q, qm_private(m), QL_READY);
		m = next;
	}
	queue_run(q);
}

/* ---- public ------------------------------------------------------------ */

struct queue *queue_new(struct postern *pt)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->pt = pt;
	q->tick = event_new(pt->base, -1, EV_PERSIST, queue_tick_cb, q);
	q->kick = event_new(pt->base, -1, 0, queue_kick_cb, q);
	event_add(q->tick, &(struct timeval){ 1, 0 });
	return q;
}

void queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	event_free(q->tick);
	event_free(q->kick);
	for (int l = 0; l < QL_COUNT; l++) {
		while (q->lists[l].head != NULL) {
			struct queue_message_private *m = qm_private(q->lists[l].head);
			list_unlink(q, m);
			/*
			 * Called after delivery and the worker pool are gone, so
			 * no attempt can report any more: what was in flight is
			 * delivered again after the restart.
			 */
			if (m->attempt != NULL)
				attempt_free(m->attempt);
			message_free(m);
		}
	}
	for (int i = 0; i < QUEUE_DEST_BUCKETS; i++) {
		while (q->dests[i] != NULL) {
			struct dest_count *d = q->dests[i];
			q->dests[i] = d->next;
			free(d->name);
			free(d);
		}
	}
	free(q);
}

void queue_add(struct queue *q, struct envelope *env)
{
	struct queue_message_private *m = xcalloc(1, sizeof(*m));

	m->pub.env = env;
	if (env->held) {
		m->pub.held = true;
		list_append(q, m, QL_HELD);
	} else {
		list_append(q, m, QL_READY);
		queue_kick(q);
	}
}

static void queue_recover_one(void *arg, struct envelope *env)
{
	queue_add(arg, env);
}

int queue_recover(struct queue *q)
{
	int n = spool_recover(q->pt->spool, queue_recover_one, q);

	if (n < 0)
		return -1;
	log_info("recovered %d messages from the spool", n);
	return n;
}

const struct queue_message *queue_find(struct queue *q, const char *id)
{
	for (int l = 0; l < QL_COUNT; l++) {
		for (struct queue_message *m = q->lists[l].head; m != NULL; m = m->next) {
			if (strcmp(m->env->id, id) == 0 && !qm_private(m)->deleted)
				return m;
		}
	}
	return NULL;
}

void queue_foreach(struct queue *q, void (*cb)(void *arg, const struct queue_message *m), void *arg)
{
	for (int l = 0; l < QL_COUNT; l++) {
		for (struct queue_message *m = q->lists[l].head; m != NULL; m = m->next) {
			if (!qm_private(m)->deleted)
				cb(arg, m);
		}
	}
}

int queue_delete(struct queue *q, const char *id)
{
	struct queue_message_private *m = qm_private(queue_find(q, id));

	if (m == NULL)
		return -1;
	log_info("delete queue_id=%s by operator", id);
	if (m->list == QL_ACTIVE) {
		m->deleted = true;
		return 0;
	}
	spool_remove(q->pt->spool, id);
	list_unlink(q, m);
	message_free(m);
	return 0;
}

int queue_hold(struct queue *q, const char *id)
{
	struct queue_message_private *m = qm_private(queue_find(q, id));

	if (m == NULL)
		return -1;
	spool_state_hold(q->pt->spool, id, true);
	if (m->list == QL_ACTIVE) {
		m->hold_requested = true;
	} else if (m->list != QL_HELD) {
		m->pub.held = m->pub.env->held = true;
		list_move(q, m, QL_HELD);
	}
	log_info("hold queue_id=%s by operator", id);
	return 0;
}

int queue_release(struct queue *q, const char *id)
{
	struct queue_message_private *m = qm_private(queue_find(q, id));

	if (m == NULL)
		return -1;
	spool_state_hold(q->pt->spool, id, false);
	m->hold_requested = false;
	if (m->list == QL_HELD) {
		m->pub.held = m->pub.env->held = false;
		m->pub.next_attempt = 0;
		list_move(q, m, QL_READY);
		queue_kick(q);
	}
	log_info("release queue_id=%s by operator", id);
	return 0;
}

int queue_flush(struct queue *q, const char *id)
{
	if (id != NULL) {
		struct queue_message_private *m = qm_private(queue_find(q, id));
		if (m == NULL)
			return -1;
		if (m->list == QL_DEFERRED) {
			m->pub.next_attempt = 0;
			list_move(q, m, QL_READY);
		}
	} else {
		while (q->lists[QL_DEFERRED].head != NULL) {
			struct queue_message_private *m = qm_private(q->lists[QL_DEFERRED].head);
			m->pub.next_attempt = 0;
			list_move(q, m, QL_READY);
		}
	}
	log_info("flush queue_id=%s by operator", id ? id : "all");
	queue_kick(q);
	return 0;
}

void queue_get_stats(struct queue *q, struct queue_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (int l = 0; l < QL_COUNT; l++) {
		st->messages += q->lists[l].count;
		for (struct queue_message *m = q->lists[l].head; m != NULL; m = m->next)
			st->recipients_pending += pending_rcpts(m->env);
	}
	st->held = q->lists[QL_HELD].count;
	st->active_deliveries = q->active_jobs;
	st->delivered = q->delivered;
	st->deferred = q->deferred;
	st->bounced = q->bounced;
}
