/*
 * Outbound SMTP delivery on libevent bufferevents.
 *
 * A job is one delivery request: it finds the hosts (configured relay
 * hosts, else the MX records of the domain), resolves them one at a time,
 * and walks their addresses until one server gives a final answer for the
 * transaction. A conn is one SMTP session; it belongs to a job while a
 * transaction runs on it and to the idle cache in between, so the next job
 * for the same destination skips connect, greeting, EHLO and STARTTLS.
 *
 * Host-level failures (no connection, timeouts, 421, a malformed reply,
 * an unusable greeting or EHLO) move on to the next address; replies to
 * MAIL, RCPT and DATA are final answers for this attempt.
 */
#include "queue/delivery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/strbuf.h"
#include "dns/dns.h"
#include "queue/message_view.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_parse.h"
#include "smtp/tls.h"

#define LOG_MODULE "delivery"
#include "core/log.h"

#define DELIVERY_IDLE_SECONDS 10        /* a cached connection waits this long for reuse */
#define DELIVERY_QUIT_SECONDS 5         /* for the reply to QUIT */
#define DELIVERY_MESSAGES_PER_CONN 100
#define DELIVERY_OUT_HIGH (256 * 1024)  /* stop reading the spool above this much queued output */
#define DELIVERY_OUT_LOW (64 * 1024)    /* and resume below this */
#define DELIVERY_CHUNK (16 * 1024)      /* message bytes per read */
#define DELIVERY_COMMAND_MAX 2048       /* MAIL with every parameter fits easily */
#define DELIVERY_LOG_MAX 2048

enum conn_state {
	CONN_CONNECTING,
	CONN_GREETING,
	CONN_EHLO,
	CONN_HELO,
	CONN_STARTTLS,
	CONN_TLS_HANDSHAKE,
	CONN_TXN,           /* replies to MAIL, RCPT, DATA */
	CONN_BODY,          /* streaming the message */
	CONN_DOT,           /* waiting for the reply to the end of data */
	CONN_RSET,
	CONN_IDLE,
	CONN_QUIT,
};

struct delivery_job;

struct delivery_conn {
	struct delivery_smtp *d;
	struct delivery_job *job;       /* NULL while idle or quitting */
	struct bufferevent *bev;
	enum conn_state state;
	char *dest;                     /* reuse key: same key, same servers */
	char *host;                     /* the name we connected to (SNI, logs) */
	char remote[300];               /* "host[addr]:port" */
	struct smtp_reply reply;        /* the reply being read */
	struct smtp_ext ext;
	bool tls;
	bool broken;                    /* the session state is unknown: never reuse */
	bool dead;                      /* freed while a callback still runs on it */
	unsigned busy;                  /* callbacks running on it */
	unsigned messages;
	struct delivery_conn *next;
	struct delivery_conn *prev;
};

struct delivery_host {
	char *name;
	uint16_t port;
};

struct delivery_job {
	struct delivery_smtp *d;
	struct config *cfg;             /* referenced for the job's lifetime */
	struct delivery_request req;    /* a copy; the arrays are the caller's */
	delivery_done_cb cb;
	void *arg;
	struct delivery_rcpt_result *results;
	char *dest;
	struct timeval started;
	struct event *finish_ev;        /* finishing from the loop, not from start */

	/* routing: host names in order, and the addresses of the current one */
	struct delivery_host *hosts;
	size_t nhosts, host_i;
	struct dns_addr *addrs;
	size_t naddrs, addr_i;
	bool plain_retry;               /* the TLS handshake with this address failed */
	bool reused;                    /* running on a cached connection */
	struct dns_request *dns;
	struct delivery_conn *conn;

	/* the last host-level failure, reported when every address failed */
	int last_code;
	char last_reply[512];
	char last_remote[300];

	/* the transaction */
	bool *rcpt_ok;                  /* RCPT got 2xx */
	size_t step;                    /* replies read: MAIL, then RCPTs, then DATA */
	size_t accepted;
	bool mail_failed;
	bool discard;                   /* 354 without a valid recipient: send "." only */
	bool bdat;                      /* BINARYMIME: BDAT LAST instead of DATA */
	bool txn_over;                  /* results are final */
	struct smtp_dotstuff stuff;
	uint64_t body_off;
	uint64_t body_size;             /* the message as edited (queue/message_view.h) */

	struct delivery_job *next;
	struct delivery_job *prev;
};

struct delivery_smtp {
	struct postern *pt;
	struct delivery_conn *conns;
	struct delivery_job *jobs;
};

static void job_connect_next(struct delivery_job *job);
static void job_next_host(struct delivery_job *job);
static void job_finish(struct delivery_job *job);
static void job_route(struct delivery_job *job);
static void txn_begin(struct delivery_conn *conn);
static void conn_quit(struct delivery_conn *conn);
static void conn_on_read(struct bufferevent *bev, void *arg);
static void job_finish_later(struct delivery_job *job);

/* ---------------------------------------------------------------- conns */

static struct delivery_conn *conn_new(struct delivery_smtp *d, const char *dest, const char *host)
{
	struct delivery_conn *conn = xcalloc(1, sizeof(*conn));

	conn->d = d;
	conn->dest = xstrdup(dest);
	conn->host = xstrdup(host);
	conn->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = conn;
	d->conns = conn;
	return conn;
}

static void conn_destroy(struct delivery_conn *conn)
{
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	free(conn->dest);
	free(conn->host);
	free(conn);
}

/*
 * Unlink at once; a conn whose callback is still on the stack is destroyed
 * when that callback leaves (conn_leave), so the callback can tell.
 */
static void conn_free(struct delivery_conn *conn)
{
	struct delivery_smtp *d = conn->d;

	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		d->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	if (conn->job != NULL)
		conn->job->conn = NULL;
	conn->job = NULL;
	if (conn->busy > 0) {
		conn->dead = true;
		return;
	}
	conn_destroy(conn);
}

