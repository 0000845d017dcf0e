/*
 * The admin socket: a local unix stream socket, one JSON object per line
 * in each direction. Access control is the file mode (0660) of the socket,
 * so only root and the gateway's group can talk to it.
 *
 *   {"cmd":"status"}                       -> counters and queue statistics
 *   {"cmd":"reload"}                       -> reload the configuration
 *   {"cmd":"queue.list"}                   -> every queued message
 *   {"cmd":"queue.show","id":"ID"}         -> one message with its header block
 *   {"cmd":"queue.delete|hold|release","id":"ID"}
 *   {"cmd":"queue.flush"[,"id":"ID"]}
 *   {"cmd":"bans.list"}                    -> every key of the rate/ban tables
 *   {"cmd":"bans.unban","key":"KEY"}       -> lift a ban, forget the key's attempts
 *   {"cmd":"quarantine.list"[,"sender","rcpt","category":"TEXT"][,"since":EPOCH]
 *    [,"state":"held|released|deleted|expired|all"][,"limit":N]}
 *                                          -> quarantined messages, newest first (default: held)
 *   {"cmd":"quarantine.show","id":"ID"}    -> one, with its header block while it is queued
 *   {"cmd":"quarantine.release|delete","id":"ID"}
 *
 * Replies: {"ok":true,"result":...} or {"ok":false,"error":"why"}.
 */
#define LOG_MODULE "admin"
#include "admin/admin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/log.h"
#include "dns/dns.h"
#include "policy/policy_engine.h"
#include "policy/ratelimit.h"
#include "queue/message_view.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "store/quarantine_store.h"

#define ADMIN_VERSION "0.1.0"
#define ADMIN_LINE_MAX (64 * 1024)          /* request line, without the newline */
#define ADMIN_DISCARD_MAX (16 * 1024 * 1024) /* of an over-long line, before giving up on its end */
#define ADMIN_HEADERS_MAX (64 * 1024)       /* header block returned by queue.show */
#define ADMIN_OUTPUT_PAUSE (1024 * 1024)    /* stop answering until the client reads */
#define ADMIN_IDLE_TIMEOUT 300              /* seconds */
#define ADMIN_BACKLOG 16

struct admin_client {
	struct admin_server *server;
	struct bufferevent *bev;
	bool eof;                          /* the client sent everything it will send */
	bool closing;                      /* close once the output is flushed */
	bool discarding;                   /* skipping the rest of an over-long line */
	size_t discarded;                  /* bytes of it skipped so far */
	struct admin_client *prev, *next;
};

struct admin_server {
	struct postern *pt;
	struct evconnlistener *listener;
	char *path;
	struct admin_client *clients;
};

typedef json_t *(*admin_handler)(struct admin_server *a, json_t *req, char *err, size_t errlen);

/* Length of a valid UTF-8 sequence at s (RFC 3629), 0 if it is not one. */
static size_t admin_utf8_len(const unsigned char *s, size_t left)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

/*
 * A JSON string from bytes that came from the network (replies, headers):
 * JSON needs valid UTF-8, so invalid bytes become '?' instead of losing
 * the whole value.
 */
static json_t *admin_json_text(const char *s, size_t len)
{
	char *copy = xmalloc(len + 1);
	json_t *j;

	for (size_t i = 0; i < len;) {
		size_t n = admin_utf8_len((const unsigned char *)s + i, len - i);

		if (n == 0) {
			copy[i++] = '?';
			continue;
		}
		memcpy(copy + i, s + i, n);
		i += n;
	}
	j = json_stringn(copy, len);
	free(copy);
	return j;
}

static json_t *admin_json_str(const char *s)
{
	return s ? admin_json_text(s, strlen(s)) : json_null();
}

static const char *admin_rcpt_state_name(enum rcpt_state st)
{
	switch (st) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_FAILED:
		return "failed";
	}
	panic("bad recipient state %d", (int)st);
}

