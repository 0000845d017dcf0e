/*
 * The quarantine: held messages in the queue plus their metadata in the
 * quarantine store (see quarantine.h).
 *
 * The queue is the truth about the message (held, or gone), the store the
 * truth about the decision. An operator action needs both to say "held":
 * a message released or deleted once (or expired) cannot be acted on
 * again, and one that `postern queue` already delivered or deleted is
 * refused rather than recorded as something that did not happen.
 */
#include "queue/quarantine.h"

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
#include "core/strbuf.h"
#include "queue/message_view.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "store/quarantine_store.h"

#define LOG_MODULE "quarantine"
#include "core/log.h"

#define QUARANTINE_DB_NAME "quarantine.db"
#define QUARANTINE_HEADERS_MAX (64 * 1024)   /* read to find the Subject */
#define QUARANTINE_EXPIRE_TICK 60            /* seconds between expiry runs */
#define QUARANTINE_EXPIRE_BATCH 500          /* messages per run; the next run takes the rest */

struct quarantine {
	struct postern *pt;
	struct quarantine_store *store;
	struct event *expiry;
};

/* Once a minute, or twice per expire period when that is shorter, so a short expire is honoured. */
static void quarantine_arm_expiry(struct quarantine *q)
{
	unsigned expire = q->pt->cfg->quarantine_expire;
	unsigned tick = expire / 2;

	if (tick > QUARANTINE_EXPIRE_TICK)
		tick = QUARANTINE_EXPIRE_TICK;
	if (tick == 0)
		tick = 1;
	event_add(q->expiry, &(struct timeval){ tick, 0 });
}

static void quarantine_expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct quarantine *q = arg;

	quarantine_expire(q->pt);
	quarantine_arm_expiry(q);
}

struct quarantine *quarantine_new(struct postern *pt, char *err, size_t errlen)
{
	struct quarantine *q;
	struct quarantine_store *store;
	char path[4096];

	if (pt->cfg->data_dir == NULL) {
		snprintf(err, errlen, "the quarantine needs [server] data_dir for its database");
		return NULL;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", pt->cfg->data_dir, QUARANTINE_DB_NAME) >= sizeof(path)) {
		snprintf(err, errlen, "quarantine database path too long");
		return NULL;
	}
	store = quarantine_store_open(path, err, errlen);
	if (store == NULL)
		return NULL;
	q = xcalloc(1, sizeof(*q));
	q->pt = pt;
	q->store = store;
	q->expiry = evtimer_new(pt->base, quarantine_expiry_cb, q);
	quarantine_arm_expiry(q);
	return q;
}

void quarantine_free(struct quarantine *q)
{
	if (q == NULL)
		return;
	event_free(q->expiry);
	quarantine_store_close(q->store);
	free(q);
}

struct quarantine_store *quarantine_store(struct quarantine *q)
{
	return q->store;
}

/* The Subject field of a header block, unfolded, at most QUARANTINE_TEXT_MAX bytes; "" without one. */
static char *quarantine_subject(const char *h, size_t len)
{
	const char *p = h, *end = h + len;
	struct strbuf out;

	strbuf_init(&out, QUARANTINE_TEXT_MAX);
	while (p < end) {
		if ((size_t)(end - p) >= 8 && strncasecmp(p, "Subject:", 8) == 0) {
			for (p += 8; p < end && (*p == ' ' || *p == '\t'); p++)
				;
			for (; p < end; p++) {
				if (*p == '\r' || *p == '\n') {
					const char *next = memchr(p, '\n', (size_t)(end - p));

					if (next == NULL || next + 1 >= end || (next[1] != ' ' && next[1] != '\t'))
						break;
					p = next;
					continue;
				}
				if (strbuf_append(&out, p, 1) < 0)
					break;
			}
			break;
		}
		p = memchr(p, '\n', (size_t)(end - p));
		if (p == NULL)
			break;
		p++;
	}
	return strbuf_detach(&out, NULL);
}

/* The message's Subject as the spool has it; "" when it cannot be read. */
static char *quarantine_read_subject(struct postern *pt, const struct envelope *env)
{
	uint64_t len;
	ssize_t hlen;
	char *head, *subject;
	int fd;

	if (spool_open_message(pt->spool, env->id, &fd, &len) < 0) {
		log_warn("queue_id=%s: cannot read the message for its subject: %s", env->id, strerror(errno));
		return xstrdup("");
	}
	hlen = message_view_headers(env, fd, len, QUARANTINE_HEADERS_MAX, &head);
	close(fd);
	if (hlen < 0)
		return xstrdup("");
	subject = quarantine_subject(head, (size_t)hlen);
	free(head);
	return subject;
}

/* The recipients one per line, bounded by what the store keeps. */
static char *quarantine_recipients(const struct envelope *env)
{
	struct strbuf out;

	strbuf_init(&out, QUARANTINE_RCPTS_MAX);
	for (size_t i = 0; i < env->nrcpts; i++) {
		if ((i > 0 && strbuf_append(&out, "\n", 1) < 0) ||
		    strbuf_append(&out, env->rcpts[i].addr, strlen(env->rcpts[i].addr)) < 0)
			break;
	}
	return strbuf_detach(&out, NULL);
}