static void conn_enter(struct delivery_conn *conn)
{
	conn->busy++;
}

/* False when the conn is gone. */
static bool conn_leave(struct delivery_conn *conn)
{
	conn->busy--;
	if (!conn->dead)
		return true;
	if (conn->busy == 0)
		conn_destroy(conn);
	return false;
}

/* seconds == 0: no timeout in that direction */
static void conn_timeouts(struct delivery_conn *conn, unsigned rsecs, unsigned wsecs)
{
	struct timeval r = { (time_t)rsecs, 0 }, w = { (time_t)wsecs, 0 };

	bufferevent_set_timeouts(conn->bev, rsecs ? &r : NULL, wsecs ? &w : NULL);
}

static void conn_reply_timeouts(struct delivery_conn *conn)
{
	unsigned t = conn->job->cfg->timeout_reply;

	conn_timeouts(conn, t, t);
}

static void conn_send(struct delivery_conn *conn, const char *line)
{
	log_debug("send remote=%s \"%.*s\"", conn->remote, (int)strcspn(line, "\r"), line);
	bufferevent_write(conn->bev, line, strlen(line));
}

static void conn_send_sb(struct delivery_conn *conn, const struct strbuf *sb)
{
	log_debug("send remote=%s %zu bytes", conn->remote, sb->len);
	bufferevent_write(conn->bev, sb->data, sb->len);
}

static void conn_detach(struct delivery_conn *conn)
{
	if (conn->job != NULL)
		conn->job->conn = NULL;
	conn->job = NULL;
}

static unsigned conn_idle_count(struct delivery_smtp *d, const char *dest)
{
	unsigned n = 0;

	for (struct delivery_conn *c = d->conns; c != NULL; c = c->next)
		if (c->state == CONN_IDLE && strcmp(c->dest, dest) == 0)
			n++;
	return n;
}

/* Keep a healthy session for the next job of the same destination, within the limits. */
static void conn_make_idle(struct delivery_conn *conn, const struct config *cfg)
{
	conn_detach(conn);
	if (conn->broken || conn->messages >= DELIVERY_MESSAGES_PER_CONN ||
	    conn_idle_count(conn->d, conn->dest) >= cfg->max_per_destination) {
		conn_quit(conn);
		return;
	}
	conn->state = CONN_IDLE;
	conn_timeouts(conn, DELIVERY_IDLE_SECONDS, 0);
	bufferevent_enable(conn->bev, EV_READ);
}

static void conn_quit(struct delivery_conn *conn)
{
	conn_detach(conn);
	conn->state = CONN_QUIT;
	conn_timeouts(conn, DELIVERY_QUIT_SECONDS, DELIVERY_QUIT_SECONDS);
	bufferevent_enable(conn->bev, EV_READ);
	conn_send(conn, "QUIT\r\n");
}

/* EHLO or HELO with our name; EHLO forgets what an earlier one offered. */
static void conn_send_helo(struct delivery_conn *conn, const char *verb, enum conn_state next)
{
	const struct config *cfg = conn->job->cfg;
	const char *name = cfg->helo_name ? cfg->helo_name : cfg->hostname;
	char line[300];

	snprintf(line, sizeof(line), "%s %s\r\n", verb, name ? name : "localhost");
	memset(&conn->ext, 0, sizeof(conn->ext));
	conn->state = next;
	conn_send(conn, line);
}

static struct delivery_conn *conn_take_idle(struct delivery_smtp *d, const char *dest)
{
	for (struct delivery_conn *c = d->conns; c != NULL; c = c->next)
		if (c->state == CONN_IDLE && strcmp(c->dest, dest) == 0)
			return c;
	return NULL;
}

/* ----------------------------------------------------------------- jobs */

static void result_set(struct delivery_rcpt_result *res, enum delivery_status st, int code,
		       const char *reply, const char *remote)
{
	res->status = st;
	res->code = code;
	snprintf(res->reply, sizeof(res->reply), "%s", reply);
	snprintf(res->remote, sizeof(res->remote), "%s", remote);
}

static enum delivery_status status_of_code(int code)
{
	if (code >= 200 && code < 300)
		return DELIVERY_OK;
	if (code >= 500)
		return DELIVERY_PERMFAIL;
	return DELIVERY_TEMPFAIL;
}

/* A server reply becomes recipient i's result. */
static void job_result_reply(struct delivery_job *job, size_t i, const struct smtp_reply *r,
			     const char *remote)
{
	result_set(&job->results[i], status_of_code(r->code), r->code, r->text, remote);
}

static void job_result_all(struct delivery_job *job, enum delivery_status st, int code,
			   const char *reply, const char *remote)
{
	for (size_t i = 0; i < job->req.nrcpts; i++)
		result_set(&job->results[i], st, code, reply, remote);
}

/* A host-level failure: remembered, and reported if no other address does better. */
static void job_note_failure(struct delivery_job *job, int code, const char *reply,
			     const char *remote)
{
	job->last_code = code;
	snprintf(job->last_reply, sizeof(job->last_reply), "%s", reply);
	snprintf(job->last_remote, sizeof(job->last_remote), "%s", remote);
	log_info("queue_id=%s relay=%s failed: %s", job->req.env->id, remote[0] ? remote : "none",
		 reply);
}

static void job_all_failed(struct delivery_job *job)
{
	if (job->last_reply[0] == '\0')
		snprintf(job->last_reply, sizeof(job->last_reply), "4.4.4 no usable host for %s",
			 job->req.domain);
	job_result_all(job, DELIVERY_TEMPFAIL, job->last_code, job->last_reply, job->last_remote);
	job_finish(job);
}