static json_t *admin_rcpt_json(const struct envelope_rcpt *r, bool detailed)
{
	json_t *o = json_object();

	json_object_set_new(o, "addr", admin_json_str(r->addr));
	json_object_set_new(o, "state", json_string(admin_rcpt_state_name(r->state)));
	json_object_set_new(o, "last_reply", admin_json_str(r->last_reply));
	if (detailed) {
		json_object_set_new(o, "last_code", json_integer(r->last_code));
		json_object_set_new(o, "remote", admin_json_str(r->remote));
		json_object_set_new(o, "orcpt", admin_json_str(r->orcpt));
	}
	return o;
}

/* The fields of a message shared by queue.list and queue.show. */
static json_t *admin_message_json(const struct queue_message *m, bool detailed)
{
	const struct envelope *env = m->env;
	json_t *o = json_object();
	json_t *rcpts = json_array();

	for (size_t i = 0; i < env->nrcpts; i++)
		json_array_append_new(rcpts, admin_rcpt_json(&env->rcpts[i], detailed));
	json_object_set_new(o, "id", json_string(env->id));
	json_object_set_new(o, "arrival", json_integer((json_int_t)env->arrival));
	json_object_set_new(o, "sender", admin_json_str(env->sender));
	json_object_set_new(o, "size", json_integer((json_int_t)env->size));
	json_object_set_new(o, "recipients", rcpts);
	json_object_set_new(o, "attempts", json_integer(m->attempts));
	json_object_set_new(o, "next_attempt", json_integer((json_int_t)m->next_attempt));
	json_object_set_new(o, "held", json_boolean(m->held));
	json_object_set_new(o, "active", json_integer(m->active));
	json_object_set_new(o, "last_error", admin_json_str(m->last_error));
	return o;
}

/* Request ids are queue ids: [0-9A-Za-z]{1,20}; anything else never reaches the queue or spool. */
static const char *admin_request_id(json_t *req, bool required, char *err, size_t errlen)
{
	json_t *jid = json_object_get(req, "id");
	const char *id;
	size_t len;

	if (jid == NULL || json_is_null(jid)) {
		if (required)
			snprintf(err, errlen, "missing \"id\"");
		return NULL;
	}
	if (!json_is_string(jid)) {
		snprintf(err, errlen, "invalid id: must be a string");
		return NULL;
	}
	id = json_string_value(jid);
	len = strlen(id);
	if (len == 0 || len > QUEUE_ID_LEN || len != json_string_length(jid) ||
	    strspn(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != len) {
		snprintf(err, errlen, "invalid id: expected 1 to %d letters and digits", QUEUE_ID_LEN);
		return NULL;
	}
	return id;
}

static int admin_need_queue(struct admin_server *a, char *err, size_t errlen)
{
	if (a->pt->queue == NULL) {
		snprintf(err, errlen, "the queue is not running");
		return -1;
	}
	return 0;
}

static json_t *admin_cmd_status(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	const struct postern_stats *s = &a->pt->stats;
	struct queue_stats qs;
	struct dns_cache_stats ds;
	time_t now = time(NULL);
	json_t *status;

	memset(&qs, 0, sizeof(qs));
	memset(&ds, 0, sizeof(ds));
	if (a->pt->queue != NULL)
		queue_get_stats(a->pt->queue, &qs);
	if (a->pt->dns != NULL)
		dns_cache_get_stats(a->pt->dns, &ds);
	status = json_pack("{s:s, s:I, s:I, s:o, s:{s:I, s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I},"
			 " s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
			 "version", ADMIN_VERSION,
			 "pid", (json_int_t)getpid(),
			 "uptime", (json_int_t)(a->pt->started ? now - a->pt->started : 0),
			 "config", admin_json_str(a->pt->config_path),
			 "sessions",
			 "current", (json_int_t)s->sessions_current,
			 "total", (json_int_t)s->sessions_total,
			 "refused", (json_int_t)s->sessions_refused,
			 "messages",
			 "accepted", (json_int_t)s->messages_accepted,
			 "rejected", (json_int_t)s->messages_rejected,
			 "recipients",
			 "accepted", (json_int_t)s->recipients_accepted,
			 "rejected", (json_int_t)s->recipients_rejected,
			 "bytes_received", (json_int_t)s->bytes_received,
			 "auth_failures", (json_int_t)s->auth_failures,
			 "reloads", (json_int_t)s->reloads,
			 "queue",
			 "messages", (json_int_t)qs.messages,
			 "recipients_pending", (json_int_t)qs.recipients_pending,
			 "held", (json_int_t)qs.held,
			 "active_deliveries", (json_int_t)qs.active_deliveries,
			 "delivered", (json_int_t)qs.delivered,
			 "deferred", (json_int_t)qs.deferred,
			 "bounced", (json_int_t)qs.bounced);
	if (status != NULL)
		json_object_set_new(status, "dns",
				    json_pack("{s:I, s:I, s:I, s:I}",
					      "cache_hits", (json_int_t)ds.hits,
					      "cache_misses", (json_int_t)ds.misses,
					      "cache_evictions", (json_int_t)ds.evictions,
					      "cache_entries", (json_int_t)ds.entries));
	return status;
}

static json_t *admin_cmd_reload(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	if (postern_reload(a->pt, err, errlen) < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "reload failed");
		return NULL;
	}
	return json_pack("{s:o, s:I}", "config", admin_json_str(a->pt->config_path),
			 "reloads", (json_int_t)a->pt->stats.reloads);
}