int quarantine_record(struct postern *pt, const struct envelope *env, const char *category,
		      const char *reasons, double score, int scl)
{
	struct quarantine_entry e;
	int rc;

	if (pt->quarantine == NULL) {
		log_warn("queue_id=%s held, but the quarantine database is not open", env->id);
		return -1;
	}
	memset(&e, 0, sizeof(e));
	memcpy(e.id, env->id, sizeof(e.id));
	e.arrival = env->arrival;
	e.sender = env->sender;
	e.recipients = quarantine_recipients(env);
	e.subject = quarantine_read_subject(pt, env);
	e.category = (char *)category;
	e.reasons = (char *)reasons;
	e.client_addr = env->client_addr;
	e.score = score;
	e.scl = scl;
	e.size = env->size;
	rc = quarantine_store_add(pt->quarantine->store, &e);
	if (rc == 0)
		log_info("record queue_id=%s from=<%s> rcpts=%zu category=%s score=%.1f reasons=\"%s\"",
			 env->id, env->sender, env->nrcpts, category, score, reasons);
	else
		log_warn("queue_id=%s held, but its quarantine record failed", env->id);
	free(e.recipients);
	free(e.subject);
	return rc;
}

/* The store row of a message the operator may still act on: held in the store and in the queue. */
static int quarantine_check_held(struct postern *pt, const char *id, char *err, size_t errlen)
{
	struct quarantine_entry e;
	int found;

	if (pt->quarantine == NULL || pt->queue == NULL) {
		snprintf(err, errlen, "the quarantine is not running");
		return -1;
	}
	found = quarantine_store_get(pt->quarantine->store, id, &e);
	if (found <= 0) {
		snprintf(err, errlen, found < 0 ? "quarantine database error" : "not in the quarantine: %s", id);
		return -1;
	}
	if (e.state != QUARANTINE_HELD) {
		snprintf(err, errlen, "%s was already %s", id, quarantine_state_name(e.state));
		quarantine_entry_clear(&e);
		return -1;
	}
	quarantine_entry_clear(&e);
	if (queue_find(pt->queue, id) == NULL) {
		snprintf(err, errlen, "%s is no longer in the queue (delivered or deleted with `postern queue`)", id);
		return -1;
	}
	return 0;
}

/* Record the final state; the queue already acted, so a failure here only loses history. */
static void quarantine_finish(struct postern *pt, const char *id, enum quarantine_state state)
{
	if (quarantine_store_finish(pt->quarantine->store, id, state) != 1)
		log_warn("queue_id=%s %s, but the quarantine database could not record it", id,
			 quarantine_state_name(state));
}

int quarantine_release(struct postern *pt, const char *id, char *err, size_t errlen)
{
	if (quarantine_check_held(pt, id, err, errlen) < 0)
		return -1;
	if (queue_release(pt->queue, id) < 0) {
		snprintf(err, errlen, "%s is no longer in the queue", id);
		return -1;
	}
	quarantine_finish(pt, id, QUARANTINE_RELEASED);
	log_info("release queue_id=%s by operator", id);
	return 0;
}

int quarantine_delete(struct postern *pt, const char *id, char *err, size_t errlen)
{
	if (quarantine_check_held(pt, id, err, errlen) < 0)
		return -1;
	if (queue_delete(pt->queue, id) < 0) {
		snprintf(err, errlen, "%s is no longer in the queue", id);
		return -1;
	}
	quarantine_finish(pt, id, QUARANTINE_DELETED);
	log_info("delete queue_id=%s by operator", id);
	return 0;
}

void quarantine_queue_changed(struct postern *pt, const char *id, bool released)
{
	enum quarantine_state st = released ? QUARANTINE_RELEASED : QUARANTINE_DELETED;

	if (pt->quarantine != NULL && quarantine_store_finish(pt->quarantine->store, id, st) == 1)
		log_info("%s queue_id=%s with `postern queue`", quarantine_state_name(st), id);
}

/*
 * Expire one held row. Only a message the queue still holds is deleted:
 * one that `postern queue release` let go is on its way to its
 * recipients and is recorded as released, one that already left the
 * queue only has its row closed.
 */
static void quarantine_expire_one(struct postern *pt, const struct quarantine_entry *e, time_t now)
{
	const struct queue_message *m = queue_find(pt->queue, e->id);

	if (m != NULL && !m->held) {
		quarantine_finish(pt, e->id, QUARANTINE_RELEASED);
		log_info("queue_id=%s was released with `postern queue release`: not expired", e->id);
		return;
	}
	if (m != NULL)
		queue_delete(pt->queue, e->id);
	quarantine_finish(pt, e->id, QUARANTINE_EXPIRED);
	log_info("expire queue_id=%s age=%llds%s", e->id, (long long)(now - e->arrival),
		 m != NULL ? "" : " (no longer in the queue)");
}

int quarantine_expire(struct postern *pt)
{
	struct quarantine_store *store;
	struct quarantine_entry *v;
	time_t now;
	size_t n;

	if (pt->quarantine == NULL || pt->queue == NULL)
		return 0;
	store = pt->quarantine->store;
	now = quarantine_store_now(store);
	if (quarantine_store_due(store, pt->cfg->quarantine_expire, QUARANTINE_EXPIRE_BATCH, &v, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		quarantine_expire_one(pt, &v[i], now);
	quarantine_entries_free(v, n);
	return (int)n;
}