static char *dest_key(const struct delivery_request *req, unsigned mx_port)
{
	struct strbuf sb;

	strbuf_init(&sb, 64 * 1024);
	if (req->hosts == NULL) {
		strbuf_appendf(&sb, "mx:%s:%u", req->domain, mx_port);
	} else {
		strbuf_appends(&sb, "hosts:");
		for (size_t i = 0; i < req->nhosts; i++)
			strbuf_appendf(&sb, "%s:%u,", req->hosts[i].host, req->hosts[i].port);
	}
	return strbuf_detach(&sb, NULL);
}

static void job_add_host(struct delivery_job *job, const char *name, uint16_t port)
{
	job->hosts = xreallocarray(job->hosts, job->nhosts + 1, sizeof(*job->hosts));
	job->hosts[job->nhosts].name = xstrdup(name);
	job->hosts[job->nhosts].port = port;
	job->nhosts++;
}

static void job_clear_hosts(struct delivery_job *job)
{
	for (size_t i = 0; i < job->nhosts; i++)
		free(job->hosts[i].name);
	free(job->hosts);
	free(job->addrs);
	job->hosts = NULL;
	job->addrs = NULL;
	job->nhosts = job->host_i = job->naddrs = job->addr_i = 0;
}

static void job_free(struct delivery_job *job)
{
	if (job->dns != NULL)
		dns_cancel(job->dns);
	if (job->conn != NULL)
		conn_free(job->conn);
	if (job->finish_ev != NULL)
		event_free(job->finish_ev);
	job_clear_hosts(job);
	config_unref(job->cfg);
	free(job->results);
	free(job->rcpt_ok);
	free(job->dest);
	free(job);
}

static void job_unlink(struct delivery_job *job)
{
	struct delivery_smtp *d = job->d;

	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		d->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
}

static const char *status_word(enum delivery_status st)
{
	switch (st) {
	case DELIVERY_OK:
		return "sent";
	case DELIVERY_TEMPFAIL:
		return "deferred";
	case DELIVERY_PERMFAIL:
		return "bounced";
	}
	return "unknown";
}

/* One line per attempt; the queue logs each recipient's reply on its own. */
static void job_log(const struct delivery_job *job)
{
	const struct envelope *env = job->req.env;
	struct timeval now;
	struct strbuf sb;
	double took;

	gettimeofday(&now, NULL);
	took = (double)(now.tv_sec - job->started.tv_sec) +
	       (double)(now.tv_usec - job->started.tv_usec) / 1e6;
	strbuf_init(&sb, DELIVERY_LOG_MAX);
	for (size_t i = 0; i < job->req.nrcpts; i++) {
		const struct delivery_rcpt_result *res = &job->results[i];

		if (strbuf_appendf(&sb, "%s<%s>:%s:%d", i ? "," : "",
				   env->rcpts[job->req.rcpt_index[i]].addr,
				   status_word(res->status), res->code) < 0) {
			strbuf_appends(&sb, ",...");
			break;
		}
	}
	log_info("attempt queue_id=%s domain=%s relay=%s delay=%lds took=%.2fs rcpts=%s",
		 env->id, job->req.domain,
		 job->req.nrcpts && job->results[0].remote[0] ? job->results[0].remote : "none",
		 (long)(time(NULL) - env->arrival), took, sb.data ? sb.data : "");
	strbuf_free(&sb);
}

/* Report and forget the job; the callback may start new deliveries. */
static void job_finish(struct delivery_job *job)
{
	job_unlink(job);
	job_log(job);
	job->cb(job->arg, job->results, job->req.nrcpts);
	job_free(job);
}

static void job_on_finish_event(evutil_socket_t fd, short what, void *arg)
{
	job_finish(arg);
}

/* delivery_smtp_start never calls back directly: an early answer waits for the loop. */
static void job_finish_later(struct delivery_job *job)
{
	job->finish_ev = event_new(job->d->pt->base, -1, 0, job_on_finish_event, job);
	if (job->finish_ev == NULL)
		panic("event_new for a delivery result failed");
	event_active(job->finish_ev, EV_TIMEOUT, 0);
}

/*
 * The job's session ended before its results were final: next address,
 * or (retry_plain, after a failed TLS handshake) the same one once more
 * without STARTTLS.
 */
static void job_conn_lost(struct delivery_job *job, bool retry_plain)
{
	if (job->txn_over) {
		job_finish(job);
		return;
	}
	if (job->reused) {
		/* the cached session went stale: route from scratch */
		job->reused = false;
		job_route(job);
		return;
	}
	if (retry_plain && !job->plain_retry) {
		job->plain_retry = true;
		job_connect_next(job);
		return;
	}
	job->plain_retry = false;
	job->addr_i++;
	job_connect_next(job);
}

/* ---------------------------------------------------------- conn errors */

/* The session cannot go on: drop it and let its job try elsewhere. */
static void conn_failed(struct delivery_conn *conn, int code, const char *reply)
{
	struct delivery_job *job = conn->job;

	if (job != NULL && !job->txn_over)
		job_note_failure(job, code, reply, conn->remote);
	conn_free(conn);
	if (job != NULL)
		job_conn_lost(job, false);
}