static void admin_list_one(void *arg, const struct queue_message *m)
{
	json_array_append_new(arg, admin_message_json(m, false));
}

static json_t *admin_cmd_queue_list(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	json_t *list;

	if (admin_need_queue(a, err, errlen) < 0)
		return NULL;
	list = json_array();
	queue_foreach(a->pt->queue, admin_list_one, list);
	return list;
}

/*
 * The header block of a spooled message as it will be delivered, marks
 * included (up to the empty line), at most ADMIN_HEADERS_MAX bytes.
 */
static json_t *admin_message_headers(struct admin_server *a, const struct envelope *env)
{
	char *buf;
	ssize_t hlen;
	uint64_t len;
	json_t *j;
	int fd;

	if (a->pt->spool == NULL || spool_open_message(a->pt->spool, env->id, &fd, &len) < 0)
		return json_null();
	hlen = message_view_headers(env, fd, len, ADMIN_HEADERS_MAX, &buf);
	close(fd);
	if (hlen < 0)
		return json_null();
	j = admin_json_text(buf, (size_t)hlen);
	free(buf);
	return j;
}

static const char *admin_ret_name(enum dsn_ret ret)
{
	switch (ret) {
	case DSN_RET_UNSET:
		return NULL;
	case DSN_RET_FULL:
		return "FULL";
	case DSN_RET_HDRS:
		return "HDRS";
	}
	panic("bad RET value %d", (int)ret);
}

static const char *admin_body_name(enum body_type body)
{
	switch (body) {
	case BODY_7BIT:
		return "7BIT";
	case BODY_8BITMIME:
		return "8BITMIME";
	case BODY_BINARYMIME:
		return "BINARYMIME";
	}
	panic("bad BODY value %d", (int)body);
}

static json_t *admin_cmd_queue_show(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	const char *id = admin_request_id(req, true, err, errlen);
	const struct queue_message *m;
	const struct envelope *env;
	json_t *o;

	if (id == NULL || admin_need_queue(a, err, errlen) < 0)
		return NULL;
	if ((m = queue_find(a->pt->queue, id)) == NULL) {
		snprintf(err, errlen, "no such message: %s", id);
		return NULL;
	}
	env = m->env;
	o = admin_message_json(m, true);
	json_object_set_new(o, "client_addr", admin_json_str(env->client_addr));
	json_object_set_new(o, "client_helo", admin_json_str(env->client_helo));
	json_object_set_new(o, "auth_user", admin_json_str(env->auth_user));
	json_object_set_new(o, "envid", admin_json_str(env->envid));
	json_object_set_new(o, "ret", admin_json_str(admin_ret_name(env->ret)));
	json_object_set_new(o, "body", json_string(admin_body_name(env->body)));
	json_object_set_new(o, "smtputf8", json_boolean(env->smtputf8));
	json_object_set_new(o, "headers", admin_message_headers(a, env));
	return o;
}

/* delete, hold and release share their shape: a required id and a queue call. */
static json_t *admin_queue_action(struct admin_server *a, json_t *req, char *err, size_t errlen,
				  int (*action)(struct queue *, const char *))
{
	const char *id = admin_request_id(req, true, err, errlen);

	if (id == NULL || admin_need_queue(a, err, errlen) < 0)
		return NULL;
	if (action(a->pt->queue, id) < 0) {
		snprintf(err, errlen, "no such message: %s", id);
		return NULL;
	}
	return json_pack("{s:s}", "id", id);
}

static json_t *admin_cmd_queue_delete(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	json_t *r = admin_queue_action(a, req, err, errlen, queue_delete);

	if (r != NULL)
		quarantine_queue_changed(a->pt, json_string_value(json_object_get(r, "id")), false);
	return r;
}

static json_t *admin_cmd_queue_hold(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	return admin_queue_action(a, req, err, errlen, queue_hold);
}

static json_t *admin_cmd_queue_release(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	json_t *r = admin_queue_action(a, req, err, errlen, queue_release);

	if (r != NULL)
		quarantine_queue_changed(a->pt, json_string_value(json_object_get(r, "id")), true);
	return r;
}

static json_t *admin_cmd_queue_flush(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	const char *id;

	err[0] = '\0';
	id = admin_request_id(req, false, err, errlen);
	if ((id == NULL && err[0] != '\0') || admin_need_queue(a, err, errlen) < 0)
		return NULL;
	if (queue_flush(a->pt->queue, id) < 0) {
		snprintf(err, errlen, "no such message: %s", id ? id : "(all)");
		return NULL;
	}
	return json_pack("{s:o}", "id", id ? json_string(id) : json_null());
}

/* The rate/ban tables of the policy engines; NULL entries are tables not in use. */
static void admin_ban_tables(struct admin_server *a, struct ratelimit *tables[3])
{
	const struct policy_state *st = a->pt->policy_state;

	tables[0] = st ? st->conn_rate : NULL;
	tables[1] = st ? st->sender_rate : NULL;
	tables[2] = st ? st->subject_rate : NULL;
}

static int admin_ban_one(void *arg, const char *key, const struct ratelimit_state *st)
{
	json_array_append_new(arg, json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:I}",
					     "key", admin_json_str(key), "kind", st->kind,
					     "count", (json_int_t)st->count, "limit", (json_int_t)st->limit,
					     "window", (json_int_t)st->window,
					     "ban_until", (json_int_t)st->ban_until,
					     "ban_left", (json_int_t)st->ban_left));
	return 0;
}

static json_t *admin_cmd_bans_list(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	struct ratelimit *tables[3];
	json_t *list = json_array();

	admin_ban_tables(a, tables);
	for (size_t i = 0; i < 3; i++) {
		if (tables[i] != NULL)
			ratelimit_foreach(tables[i], admin_ban_one, list);
	}
	return list;
}