static void conn_failedf(struct delivery_conn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conn_failedf(struct delivery_conn *conn, const char *fmt, ...)
{
	char reply[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, sizeof(reply), fmt, ap);
	va_end(ap);
	conn_failed(conn, 0, reply);
}

/* The server refused the session with a reply: the next address may do better. */
static void conn_refused(struct delivery_conn *conn, const struct smtp_reply *r)
{
	conn_failed(conn, r->code, r->text);
}

/* The handshake failed; the same address is tried once more without STARTTLS. */
static void conn_tls_failed(struct delivery_conn *conn, const char *why)
{
	struct delivery_job *job = conn->job;
	char reply[512];

	snprintf(reply, sizeof(reply), "4.7.5 TLS handshake with %s failed: %s", conn->remote, why);
	job_note_failure(job, 0, reply, conn->remote);
	conn_free(conn);
	job_conn_lost(job, true);
}

static const char *conn_state_word(enum conn_state st)
{
	switch (st) {
	case CONN_CONNECTING:
		return "connect";
	case CONN_GREETING:
		return "greeting";
	case CONN_EHLO:
		return "EHLO";
	case CONN_HELO:
		return "HELO";
	case CONN_STARTTLS:
		return "STARTTLS";
	case CONN_TLS_HANDSHAKE:
		return "TLS handshake";
	case CONN_TXN:
		return "MAIL/RCPT/DATA";
	case CONN_BODY:
		return "message transfer";
	case CONN_DOT:
		return "end of data";
	case CONN_RSET:
		return "RSET";
	case CONN_IDLE:
		return "idle";
	case CONN_QUIT:
		return "QUIT";
	}
	return "?";
}

/* Why the socket or TLS layer gave up, as precisely as they tell. */
static void conn_error_text(struct delivery_conn *conn, short what, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(conn->bev);
	int err = EVUTIL_SOCKET_ERROR();

	if (e != 0)
		ERR_error_string_n(e, buf, len);
	else if (what & BEV_EVENT_TIMEOUT)
		snprintf(buf, len, "timeout");
	else if ((what & BEV_EVENT_EOF) || err == 0)
		snprintf(buf, len, "connection closed by the server");
	else
		snprintf(buf, len, "%s", evutil_socket_error_to_string(err));
}

static void conn_handle_event(struct delivery_conn *conn, short what)
{
	struct bufferevent *bev = conn->bev;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (conn->state == CONN_CONNECTING) {
			conn->state = CONN_GREETING;
			conn_reply_timeouts(conn);
		} else if (conn->state == CONN_TLS_HANDSHAKE) {
			char desc[128];

			conn->tls = true;
			tls_describe(bufferevent_openssl_get_ssl(bev), desc, sizeof(desc));
			log_info("queue_id=%s relay=%s TLS %s", conn->job->req.env->id, conn->remote, desc);
			/* EHLO again: what the server offered before TLS means nothing now */
			conn_send_helo(conn, "EHLO", CONN_EHLO);
		}
		return;
	}
	if (conn->state == CONN_IDLE || conn->state == CONN_QUIT) {
		if (conn->state == CONN_IDLE && (what & BEV_EVENT_TIMEOUT))
			conn_quit(conn);
		else
			conn_free(conn);
		return;
	}
	if (conn->state == CONN_TLS_HANDSHAKE) {
		conn_error_text(conn, what, why, sizeof(why));
		conn_tls_failed(conn, why);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		conn_failedf(conn, "%s %s: timeout during %s",
			     conn->state == CONN_CONNECTING ? "4.4.1" : "4.4.2", conn->remote,
			     conn_state_word(conn->state));
	else if (conn->state == CONN_CONNECTING)
		conn_failedf(conn, "4.4.1 connect to %s: %s", conn->remote,
			     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else if (what & BEV_EVENT_EOF)
		conn_failedf(conn, "4.4.2 %s: lost connection during %s", conn->remote,
			     conn_state_word(conn->state));
	else {
		conn_error_text(conn, what, why, sizeof(why));
		conn_failedf(conn, "4.4.2 %s: %s during %s", conn->remote, why,
			     conn_state_word(conn->state));
	}
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct delivery_conn *conn = arg;

	conn_enter(conn);
	conn_handle_event(conn, what);
	conn_leave(conn);
}

/* ---------------------------------------------------------- transaction */

static void mail_command(const struct delivery_conn *conn, const struct delivery_job *job,
			 struct strbuf *sb)
{
	const struct envelope *env = job->req.env;
	unsigned ext = conn->ext.flags;
	char xtext[SMTP_ENVID_MAX * 3 + 1];

	strbuf_appendf(sb, "MAIL FROM:<%s>", env->sender);
	if (ext & SMTP_EXT_SIZE)
		strbuf_appendf(sb, " SIZE=%llu", (unsigned long long)job->body_size);
	if (env->body == BODY_8BITMIME && (ext & SMTP_EXT_8BITMIME))
		strbuf_appends(sb, " BODY=8BITMIME");
	else if (env->body == BODY_BINARYMIME)
		strbuf_appends(sb, " BODY=BINARYMIME");
	if (env->smtputf8)
		strbuf_appends(sb, " SMTPUTF8");
	if (ext & SMTP_EXT_DSN) {
		if (env->ret != DSN_RET_UNSET)
			strbuf_appends(sb, env->ret == DSN_RET_FULL ? " RET=FULL" : " RET=HDRS");
		if (env->envid != NULL && smtp_xtext_encode(env->envid, xtext, sizeof(xtext)) >= 0)
			strbuf_appendf(sb, " ENVID=%s", xtext);
	}
	strbuf_appends(sb, "\r\n");
}

static void rcpt_command(const struct delivery_conn *conn, const struct delivery_job *job,
			 size_t i, struct strbuf *sb)
{
	const struct envelope_rcpt *r = &job->req.env->rcpts[job->req.rcpt_index[i]];
	char xtext[SMTP_ORCPT_MAX * 3 + 1];

	strbuf_appendf(sb, "RCPT TO:<%s>", r->addr);
	if (conn->ext.flags & SMTP_EXT_DSN) {
		if (r->notify & DSN_NOTIFY_NEVER) {
			strbuf_appends(sb, " NOTIFY=NEVER");
		} else if (r->notify != 0) {
			const char *sep = " NOTIFY=";

			if (r->notify & DSN_NOTIFY_SUCCESS) {
				strbuf_appendf(sb, "%sSUCCESS", sep);
				sep = ",";
			}
			if (r->notify & DSN_NOTIFY_FAILURE) {
				strbuf_appendf(sb, "%sFAILURE", sep);
				sep = ",";
			}
			if (r->notify & DSN_NOTIFY_DELAY)
				strbuf_appendf(sb, "%sDELAY", sep);
		}
		if (r->orcpt != NULL && smtp_xtext_encode(r->orcpt, xtext, sizeof(xtext)) >= 0)
			strbuf_appendf(sb, " ORCPT=%s", xtext);
	}
	strbuf_appends(sb, "\r\n");
}

static void conn_send_rcpt(struct delivery_conn *conn, size_t i)
{
	struct strbuf sb;

	strbuf_init(&sb, DELIVERY_COMMAND_MAX);
	rcpt_command(conn, conn->job, i, &sb);
	conn_send_sb(conn, &sb);
	strbuf_free(&sb);
}

/*
 * A requirement the server cannot meet decides the transaction before it
 * starts; the session itself stays usable. NULL when there is none.
 */
static const char *txn_unmeetable(const struct delivery_conn *conn, const struct delivery_job *job,
				  int *code)
{
	const struct envelope *env = job->req.env;
	unsigned ext = conn->ext.flags;

	if (env->smtputf8 && !(ext & SMTP_EXT_SMTPUTF8)) {
		*code = 553;
		return "553 5.6.7 SMTPUTF8 is required, but was not offered by the remote server";
	}
	if (env->body == BODY_BINARYMIME &&
	    (ext & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING)) != (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING)) {
		*code = 554;
		return "554 5.6.3 BINARYMIME is required, but was not offered by the remote server";
	}
	if (conn->ext.size_max != 0 && job->body_size > conn->ext.size_max) {
		*code = 552;
		return "552 5.3.4 message size exceeds the fixed limit of the remote server";
	}
	return NULL;
}

/* Before a transaction: every recipient undecided. */
static void txn_reset(struct delivery_job *job)
{
	job->step = 0;
	job->accepted = 0;
	job->mail_failed = false;
	job->discard = false;
	job->txn_over = false;
	job->body_off = 0;
	memset(job->rcpt_ok, 0, job->req.nrcpts * sizeof(*job->rcpt_ok));
	job_result_all(job, DELIVERY_TEMPFAIL, 0, "4.3.0 delivery did not complete", "");
}

/* The results are final: RSET for the next transaction, then finish the job. */
static void txn_end(struct delivery_conn *conn)
{
	conn->job->txn_over = true;
	if (conn->broken || conn->messages >= DELIVERY_MESSAGES_PER_CONN) {
		struct delivery_job *job = conn->job;

		conn_quit(conn);
		job_finish(job);
		return;
	}
	conn->state = CONN_RSET;
	conn_send(conn, "RSET\r\n");
}

/* MAIL, and with PIPELINING every RCPT and DATA in the same write (RFC 2920). */
static void txn_begin(struct delivery_conn *conn)
{
	struct delivery_job *job = conn->job;
	bool pipelining = conn->ext.flags & SMTP_EXT_PIPELINING;
	const char *unmeetable;
	struct strbuf sb;
	int code = 0;

	txn_reset(job);
	job->bdat = job->req.env->body == BODY_BINARYMIME;
	unmeetable = txn_unmeetable(conn, job, &code);
	if (unmeetable != NULL) {
		job_result_all(job, DELIVERY_PERMFAIL, code, unmeetable, conn->remote);
		job->txn_over = true;
		conn_make_idle(conn, job->cfg);
		/* this may run inside delivery_smtp_start (a cached session) */
		job_finish_later(job);
		return;
	}
	conn->messages++;
	conn->state = CONN_TXN;
	conn_reply_timeouts(conn);
	strbuf_init(&sb, DELIVERY_COMMAND_MAX * (pipelining ? job->req.nrcpts + 2 : 1));
	mail_command(conn, job, &sb);
	if (pipelining) {
		for (size_t i = 0; i < job->req.nrcpts; i++)
			rcpt_command(conn, job, i, &sb);
		if (!job->bdat)
			strbuf_appends(&sb, "DATA\r\n");
	}
	conn_send_sb(conn, &sb);
	strbuf_free(&sb);
}

/* The message: dot-stuffed after DATA, or raw after "BDAT <size> LAST". */
static void body_begin(struct delivery_conn *conn)
{
	struct delivery_job *job = conn->job;

	if (job->bdat) {
		char line[64];

		snprintf(line, sizeof(line), "BDAT %llu LAST\r\n", (unsigned long long)job->body_size);
		conn_send(conn, line);
	}
	smtp_dotstuff_init(&job->stuff);
	job->body_off = 0;
	conn->state = CONN_BODY;
	/* the server is silent while we write: only writing must make progress */
	conn_timeouts(conn, 0, job->cfg->timeout_reply);
	bufferevent_setwatermark(conn->bev, EV_WRITE, DELIVERY_OUT_LOW, 0);
}

/* The spool file failed us mid-message: never send "." after a partial body. */
static void body_read_failed(struct delivery_conn *conn, const char *why)
{
	struct delivery_job *job = conn->job;
	char reply[512];

	snprintf(reply, sizeof(reply), "4.3.0 cannot read queue file: %s", why);
	log_error("queue_id=%s %s", job->req.env->id, reply);
	for (size_t i = 0; i < job->req.nrcpts; i++)
		if (job->rcpt_ok[i])
			result_set(&job->results[i], DELIVERY_TEMPFAIL, 0, reply, conn->remote);
	job->txn_over = true;
	conn_free(conn);
	job_finish(job);
}

/*
 * Top up the output from the spool file, a chunk at a time, while less
 * than DELIVERY_OUT_HIGH is queued; the write callback calls again once
 * the output drained below DELIVERY_OUT_LOW.
 */
static void body_fill(struct delivery_conn *conn)
{
	struct delivery_job *job = conn->job;
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char in[DELIVERY_CHUNK], stuffed[2 * DELIVERY_CHUNK], end[5];

	while (evbuffer_get_length(out) < DELIVERY_OUT_HIGH && job->body_off < job->body_size) {
		uint64_t left = job->body_size - job->body_off;
		size_t want = left < sizeof(in) ? (size_t)left : sizeof(in);
		ssize_t got = message_view_pread(job->req.env, job->req.body_fd, job->req.body_len, in,
						 want, job->body_off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			body_read_failed(conn, got < 0 ? strerror(errno) : "file shorter than the message");
			return;
		}
		job->body_off += (uint64_t)got;
		if (job->bdat)
			evbuffer_add(out, in, (size_t)got);
		else
			evbuffer_add(out, stuffed, smtp_dotstuff(&job->stuff, in, (size_t)got, stuffed));
	}
	if (job->body_off < job->body_size)
		return;
	if (!job->bdat)
		evbuffer_add(out, end, smtp_dotstuff_end(&job->stuff, end));
	conn->state = CONN_DOT;
	conn_reply_timeouts(conn);
}

/* Recipients accepted by RCPT take the transaction's reply. */
static void txn_result_accepted(struct delivery_conn *conn, const struct smtp_reply *r)
{
	struct delivery_job *job = conn->job;

	for (size_t i = 0; i < job->req.nrcpts; i++)
		if (job->rcpt_ok[i])
			job_result_reply(job, i, r, conn->remote);
}

/* After the last RCPT reply: send the data, or end a transaction that has no recipient. */
static void txn_after_rcpts(struct delivery_conn *conn, bool pipelining)
{
	struct delivery_job *job = conn->job;
	bool go = job->accepted > 0 && !job->mail_failed;

	if (job->bdat) {
		if (go) {
			body_begin(conn);
			body_fill(conn);
		} else {
			txn_end(conn);
		}
	} else if (!pipelining) {
		if (go)
			conn_send(conn, "DATA\r\n");
		else
			txn_end(conn);
	}
}

/* A reply to MAIL, RCPT or DATA, in the order they were sent. */
static void txn_on_reply(struct delivery_conn *conn, const struct smtp_reply *r)
{
	struct delivery_job *job = conn->job;
	bool pipelining = conn->ext.flags & SMTP_EXT_PIPELINING;
	size_t n = job->req.nrcpts, step = job->step++;

	if (r->code == 421) {
		conn_refused(conn, r);
		return;
	}
	if (step == 0) {
		if (r->code >= 300) {
			job->mail_failed = true;
			for (size_t i = 0; i < n; i++)
				job_result_reply(job, i, r, conn->remote);
			if (!pipelining)
				txn_end(conn);
		} else if (!pipelining) {
			conn_send_rcpt(conn, 0);
		}
		return;
	}
	if (step <= n) {
		size_t i = step - 1;

		if (!job->mail_failed && r->code >= 200 && r->code < 300) {
			job->rcpt_ok[i] = true;
			job->accepted++;
		} else if (!job->mail_failed) {
			job_result_reply(job, i, r, conn->remote);
		}
		if (step < n && !pipelining)
			conn_send_rcpt(conn, step);
		else if (step == n)
			txn_after_rcpts(conn, pipelining);
		return;
	}
	if (r->code != 354) {
		txn_result_accepted(conn, r);
		txn_end(conn);
		return;
	}
	if (job->accepted == 0 || job->mail_failed) {
		/* RFC 2920 3.1: a server that says 354 anyway gets an empty message */
		job->discard = true;
		conn->state = CONN_DOT;
		conn_send(conn, ".\r\n");
		return;
	}
	body_begin(conn);
	body_fill(conn);
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
	struct delivery_conn *conn = arg;

	if (conn->state != CONN_BODY)
		return;
	conn_enter(conn);
	body_fill(conn);
	conn_leave(conn);
}

/* ------------------------------------------------------------- replies */

static void conn_start_tls(struct delivery_conn *conn)
{
	struct postern *pt = conn->d->pt;
	struct bufferevent *tbev;
	SSL *ssl;

	/* RFC 3207 5: nothing the server sent before the handshake may be used */
	if (evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0) {
		conn_failedf(conn, "4.5.0 %s: data after the reply to STARTTLS", conn->remote);
		return;
	}
	ssl = tls_client_ssl(pt->tls, conn->host);
	if (ssl == NULL) {
		conn_tls_failed(conn, "cannot create a TLS session");
		return;
	}
	tbev = bufferevent_openssl_filter_new(pt->base, conn->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
					      BEV_OPT_CLOSE_ON_FREE);
	if (tbev == NULL) {
		SSL_free(ssl);
		conn_tls_failed(conn, "cannot start TLS on the connection");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
	conn->bev = tbev;
	conn->state = CONN_TLS_HANDSHAKE;
	bufferevent_setcb(tbev, conn_on_read, conn_on_write, conn_on_event, conn);
	bufferevent_enable(tbev, EV_READ | EV_WRITE);
}

static void conn_after_ehlo(struct delivery_conn *conn)
{
	const struct delivery_job *job = conn->job;

	if (!conn->tls && (conn->ext.flags & SMTP_EXT_STARTTLS) && job->cfg->outbound_tls &&
	    conn->d->pt->tls != NULL && !job->plain_retry) {
		conn->state = CONN_STARTTLS;
		conn_send(conn, "STARTTLS\r\n");
		return;
	}
	txn_begin(conn);
}

/* The RSET reply: park the session for the next job, or close it. */
static void conn_on_rset(struct delivery_conn *conn, const struct smtp_reply *r)
{
	struct delivery_job *job = conn->job;

	conn_detach(conn);
	if (r->code >= 200 && r->code < 300)
		conn_make_idle(conn, job->cfg);
	else
		conn_quit(conn);
	job_finish(job);
}

/* One whole reply; conn may be gone afterwards. */
static void conn_on_reply(struct delivery_conn *conn, const struct smtp_reply *r)
{
	bool ok = r->code >= 200 && r->code < 300;

	log_debug("reply remote=%s \"%s\"", conn->remote, r->text);
	switch (conn->state) {
	case CONN_GREETING:
		if (r->code == 220)
			conn_send_helo(conn, "EHLO", CONN_EHLO);
		else
			conn_refused(conn, r);
		break;
	case CONN_EHLO:
		if (ok)
			conn_after_ehlo(conn);
		else if (r->code >= 500)
			conn_send_helo(conn, "HELO", CONN_HELO);
		else
			conn_refused(conn, r);
		break;
	case CONN_HELO:
		if (ok)
			txn_begin(conn);
		else
			conn_refused(conn, r);
		break;
	case CONN_STARTTLS:
		if (r->code == 220)
			conn_start_tls(conn);
		else
			txn_begin(conn);    /* opportunistic: go on in the clear */
		break;
	case CONN_TXN:
		txn_on_reply(conn, r);
		break;
	case CONN_BODY:
		/* an early reply ends the transaction; what we still had to send is lost */
		conn->broken = true;
		/* fall through */
	case CONN_DOT:
		if (r->code == 421) {
			conn_refused(conn, r);
			break;
		}
		if (!conn->job->discard)
			txn_result_accepted(conn, r);
		txn_end(conn);
		break;
	case CONN_RSET:
		conn_on_rset(conn, r);
		break;
	case CONN_IDLE:         /* a 421 before the server hangs up */
	case CONN_QUIT:
		conn_free(conn);
		break;
	case CONN_CONNECTING:
	case CONN_TLS_HANDSHAKE:
		panic("reply in state %s", conn_state_word(conn->state));
	}
}

/* Read whole lines and hand each complete reply on; stops once conn is gone. */
static void conn_on_read(struct bufferevent *bev, void *arg)
{
	struct delivery_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[SMTP_REPLY_LINE_MAX + 3];

	for (;;) {
		size_t eol_len = 0, textlen;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		enum smtp_reply_state st;
		struct smtp_reply r;
		const char *text;

		if (p.pos < 0 && evbuffer_get_length(in) <= SMTP_REPLY_LINE_MAX + 2)
			return;
		if (p.pos < 0 || (size_t)p.pos > SMTP_REPLY_LINE_MAX) {
			conn_failedf(conn, "4.5.0 %s: reply line too long during %s", conn->remote,
				     conn_state_word(conn->state));
			return;
		}
		evbuffer_remove(in, line, (size_t)p.pos + eol_len);
		line[p.pos] = '\0';
		st = smtp_reply_feed(&conn->reply, line, (size_t)p.pos, &text, &textlen);
		if (st == SMTP_REPLY_MALFORMED) {
			smtp_text_clean(line);
			conn_failedf(conn, "4.5.0 %s: malformed reply during %s: %.100s", conn->remote,
				     conn_state_word(conn->state), line);
			return;
		}
		if (conn->state == CONN_EHLO && conn->reply.nlines > 1)
			smtp_ext_parse(&conn->ext, text, textlen);
		if (st == SMTP_REPLY_MORE)
			continue;
		r = conn->reply;
		smtp_reply_reset(&conn->reply);
		conn_enter(conn);
		conn_on_reply(conn, &r);
		if (!conn_leave(conn))
			return;
	}
}

/* -------------------------------------------------------------- routing */

static void conn_format_remote(struct delivery_conn *conn, const struct sockaddr *sa, uint16_t port)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	const void *bin = sa->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	inet_ntop(sa->sa_family, bin, addr, sizeof(addr));
	snprintf(conn->remote, sizeof(conn->remote), "%s[%s]:%u", conn->host, addr, port);
}

/* Start connecting to the current address; -1 (failure noted) when that cannot even start. */
static int conn_open(struct delivery_job *job)
{
	const struct delivery_host *host = &job->hosts[job->host_i];
	struct sockaddr_storage ss = job->addrs[job->addr_i].ss;
	socklen_t len = job->addrs[job->addr_i].len;
	struct delivery_conn *conn;
	unsigned t = job->cfg->timeout_connect;

	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(host->port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons(host->port);
	conn = conn_new(job->d, job->dest, host->name);
	conn_format_remote(conn, (struct sockaddr *)&ss, host->port);
	conn->bev = bufferevent_socket_new(job->d->pt->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		job_note_failure(job, 0, "4.3.0 cannot create a socket", conn->remote);
		conn_free(conn);
		return -1;
	}
	bufferevent_setcb(conn->bev, conn_on_read, conn_on_write, conn_on_event, conn);
	conn_timeouts(conn, t, t);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	conn->state = CONN_CONNECTING;
	if (bufferevent_socket_connect(conn->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		char reply[512];

		snprintf(reply, sizeof(reply), "4.4.1 connect to %s: %s", conn->remote,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		job_note_failure(job, 0, reply, conn->remote);
		conn_free(conn);
		return -1;
	}
	/*
	 * Pipelining already batches the commands; Nagle would only hold
	 * back the final "." or RSET behind a delayed ACK (40 ms a message).
	 */
	setsockopt(bufferevent_getfd(conn->bev), IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	conn->job = job;
	job->conn = conn;
	return 0;
}

/* The next address of the current host, else the next host. */
static void job_connect_next(struct delivery_job *job)
{
	while (job->addr_i < job->naddrs) {
		if (conn_open(job) == 0)
			return;
		job->plain_retry = false;
		job->addr_i++;
	}
	job->host_i++;
	job_next_host(job);
}

static void job_on_addrs(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct delivery_job *job = arg;
	const struct delivery_host *host = &job->hosts[job->host_i];

	job->dns = NULL;
	if (st != DNS_OK) {
		char reply[512];

		snprintf(reply, sizeof(reply), "4.4.3 address lookup for %s failed: %s", host->name,
			 dns_status_str(st));
		job_note_failure(job, 0, reply, "");
		job->host_i++;
		job_next_host(job);
		return;
	}
	free(job->addrs);
	job->addrs = xcalloc(n, sizeof(*job->addrs));
	memcpy(job->addrs, addrs, n * sizeof(*addrs));
	job->naddrs = n;
	job->addr_i = 0;
	job->plain_retry = false;
	job_connect_next(job);
}

/* Host names are resolved one at a time, only when the ones before failed. */
static void job_next_host(struct delivery_job *job)
{
	if (job->host_i >= job->nhosts) {
		job_all_failed(job);
		return;
	}
	job->dns = dns_lookup_addr(job->d->pt->dns, job->hosts[job->host_i].name, AF_UNSPEC,
				   job_on_addrs, job);
}

static bool mx_is_null(const struct dns_mx *mx, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(mx[i].host, ".") != 0)
			return false;
	return true;
}

static void job_on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n)
{
	struct delivery_job *job = arg;
	const char *domain = job->req.domain;
	uint16_t port = (uint16_t)job->cfg->mx_port;
	char reply[512];

	job->dns = NULL;
	switch (st) {
	case DNS_OK:
		if (mx_is_null(mx, n)) {
			/* RFC 7505 3: the domain accepts no mail at all */
			snprintf(reply, sizeof(reply), "556 5.1.10 domain %s does not accept mail (null MX)",
				 domain);
			job_result_all(job, DELIVERY_PERMFAIL, 556, reply, "");
			job_finish(job);
			return;
		}
		for (size_t i = 0; i < n; i++)
			if (strcmp(mx[i].host, ".") != 0)
				job_add_host(job, mx[i].host, port);
		break;
	case DNS_NODATA:
		/* RFC 5321 5.1: no MX records, the domain itself is the implicit MX */
		job_add_host(job, domain, port);
		break;
	case DNS_NXDOMAIN:
		snprintf(reply, sizeof(reply), "550 5.1.2 domain %s not found", domain);
		job_result_all(job, DELIVERY_PERMFAIL, 550, reply, "");
		job_finish(job);
		return;
	case DNS_TEMPFAIL:
	case DNS_MALFORMED:
		snprintf(reply, sizeof(reply), "4.4.3 MX lookup for %s failed: %s", domain,
			 dns_status_str(st));
		job_result_all(job, DELIVERY_TEMPFAIL, 0, reply, "");
		job_finish(job);
		return;
	}
	job_next_host(job);
}

/* Where to connect: the configured hosts in order, or the domain's MX hosts. */
static void job_route(struct delivery_job *job)
{
	job_clear_hosts(job);
	job->plain_retry = false;
	if (job->req.hosts != NULL) {
		for (size_t i = 0; i < job->req.nhosts; i++)
			job_add_host(job, job->req.hosts[i].host, job->req.hosts[i].port);
		job_next_host(job);
		return;
	}
	job->dns = dns_lookup_mx(job->d->pt->dns, job->req.domain, job_on_mx, job);
}

/* ------------------------------------------------------------------ API */

struct delivery_smtp *delivery_smtp_new(struct postern *pt)
{
	struct delivery_smtp *d = xcalloc(1, sizeof(*d));

	d->pt = pt;
	return d;
}

/* Jobs still running are dropped without a callback: their recipients stay queued. */
void delivery_smtp_free(struct delivery_smtp *d)
{
	if (d == NULL)
		return;
	while (d->jobs != NULL) {
		struct delivery_job *job = d->jobs;

		job_unlink(job);
		job_free(job);
	}
	while (d->conns != NULL)
		conn_free(d->conns);
	free(d);
}

void delivery_smtp_close_idle(struct delivery_smtp *d)
{
	struct delivery_conn *conn, *next;

	for (conn = d->conns; conn != NULL; conn = next) {
		next = conn->next;
		if (conn->state == CONN_IDLE)
			conn_quit(conn);
	}
}

void delivery_smtp_start(struct delivery_smtp *d, const struct delivery_request *req,
			 delivery_done_cb cb, void *arg)
{
	struct delivery_job *job = xcalloc(1, sizeof(*job));
	struct delivery_conn *conn;

	job->d = d;
	job->cfg = config_ref(d->pt->cfg);
	job->req = *req;
	job->body_size = message_view_size(req->env, req->body_len);
	job->cb = cb;
	job->arg = arg;
	job->results = xcalloc(req->nrcpts ? req->nrcpts : 1, sizeof(*job->results));
	job->rcpt_ok = xcalloc(req->nrcpts ? req->nrcpts : 1, sizeof(*job->rcpt_ok));
	job->dest = dest_key(req, job->cfg->mx_port);
	gettimeofday(&job->started, NULL);
	job->next = d->jobs;
	if (d->jobs != NULL)
		d->jobs->prev = job;
	d->jobs = job;
	txn_reset(job);

	if (req->nrcpts == 0) {
		job_finish_later(job);
		return;
	}
	if (req->hosts != NULL && req->nhosts == 0) {
		job_result_all(job, DELIVERY_TEMPFAIL, 0, "4.3.5 no relay hosts configured", "");
		job_finish_later(job);
		return;
	}
	conn = conn_take_idle(d, job->dest);
	if (conn == NULL) {
		job_route(job);
		return;
	}
	log_debug("queue_id=%s reusing relay=%s", req->env->id, conn->remote);
	conn->job = job;
	job->conn = conn;
	job->reused = true;
	txn_begin(conn);
}