static json_t *admin_cmd_bans_unban(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	const char *key = json_string_value(json_object_get(req, "key"));
	struct ratelimit *tables[3];
	bool known = false;

	if (key == NULL || key[0] == '\0') {
		snprintf(err, errlen, "missing \"key\" (a string)");
		return NULL;
	}
	admin_ban_tables(a, tables);
	for (size_t i = 0; i < 3; i++) {
		if (tables[i] != NULL && ratelimit_unban(tables[i], key))
			known = true;
	}
	if (!known) {
		snprintf(err, errlen, "no such key: %.200s", key);
		return NULL;
	}
	log_info("unban key=%s (admin)", key);
	return json_pack("{s:o}", "key", admin_json_str(key));
}

/* A quarantine entry; queued says whether the message is still in the queue. */
static json_t *admin_quarantine_json(struct admin_server *a, const struct quarantine_entry *e)
{
	json_t *rcpts = json_array();
	const char *p = e->recipients;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		json_array_append_new(rcpts, admin_json_text(p, len));
		p = nl ? nl + 1 : NULL;
	}
	return json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:i, s:I, s:s, s:I, s:b}",
			 "id", e->id, "arrival", (json_int_t)e->arrival,
			 "sender", admin_json_str(e->sender), "recipients", rcpts,
			 "subject", admin_json_str(e->subject), "category", admin_json_str(e->category),
			 "reasons", admin_json_str(e->reasons), "client_addr", admin_json_str(e->client_addr),
			 "score", e->score, "scl", e->scl, "size", (json_int_t)e->size,
			 "state", quarantine_state_name(e->state), "changed", (json_int_t)e->changed,
			 "queued", a->pt->queue != NULL && queue_find(a->pt->queue, e->id) != NULL);
}

static struct quarantine_store *admin_need_quarantine(struct admin_server *a, char *err, size_t errlen)
{
	if (a->pt->quarantine == NULL) {
		snprintf(err, errlen, "the quarantine is not running");
		return NULL;
	}
	return quarantine_store(a->pt->quarantine);
}

/* An optional string member of the request; -1 when it is there but not a string. */
static int admin_optional_string(json_t *req, const char *key, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(req, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "invalid \"%s\": must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* The list filter from the request: text filters, since, state (default held) and limit. */
static int admin_quarantine_filter(json_t *req, struct quarantine_filter *f, char *err, size_t errlen)
{
	const char *state;
	json_t *since = json_object_get(req, "since"), *limit = json_object_get(req, "limit");

	memset(f, 0, sizeof(*f));
	f->state = QUARANTINE_HELD;
	if (admin_optional_string(req, "sender", &f->sender, err, errlen) < 0 ||
	    admin_optional_string(req, "rcpt", &f->rcpt, err, errlen) < 0 ||
	    admin_optional_string(req, "category", &f->category, err, errlen) < 0 ||
	    admin_optional_string(req, "state", &state, err, errlen) < 0)
		return -1;
	if (state != NULL && strcmp(state, "all") == 0) {
		f->state = -1;
	} else if (state != NULL && (f->state = quarantine_state_parse(state)) < 0) {
		snprintf(err, errlen, "invalid state: expected held, released, deleted, expired or all");
		return -1;
	}
	if (since != NULL && !json_is_null(since)) {
		if (!json_is_integer(since) || json_integer_value(since) < 0) {
			snprintf(err, errlen, "invalid \"since\": must be a time in seconds since the epoch");
			return -1;
		}
		f->since = (time_t)json_integer_value(since);
	}
	if (limit != NULL && !json_is_null(limit)) {
		if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
		    json_integer_value(limit) > QUARANTINE_LIST_MAX) {
			snprintf(err, errlen, "invalid \"limit\": must be 1 to %d", QUARANTINE_LIST_MAX);
			return -1;
		}
		f->limit = (size_t)json_integer_value(limit);
	}
	return 0;
}

static json_t *admin_cmd_quarantine_list(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	struct quarantine_store *store = admin_need_quarantine(a, err, errlen);
	struct quarantine_filter f;
	struct quarantine_entry *v;
	json_t *list;
	size_t n;

	if (store == NULL || admin_quarantine_filter(req, &f, err, errlen) < 0)
		return NULL;
	if (quarantine_store_list(store, &f, &v, &n) < 0) {
		snprintf(err, errlen, "quarantine database error");
		return NULL;
	}
	list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, admin_quarantine_json(a, &v[i]));
	quarantine_entries_free(v, n);
	return list;
}

static json_t *admin_cmd_quarantine_show(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	const char *id = admin_request_id(req, true, err, errlen);
	struct quarantine_store *store = id ? admin_need_quarantine(a, err, errlen) : NULL;
	const struct queue_message *m;
	struct quarantine_entry e;
	json_t *o;
	int found;

	if (store == NULL)
		return NULL;
	found = quarantine_store_get(store, id, &e);
	if (found <= 0) {
		snprintf(err, errlen, found < 0 ? "quarantine database error" : "not in the quarantine: %s", id);
		return NULL;
	}
	o = admin_quarantine_json(a, &e);
	m = a->pt->queue != NULL ? queue_find(a->pt->queue, id) : NULL;
	json_object_set_new(o, "headers", m != NULL ? admin_message_headers(a, m->env) : json_null());
	quarantine_entry_clear(&e);
	return o;
}

/* release and delete: a required id and the quarantine's own checks. */
static json_t *admin_quarantine_action(struct admin_server *a, json_t *req, char *err, size_t errlen,
				       int (*action)(struct postern *, const char *, char *, size_t),
				       const char *done)
{
	const char *id = admin_request_id(req, true, err, errlen);

	if (id == NULL || action(a->pt, id, err, errlen) < 0)
		return NULL;
	return json_pack("{s:s, s:s}", "id", id, "state", done);
}

static json_t *admin_cmd_quarantine_release(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	return admin_quarantine_action(a, req, err, errlen, quarantine_release, "released");
}

static json_t *admin_cmd_quarantine_delete(struct admin_server *a, json_t *req, char *err, size_t errlen)
{
	return admin_quarantine_action(a, req, err, errlen, quarantine_delete, "deleted");
}

static const struct {
	const char *name;
	admin_handler run;
} admin_commands[] = {
	{ "status", admin_cmd_status },
	{ "reload", admin_cmd_reload },
	{ "queue.list", admin_cmd_queue_list },
	{ "queue.show", admin_cmd_queue_show },
	{ "queue.delete", admin_cmd_queue_delete },
	{ "queue.hold", admin_cmd_queue_hold },
	{ "queue.release", admin_cmd_queue_release },
	{ "queue.flush", admin_cmd_queue_flush },
	{ "bans.list", admin_cmd_bans_list },
	{ "bans.unban", admin_cmd_bans_unban },
	{ "quarantine.list", admin_cmd_quarantine_list },
	{ "quarantine.show", admin_cmd_quarantine_show },
	{ "quarantine.release", admin_cmd_quarantine_release },
	{ "quarantine.delete", admin_cmd_quarantine_delete },
};

/* Parse one request and run its command; NULL result with err set on failure. */
static json_t *admin_dispatch(struct admin_server *a, const char *line, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *cmd, *result = NULL;
	const char *name;

	if (req == NULL) {
		snprintf(err, errlen, "malformed JSON: %s", jerr.text);
		return NULL;
	}
	cmd = json_object_get(req, "cmd");
	if (!json_is_object(req)) {
		snprintf(err, errlen, "the request must be a JSON object");
	} else if (!json_is_string(cmd)) {
		snprintf(err, errlen, "missing \"cmd\" (a string)");
	} else {
		name = json_string_value(cmd);
		for (size_t i = 0; i < sizeof(admin_commands) / sizeof(admin_commands[0]); i++) {
			if (strcmp(name, admin_commands[i].name) == 0) {
				result = admin_commands[i].run(a, req, err, errlen);
				if (result == NULL && err[0] == '\0')
					snprintf(err, errlen, "%s failed", name);
				json_decref(req);
				return result;
			}
		}
		snprintf(err, errlen, "unknown command: %.64s", name);
	}
	json_decref(req);
	return NULL;
}

/* Queue one reply line; the reply object is consumed. */
static void admin_send(struct admin_client *c, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);

	json_decref(reply);
	if (text == NULL)
		text = xstrdup("{\"ok\":false,\"error\":\"cannot encode the reply\"}");
	evbuffer_add(bufferevent_get_output(c->bev), text, strlen(text));
	evbuffer_add(bufferevent_get_output(c->bev), "\n", 1);
	free(text);
}

static void admin_send_error(struct admin_client *c, const char *error)
{
	admin_send(c, json_pack("{s:b, s:o}", "ok", 0, "error", admin_json_str(error)));
}

static void admin_handle_line(struct admin_client *c, const char *line, size_t len)
{
	char err[1024] = "";
	json_t *result = admin_dispatch(c->server, line, len, err, sizeof(err));

	if (result == NULL) {
		log_debug("request failed: %s", err);
		admin_send_error(c, err);
		return;
	}
	admin_send(c, json_pack("{s:b, s:o}", "ok", 1, "result", result));
}

static void admin_client_free(struct admin_client *c)
{
	struct admin_server *a = c->server;

	if (c->prev)
		c->prev->next = c->next;
	else
		a->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	free(c);
}

/* Stop reading, let the output drain, then close (see admin_on_write). */
static void admin_client_finish(struct admin_client *c)
{
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		admin_client_free(c);
}

/*
 * Skip the rest of an over-long request line. The reply waits until its
 * end (or the client's EOF): a client still writing the line would get
 * EPIPE from a socket closed under it and never read why. Returns -1 once
 * the client has been told and must be closed, 0 while more is to come.
 */
static int admin_discard_line(struct admin_client *c, bool at_eof)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	size_t skip = eol.pos >= 0 ? (size_t)eol.pos + eol_len : evbuffer_get_length(in);

	evbuffer_drain(in, skip);
	c->discarded += skip;
	if (eol.pos < 0 && !at_eof && c->discarded < ADMIN_DISCARD_MAX)
		return 0;
	log_debug("request line of %zu bytes refused", c->discarded);
	admin_send_error(c, "request too long");
	return -1;
}

/*
 * Answer every complete request line, one at a time, pausing while the
 * client leaves a large reply unread. Returns -1 when the client was
 * told its line is too long and must be closed.
 */
static int admin_process_input(struct admin_client *c, bool at_eof)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (evbuffer_get_length(out) < ADMIN_OUTPUT_PAUSE) {
		size_t eol_len = 0, avail = evbuffer_get_length(in);
		struct evbuffer_ptr eol;
		size_t line_len;
		char *line;

		if (c->discarding)
			return admin_discard_line(c, at_eof);
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		line_len = eol.pos >= 0 ? (size_t)eol.pos : avail;
		if (line_len > ADMIN_LINE_MAX) {
			c->discarding = true;
			continue;
		}
		if (eol.pos < 0 && (!at_eof || avail == 0))
			return 0;
		line = xmalloc(line_len + 1);
		evbuffer_remove(in, line, line_len);
		line[line_len] = '\0';
		evbuffer_drain(in, eol_len);
		if (line_len > 0)
			admin_handle_line(c, line, line_len);
		else
			admin_send_error(c, "empty request");
		free(line);
	}
	return 0;
}

/* Answer what can be answered now; close once a half-closed client has its last reply. */
static void admin_client_step(struct admin_client *c)
{
	if (admin_process_input(c, c->eof) < 0 ||
	    (c->eof && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0))
		admin_client_finish(c);
}

static void admin_on_read(struct bufferevent *bev, void *arg)
{
	admin_client_step(arg);
}

/* Output drained: close a finishing client, or answer requests that waited for room. */
static void admin_on_write(struct bufferevent *bev, void *arg)
{
	struct admin_client *c = arg;

	if (c->closing)
		admin_client_free(c);
	else
		admin_client_step(c);
}

static void admin_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct admin_client *c = arg;

	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && !c->closing) {
		/* a client may half-close after its request: still answer it */
		c->eof = true;
		admin_client_step(c);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_debug("client error: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	admin_client_free(c);
}

static void admin_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			    int salen, void *arg)
{
	struct admin_server *a = arg;
	struct admin_client *c;
	struct timeval idle = { ADMIN_IDLE_TIMEOUT, 0 };
	struct bufferevent *bev = bufferevent_socket_new(a->pt->base, fd, BEV_OPT_CLOSE_ON_FREE);

	if (bev == NULL) {
		log_warn("cannot set up an admin connection");
		evutil_closesocket(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->server = a;
	c->bev = bev;
	c->next = a->clients;
	if (a->clients)
		a->clients->prev = c;
	a->clients = c;
	/* a full line plus its CRLF fits; more than that without a newline is refused */
	bufferevent_setwatermark(bev, EV_READ, 0, ADMIN_LINE_MAX + 2);
	bufferevent_set_timeouts(bev, &idle, &idle);
	bufferevent_setcb(bev, admin_on_read, admin_on_write, admin_on_event, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* mkdir -p for the socket's directory (mode 0755 for what is created). */
static int admin_make_parent(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int rc = 0;

	if (slash != NULL && slash != dir) {
		*slash = '\0';
		for (char *p = dir + 1; rc == 0; p++) {
			bool last = *p == '\0';

			if (*p != '/' && !last)
				continue;
			*p = '\0';
			if (mkdir(dir, 0755) < 0 && errno != EEXIST)
				rc = -1;
			if (last)
				break;
			*p = '/';
		}
	}
	free(dir);
	return rc;
}

/*
 * Remove a socket left by a gateway that died, but never a live one (a
 * second gateway must not steal the first one's socket) nor a file that
 * is not a socket.
 */
static int admin_remove_stale(const struct sockaddr_un *sun, char *err, size_t errlen)
{
	struct stat st;
	int fd, live;

	if (lstat(sun->sun_path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", sun->sun_path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", sun->sun_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	if (live) {
		snprintf(err, errlen, "%s: another gateway is listening on it", sun->sun_path);
		return -1;
	}
	if (unlink(sun->sun_path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove stale %s: %s", sun->sun_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Bind and set the mode before listen(), so no client can connect while the socket is still open to all. */
static int admin_bind(const struct sockaddr_un *sun, char *err, size_t errlen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0) {
		snprintf(err, errlen, "bind %s: %s", sun->sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(sun->sun_path, 0660) < 0) {
		snprintf(err, errlen, "chmod %s: %s", sun->sun_path, strerror(errno));
		unlink(sun->sun_path);
		close(fd);
		return -1;
	}
	return fd;
}

struct admin_server *admin_server_new(struct postern *pt, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct admin_server *a;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "admin socket path %s", path && path[0] ? "is too long" : "is empty");
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (admin_make_parent(path) < 0) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(errno));
		return NULL;
	}
	if (admin_remove_stale(&sun, err, errlen) < 0 || (fd = admin_bind(&sun, err, errlen)) < 0)
		return NULL;
	a = xcalloc(1, sizeof(*a));
	a->pt = pt;
	a->path = xstrdup(path);
	a->listener = evconnlistener_new(pt->base, admin_on_accept, a,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, ADMIN_BACKLOG, fd);
	if (a->listener == NULL) {
		snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		free(a->path);
		free(a);
		return NULL;
	}
	log_info("admin socket listening path=%s", path);
	return a;
}

void admin_server_free(struct admin_server *a)
{
	if (a == NULL)
		return;
	while (a->clients != NULL)
		admin_client_free(a->clients);
	evconnlistener_free(a->listener);
	unlink(a->path);
	free(a->path);
	free(a);
}
