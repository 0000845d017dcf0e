/*
 * The inbound SMTP session state machine.
 *
 * Input is processed one command at a time from the bufferevent's input
 * buffer, so PIPELINING needs nothing special: replies accumulate in the
 * output buffer and leave together. Anything that has to wait (a password
 * check in the worker pool, the group fsync of the spool) parks the session
 * in a waiting state; the input stays buffered, bounded by the read
 * watermark, until the answer comes back and processing resumes.
 *
 * Memory per idle session is this struct plus the bufferevent; the spool
 * writer's buffer exists only during DATA/BDAT.
 */
#include "smtp/smtp_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "content/auth_results.h"
#include "content/content_stage.h"
#include "content/clean.h"
#include "content/engine.h"
#include "content/marks.h"
#include "content/scoring.h"
#include "content/virus.h"
#include "core/alloc.h"
#include "core/context.h"
#include "core/io.h"
#include "core/workpool.h"
#include "policy/policy.h"
#include "policy/policy_connect.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtp/auth.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_server.h"
#include "smtp/tls.h"

#define LOG_MODULE "smtp"
#include "core/log.h"

/* Stop reading while this much input or output is waiting: bounded memory. */
#define SESSION_INPUT_HIGH (64 * 1024)
#define SESSION_OUTPUT_HIGH (64 * 1024)
#define SESSION_HELO_MAX 255
/* The header block kept for the DATA-stage engines (subject, Received chain). */
#define SESSION_HEADERS_MAX (64 * 1024)

enum session_state {
	SESSION_TLS_HANDSHAKE,   /* implicit TLS: greet after the handshake */
	SESSION_COMMAND,
	SESSION_DATA,
	SESSION_BDAT,
	SESSION_AUTH_PLAIN,      /* waiting for the PLAIN response line */
	SESSION_AUTH_LOGIN_USER,
	SESSION_AUTH_LOGIN_PASS,
	SESSION_WAITING,         /* an async operation holds the session */
	SESSION_PREGREET,        /* greet pause: the client must not talk yet */
	SESSION_STARTTLS,        /* flushing "220 Ready to start TLS" */
	SESSION_CLOSING,         /* flushing the last reply, then free */
};

/* The command whose reply waits for a policy stage. */
enum session_pending_kind {
	PENDING_CONNECT,
	PENDING_HELO,
	PENDING_MAIL,
	PENDING_RCPT,
	PENDING_DATA,
};

struct session_pending {
	enum session_pending_kind kind;
	bool esmtp;                     /* HELO/EHLO */
	struct smtp_mail_args mail;
	struct smtp_rcpt_args rcpt;
	char reply[POLICY_REPLY_MAX];   /* a reply held back by the tarpit */
	bool disconnect;
};

/* An async operation's handle: outlives the session if it must. */
struct session_async {
	struct smtp_session *session;   /* NULL once the session is gone */
	struct postern *pt;
	struct envelope *env;           /* commit: handed to the queue on success */
	bool hold;                      /* commit: quarantined, held for the operator */
	struct content_verdict *verdict; /* commit: why it was quarantined, for the quarantine store */
	struct sasl_credentials cred;   /* auth: wiped when done */
	char *hash;
	bool ok;
};

struct smtp_session {
	struct postern *pt;
	struct config *cfg;
	struct bufferevent *bev;
	evutil_socket_t fd;             /* -1 once a TLS bufferevent owns it */
	struct smtp_session *next, *prev;
	enum session_state state;
	enum listen_kind kind;
	uint64_t id;
	time_t started;
	char client_addr[INET6_ADDRSTRLEN];
	uint16_t client_port;
	struct sockaddr_storage client_sa;
	char *helo;
	char *auth_user;
	char *login_user;               /* AUTH LOGIN between its two steps */
	bool esmtp;
	bool tls;
	bool discarding_line;           /* skipping an over-long command line */
	unsigned errors;
	unsigned auth_failures;
	unsigned messages;
	struct session_async *async;

	/* the connect and protocol stages */
	struct policy *policy;
	struct policy_facts facts;
	struct engine_results symbols;
	size_t txn_symbols;             /* symbols before this transaction's MAIL (they outlive it); SIZE_MAX: no MAIL yet */
	struct policy_run *prun;
	struct session_pending *pending;
	struct event *timer;            /* greet pause and tarpit */
	struct content_job *cjob;       /* the content scan in flight */
	bool connect_allowlisted;       /* an allow list matched at connect: for the whole session */

	/* the transaction */
	struct envelope *env;
	unsigned rcpts_rejected;
	struct spool_writer *writer;
	struct smtp_data_decoder dec;
	uint64_t data_size;
	bool data_too_big;
	bool bdat_used;
	bool bdat_last;
	const char *bdat_error;         /* a BDAT error: swallow chunks until LAST */
	uint64_t bdat_remaining;
	struct strbuf headers;          /* the header block, while it arrives */
	bool in_headers;
	char *subject;
	char *spf_header;               /* this transaction's Received-SPF, for DMARC in the content stage */
};

static void session_process(struct smtp_session *s);
static void session_read_cb(struct bufferevent *bev, void *arg);
static int session_start_tls(struct smtp_session *s);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);

struct smtp_session **smtp_session_next_link(struct smtp_session *s)
{
	return &s->next;
}

struct smtp_session **smtp_session_prev_link(struct smtp_session *s)
{
	return &s->prev;
}

static void session_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Replies go to the output buffer; PIPELINING batches them naturally. */
static void session_reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void session_reply_error(struct smtp_session *s, const struct smtp_error *e)
{
	session_reply(s, "%d %s %s", e->code, e->enhanced, e->text);
}

static bool session_may_relay(const struct smtp_session *s);

/* The transaction is over: the connecting client is the judged one again. */
static void session_forget_perimeter_hop(struct smtp_session *s)
{
	struct policy_facts *f = &s->facts;

	if (!f->perimeter_hop)
		return;
	memcpy(&f->client, &s->client_sa, sizeof(f->client));
	memcpy(f->client_addr, s->client_addr, sizeof(f->client_addr));
	f->direction = session_may_relay(s) ? POLICY_DIR_OUTBOUND : POLICY_DIR_INBOUND;
	f->perimeter_hop = false;
	free(f->hop_helo);
	f->hop_helo = NULL;
}

static void session_txn_reset(struct smtp_session *s)
{
	if (s->writer != NULL) {
		spool_writer_abort(s->writer);
		s->writer = NULL;
	}
	if (s->env != NULL) {
		envelope_free(s->env);
		s->env = NULL;
	}
	s->rcpts_rejected = 0;
	if (s->txn_symbols != SIZE_MAX && s->symbols.count > s->txn_symbols)
		s->symbols.count = s->txn_symbols;
	s->txn_symbols = SIZE_MAX;
	strbuf_free(&s->headers);
	free(s->subject);
	s->subject = NULL;
	s->facts.sender = NULL;
	s->facts.rcpt = NULL;
	/* A sender allow-list hit lasts one transaction; a client one, the session. */
	s->facts.allowlisted = s->connect_allowlisted;
	s->facts.subject = NULL;
	s->facts.headers = NULL;
	s->facts.headers_len = 0;
	free(s->facts.received_spf);
	s->facts.received_spf = NULL;
	free(s->spf_header);
	s->spf_header = NULL;
	session_forget_perimeter_hop(s);
	s->data_size = 0;
	s->data_too_big = false;
	s->bdat_used = false;
	s->bdat_last = false;
	s->bdat_error = NULL;
	s->bdat_remaining = 0;
}

static void session_free(struct smtp_session *s)
{
	time_t now = time(NULL);

	log_info("disconnect session=%llu client=%s helo=%s tls=%s auth=%s messages=%u errors=%u duration=%lds",
		 (unsigned long long)s->id, s->client_addr, s->helo ? s->helo : "-",
		 s->tls ? "yes" : "no", s->auth_user ? s->auth_user : "-", s->messages,
		 s->errors, (long)(now - s->started));
	if (s->async != NULL)
		s->async->session = NULL;
	policy_run_cancel(s->prun);
	if (s->cjob != NULL)
		content_job_detach(s->cjob);
	session_txn_reset(s);
	if (s->policy != NULL) {
		policy_session_end(s->policy, &s->facts);
		policy_unref(s->policy);
	}
	policy_facts_free(&s->facts);
	engine_results_free(&s->symbols);
	free(s->pending);
	if (s->timer != NULL)
		event_free(s->timer);
	smtp_server_session_removed(s->pt->smtp, s);
	s->pt->stats.sessions_current--;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->fd >= 0)
		evutil_closesocket(s->fd);
	free(s->helo);
	free(s->auth_user);
	free(s->login_user);
	config_unref(s->cfg);
	free(s);
}

/* Send what is queued, then close: the state every fatal reply leads to. */
static void session_close_after_flush(struct smtp_session *s)
{
	s->state = SESSION_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_free(s);
	else
		bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
}

/* "421 4.4.2 text" becomes "421 4.4.2 <hostname> text", then close. */
static void session_fatal(struct smtp_session *s, const char *code_and_text)
{
	session_reply(s, "%.10s%s %s", code_and_text, s->cfg->hostname, code_and_text + 10);
	session_close_after_flush(s);
}

static void session_count_error(struct smtp_session *s)
{
	if (++s->errors >= s->cfg->max_errors)
		session_fatal(s, "421 4.7.0 Error: too many errors");
}

static void session_greet(struct smtp_session *s)
{
	session_reply(s, "220 %s %s", s->cfg->hostname, s->cfg->banner);
	s->state = SESSION_COMMAND;
}

/* ---- policy stages ----------------------------------------------------- */

static void session_helo_reply(struct smtp_session *s, bool esmtp);
static void session_mail_accept(struct smtp_session *s, const struct smtp_mail_args *m);
static void session_rcpt_finish(struct smtp_session *s, const struct policy_result *res);
static void session_data_finish(struct smtp_session *s, const struct policy_result *res);
static void session_after_connect(struct smtp_session *s);

static struct session_pending *session_pending_start(struct smtp_session *s, enum session_pending_kind kind)
{
	if (s->pending == NULL)
		s->pending = xmalloc(sizeof(*s->pending));
	memset(s->pending, 0, sizeof(*s->pending));
	s->pending->kind = kind;
	return s->pending;
}

/* Kept only while a command waits: idle sessions stay small. */
static void session_pending_done(struct smtp_session *s)
{
	free(s->pending);
	s->pending = NULL;
}

static bool session_refused(const struct policy_result *res)
{
	return res->verdict == POLICY_REJECT || res->verdict == POLICY_DEFER;
}

/* A stage answered: give the held-back command its reply. */
static void session_stage_finish(struct smtp_session *s, const struct policy_result *res)
{
	enum session_pending_kind kind = s->pending->kind;

	switch (kind) {
	case PENDING_CONNECT:
		s->connect_allowlisted = s->facts.allowlisted;
		if (session_refused(res)) {
			session_reply(s, "%s", res->reply);
			session_close_after_flush(s);
		} else {
			session_after_connect(s);
		}
		break;
	case PENDING_HELO:
		if (session_refused(res)) {
			free(s->helo);
			s->helo = NULL;
			s->facts.helo = NULL;
			session_reply(s, "%s", res->reply);
		} else {
			session_helo_reply(s, s->pending->esmtp);
		}
		break;
	case PENDING_MAIL:
		if (session_refused(res)) {
			s->facts.sender = NULL;
			session_reply(s, "%s", res->reply);
		} else {
			session_mail_accept(s, &s->pending->mail);
		}
		break;
	case PENDING_RCPT:
		session_rcpt_finish(s, res);
		return;              /* the reply may wait for the tarpit */
	case PENDING_DATA:
		session_data_finish(s, res);
		break;
	}
	session_pending_done(s);
	if (res->disconnect && s->state != SESSION_CLOSING)
		session_close_after_flush(s);
}

static void session_resume(struct smtp_session *s)
{
	if (s->state == SESSION_COMMAND) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void session_policy_done(void *arg, const struct policy_result *res)
{
	struct smtp_session *s = arg;

	s->prun = NULL;
	s->state = SESSION_COMMAND;
	session_stage_finish(s, res);
	session_resume(s);
}

/* Run a stage for the command in s->pending; its reply comes from session_stage_finish. */
static void session_run_stage(struct smtp_session *s, enum policy_stage stage)
{
	struct policy_result res;

	memset(&res, 0, sizeof(res));
	if (s->policy != NULL &&
	    policy_run(s->policy, stage, &s->facts, &res, session_policy_done, s, &s->prun) == 1) {
		s->state = SESSION_WAITING;
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	session_stage_finish(s, &res);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SESSION_PREGREET) {
		bufferevent_enable(s->bev, EV_READ);
		session_greet(s);
		session_process(s);
		return;
	}
	/* The tarpit delay is over: the held-back RCPT reply goes out now. */
	s->state = SESSION_COMMAND;
	session_reply(s, "%s", s->pending->reply);
	if (s->pending->disconnect)
		session_close_after_flush(s);
	session_pending_done(s);
	session_resume(s);
}

static void session_timer_start(struct smtp_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (s->timer == NULL)
		s->timer = evtimer_new(s->pt->base, session_timer_cb, s);
	evtimer_add(s->timer, &tv);
}

/* Reply to the pending RCPT now, or after the tarpit's delay. */
static void session_reply_after(struct smtp_session *s, unsigned delay_ms)
{
	if (delay_ms == 0) {
		session_reply(s, "%s", s->pending->reply);
		if (s->pending->disconnect)
			session_close_after_flush(s);
		session_pending_done(s);
		return;
	}
	s->state = SESSION_WAITING;
	bufferevent_disable(s->bev, EV_READ);
	session_timer_start(s, delay_ms);
}

/* The connect stage passed: greet, perhaps after a pause that catches talkers. */
static void session_after_connect(struct smtp_session *s)
{
	const struct config *c = s->cfg;

	if (s->kind == LISTEN_SMTPS) {
		if (session_start_tls(s) < 0) {
			log_error("tls session=%llu: cannot start TLS on the smtps listener",
				  (unsigned long long)s->id);
			session_fatal(s, "421 4.7.0 Error: TLS not available");
		}
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	if (c->pregreet.enabled && c->greet_pause_ms > 0 && !s->facts.allowlisted &&
	    (c->pregreet.direction & s->facts.direction) != 0 &&
	    !cidr_list_contains(&c->pregreet.whitelist, (const struct sockaddr *)&s->client_sa)) {
		s->state = SESSION_PREGREET;
		session_timer_start(s, c->greet_pause_ms);
		return;
	}
	session_greet(s);
}

/* Data before the greeting: spamware that does not wait for the server. */
static void session_pregreet_violation(struct smtp_session *s)
{
	enum policy_action action = s->cfg->pregreet.action;
	struct engine_result *r;

	log_info("pregreet session=%llu client=%s action=%d", (unsigned long long)s->id, s->client_addr,
		 (int)action);
	if (action == POLICY_ACTION_REJECT || action == POLICY_ACTION_DEFER) {
		evtimer_del(s->timer);
		session_fatal(s, action == POLICY_ACTION_REJECT ? "554 5.5.1 Error: talked before the greeting"
								: "421 4.7.0 Error: talked before the greeting");
		return;
	}
	r = engine_results_add(&s->symbols, "policy", "PREGREET");
	r->score = s->cfg->pregreet.score;
	r->category = CATEGORY_DYNAMIC;
	snprintf(r->reason, sizeof(r->reason), "client talked before the greeting");
	/* Tagged: the greeting still comes at the end of the pause. */
	bufferevent_disable(s->bev, EV_READ);
}

/* ---- HELO / EHLO ------------------------------------------------------- */

static void cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
{
	struct smtp_error e;
	char name[SESSION_HELO_MAX + 1];

	if (smtp_parse_helo(arg, name, sizeof(name), &e) < 0) {
		session_reply_error(s, &e);
		session_count_error(s);
		return;
	}
	session_txn_reset(s);
	free(s->helo);
	s->helo = xstrdup(name);
	s->esmtp = false;
	s->facts.helo = s->helo;
	session_pending_start(s, PENDING_HELO)->esmtp = esmtp;
	session_run_stage(s, POLICY_STAGE_HELO);
}

/* The HELO stage passed: the greeting reply, with the extensions for EHLO. */
static void session_helo_reply(struct smtp_session *s, bool esmtp)
{
	s->esmtp = esmtp;
	if (!esmtp) {
		session_reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	session_reply(s, "250-%s", s->cfg->hostname);
	session_reply(s, "250-PIPELINING");
	session_reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->max_message_size);
	if (s->cfg->vrfy)
		session_reply(s, "250-VRFY");
	if (!s->tls && s->pt->tls != NULL)
		session_reply(s, "250-STARTTLS");
	if (s->tls && s->cfg->auth_enabled && s->auth_user == NULL)
		session_reply(s, "250-AUTH PLAIN LOGIN");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-DSN");
	session_reply(s, "250-SMTPUTF8");
	session_reply(s, "250 CHUNKING");
}

/* ---- STARTTLS ---------------------------------------------------------- */

static void cmd_starttls(struct smtp_session *s, const char *arg)
{
	if (*arg != '\0') {
		session_reply(s, "501 5.5.4 Syntax: STARTTLS");
		session_count_error(s);
		return;
	}
	if (s->tls) {
		session_reply(s, "503 5.5.1 Error: TLS already active");
		session_count_error(s);
		return;
	}
	if (s->pt->tls == NULL) {
		session_reply(s, "454 4.7.0 TLS not available");
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/*
	 * Anything the client pipelined after STARTTLS was sent in clear
	 * text and must not be executed inside TLS (CVE-2011-0411).
	 */
	evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
	s->state = SESSION_STARTTLS;
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
}

/* Swap the plain bufferevent for a TLS one on the same socket. */
static int session_start_tls(struct smtp_session *s)
{
	SSL *ssl = tls_server_ssl(s->pt->tls);

	if (ssl == NULL)
		return -1;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(s->pt->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	/* The TLS bufferevent now owns the socket and the SSL object. */
	s->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_INPUT_HIGH);
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_tls, 0 },
				 &(struct timeval){ s->cfg->timeout_tls, 0 });
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->state = SESSION_TLS_HANDSHAKE;
	return 0;
}

/* The TLS handshake finished: a fresh start per RFC 3207 section 4.2. */
static void session_tls_established(struct smtp_session *s)
{
	char desc[160];

	s->tls = true;
	s->facts.tls = true;
	tls_describe(bufferevent_openssl_get_ssl(s->bev), desc, sizeof(desc));
	log_info("tls session=%llu client=%s %s", (unsigned long long)s->id, s->client_addr, desc);
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_command, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
	session_txn_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	if (s->kind == LISTEN_SMTPS)
		session_greet(s);
	else
		s->state = SESSION_COMMAND;
}

/* ---- AUTH -------------------------------------------------------------- */

static void auth_verify_run(void *arg)
{
	struct session_async *a = arg;

	a->ok = a->hash != NULL && password_verify(a->hash, a->cred.password);
}

static void auth_verify_done(void *arg)
{
	struct session_async *a = arg;
	struct smtp_session *s = a->session;

	if (s != NULL) {
		s->async = NULL;
		s->state = SESSION_COMMAND;
		if (a->ok) {
			s->auth_user = xstrdup(a->cred.authcid);
			s->facts.auth_user = s->auth_user;
			s->facts.direction = POLICY_DIR_OUTBOUND;
			log_info("auth session=%llu client=%s user=%s result=ok",
				 (unsigned long long)s->id, s->client_addr, s->auth_user);
			session_reply(s, "235 2.7.0 Authentication successful");
		} else {
			s->pt->stats.auth_failures++;
			log_warn("auth session=%llu client=%s user=%s result=failed",
				 (unsigned long long)s->id, s->client_addr, a->cred.authcid);
			session_reply(s, "535 5.7.8 Error: authentication failed");
			if (++s->auth_failures >= s->cfg->auth_max_failures)
				session_fatal(s, "421 4.7.0 Error: too many authentication failures");
		}
	}
	credentials_wipe(&a->cred);
	free(a->hash);
	free(a);
	if (s != NULL && s->state == SESSION_COMMAND) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

/* Hand the password check to the worker pool: argon2id is slow on purpose. */
static void session_auth_verify(struct smtp_session *s, struct sasl_credentials *cred)
{
	struct session_async *a = xcalloc(1, sizeof(*a));
	const struct user_account *u = config_find_user(s->cfg, cred->authcid);

	a->session = s;
	a->pt = s->pt;
	a->cred = *cred;
	credentials_wipe(cred);
	if (u != NULL && u->password_hash != NULL)
		a->hash = xstrdup(u->password_hash);
	s->async = a;
	s->state = SESSION_WAITING;
	bufferevent_disable(s->bev, EV_READ);
	workpool_submit(s->pt->workers, WORK_HIGH, auth_verify_run, auth_verify_done, a);
}

static void session_auth_plain(struct smtp_session *s, const char *b64)
{
	struct sasl_credentials cred;

	if (sasl_plain_decode(b64, &cred) < 0) {
		session_reply(s, "501 5.5.2 Error: cannot decode AUTH PLAIN response");
		session_count_error(s);
		return;
	}
	session_auth_verify(s, &cred);
}

/* AUTH LOGIN's user name, as an initial response or on its own line; then ask for the password. */
static void session_auth_login_user(struct smtp_session *s, const char *b64)
{
	char user[AUTH_FIELD_MAX + 1];

	if (sasl_login_decode(b64, user, sizeof(user)) < 0) {
		session_reply(s, "501 5.5.2 Error: cannot decode AUTH LOGIN response");
		session_count_error(s);
		return;
	}
	s->login_user = xstrdup(user);
	session_reply(s, "334 UGFzc3dvcmQ6");
	s->state = SESSION_AUTH_LOGIN_PASS;
}

static void cmd_auth(struct smtp_session *s, const char *arg)
{
	char mech[16];
	const char *initial;
	size_t n = strcspn(arg, " ");

	if (!s->cfg->auth_enabled) {
		session_reply(s, "502 5.5.1 Error: authentication not enabled");
		return;
	}
	if (!s->tls) {
		session_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (s->helo == NULL || !s->esmtp) {
		session_reply(s, "503 5.5.1 Error: send EHLO first");
		session_count_error(s);
		return;
	}
	if (s->auth_user != NULL || s->env != NULL) {
		session_reply(s, "503 5.5.1 Error: already authenticated or in a mail transaction");
		session_count_error(s);
		return;
	}
	if (n == 0 || n >= sizeof(mech)) {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		session_count_error(s);
		return;
	}
	memcpy(mech, arg, n);
	mech[n] = '\0';
	initial = arg[n] == ' ' ? arg + n + 1 : NULL;
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (initial == NULL) {
			session_reply(s, "334 ");
			s->state = SESSION_AUTH_PLAIN;
		} else {
			session_auth_plain(s, initial);
		}
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		if (initial == NULL) {
			session_reply(s, "334 VXNlcm5hbWU6");
			s->state = SESSION_AUTH_LOGIN_USER;
		} else {
			session_auth_login_user(s, initial);
		}
	} else {
		session_reply(s, "504 5.5.4 Error: unsupported authentication mechanism");
		session_count_error(s);
	}
}

/* A line of an AUTH exchange ("*" aborts, RFC 4954 section 4). */
static void session_auth_line(struct smtp_session *s, const char *line)
{
	enum session_state st = s->state;

	s->state = SESSION_COMMAND;
	if (strcmp(line, "*") == 0) {
		free(s->login_user);
		s->login_user = NULL;
		session_reply(s, "501 5.7.0 Authentication aborted");
		return;
	}
	if (st == SESSION_AUTH_PLAIN) {
		session_auth_plain(s, line);
	} else if (st == SESSION_AUTH_LOGIN_USER) {
		session_auth_login_user(s, line);
	} else {
		struct sasl_credentials cred;
		memset(&cred, 0, sizeof(cred));
		if (sasl_login_decode(line, cred.password, sizeof(cred.password)) < 0 ||
		    s->login_user == NULL) {
			session_reply(s, "501 5.5.2 Error: cannot decode AUTH LOGIN response");
			session_count_error(s);
			credentials_wipe(&cred);
			return;
		}
		snprintf(cred.authcid, sizeof(cred.authcid), "%s", s->login_user);
		free(s->login_user);
		s->login_user = NULL;
		session_auth_verify(s, &cred);
	}
}

/* ---- MAIL / RCPT ------------------------------------------------------- */

static void cmd_mail(struct smtp_session *s, const char *arg)
{
	struct smtp_mail_args m;
	struct smtp_error e;

	if (s->helo == NULL) {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		session_count_error(s);
		return;
	}
	if (s->env != NULL) {
		session_reply(s, "503 5.5.1 Error: nested MAIL command");
		session_count_error(s);
		return;
	}
	if (s->kind == LISTEN_SUBMISSION && s->auth_user == NULL) {
		session_reply(s, "530 5.7.0 Authentication required");
		return;
	}
	if (s->messages >= s->cfg->max_messages_per_session) {
		session_fatal(s, "421 4.7.0 Error: too many messages in one session");
		return;
	}
	s->txn_symbols = s->symbols.count;
	if (smtp_parse_mail(arg, &m, &e) < 0) {
		session_reply_error(s, &e);
		session_count_error(s);
		return;
	}
	if (m.has_size && m.size > s->cfg->max_message_size) {
		session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (m.body == SMTP_BODY_BINARYMIME) {
		session_reply(s, "504 5.5.4 BINARYMIME not supported");
		return;
	}
	session_pending_start(s, PENDING_MAIL)->mail = m;
	s->facts.sender = s->pending->mail.path;
	session_run_stage(s, POLICY_STAGE_MAIL);
}

/* The MAIL stage passed: open the transaction. */
static void session_mail_accept(struct smtp_session *s, const struct smtp_mail_args *mp)
{
	struct smtp_mail_args m = *mp;

	s->env = envelope_new();
	s->env->sender = xstrdup(m.path);
	s->env->body = m.body == SMTP_BODY_8BITMIME ? BODY_8BITMIME : BODY_7BIT;
	s->env->smtputf8 = m.smtputf8;
	s->env->ret = m.ret == SMTP_RET_FULL ? DSN_RET_FULL : m.ret == SMTP_RET_HDRS ? DSN_RET_HDRS : DSN_RET_UNSET;
	s->env->envid = m.envid[0] ? xstrdup(m.envid) : NULL;
	s->env->client_addr = xstrdup(s->client_addr);
	s->env->client_helo = xstrdup(s->helo);
	s->env->auth_user = xstrdup_or_null(s->auth_user);
	s->facts.sender = s->env->sender;
	session_reply(s, "250 2.1.0 Ok");
}

static bool session_may_relay(const struct smtp_session *s)
{
	return s->auth_user != NULL ||
	       cidr_list_contains(&s->cfg->trusted_networks, (const struct sockaddr *)&s->client_sa);
}

/*
 * Where may this recipient go? Local users, protected domains, and, for
 * trusted or authenticated clients only, anywhere: never an open relay.
 */
static int session_check_rcpt(struct smtp_session *s, const char *addr, char *reply, size_t len)
{
	char domain[SMTP_DOMAIN_MAX + 1];
	const char *d = address_domain(addr);
	size_t i;

	for (i = 0; d[i] != '\0' && i < SMTP_DOMAIN_MAX; i++)
		domain[i] = (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] + 32 : d[i]);
	domain[i] = '\0';
	if (config_is_local_domain(s->cfg, domain)) {
		if (config_find_user(s->cfg, addr) != NULL)
			return 0;
		snprintf(reply, len, "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table", addr);
		return -1;
	}
	if (config_find_domain(s->cfg, domain) != NULL || session_may_relay(s))
		return 0;
	snprintf(reply, len, "550 5.7.1 <%s>: Relay access denied", addr);
	return -1;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg)
{
	struct smtp_rcpt_args r;
	struct smtp_error e;
	char reply[SMTP_PATH_MAX + 128];

	if (s->env == NULL) {
		session_reply(s, "503 5.5.1 Error: need MAIL command");
		session_count_error(s);
		return;
	}
	if (s->env->nrcpts >= s->cfg->max_recipients) {
		session_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (smtp_parse_rcpt(arg, s->env->smtputf8, &r, &e) < 0) {
		session_reply_error(s, &e);
		session_count_error(s);
		return;
	}
	session_pending_start(s, PENDING_RCPT)->rcpt = r;
	s->facts.rcpt = s->pending->rcpt.path;
	if (session_check_rcpt(s, r.path, reply, sizeof(reply)) < 0) {
		struct policy_result res = { .verdict = POLICY_REJECT };

		snprintf(res.reply, sizeof(res.reply), "%s", reply);
		if (strncmp(reply, "550 5.1.1", 9) == 0) {
			/* An unknown local user feeds the same tarpit as the recipients engine. */
			s->facts.rcpts_unknown++;
			res.delay_ms = policy_tarpit_delay_ms(s->cfg, s->facts.rcpts_unknown);
			if (policy_harvest_limit_reached(s->cfg, s->facts.rcpts_unknown)) {
				snprintf(res.reply, sizeof(res.reply), "421 4.7.0 %s Error: too many unknown recipients",
					 s->cfg->hostname);
				res.disconnect = true;
			}
		}
		session_stage_finish(s, &res);
		return;
	}
	session_run_stage(s, POLICY_STAGE_RCPT);
}

/* The RCPT stage answered: take the recipient or refuse it, after any tarpit delay. */
static void session_rcpt_finish(struct smtp_session *s, const struct policy_result *res)
{
	struct session_pending *p = s->pending;
	const struct smtp_rcpt_args *r = &p->rcpt;
	struct envelope_rcpt *er;

	if (res->verdict == POLICY_REJECT || res->verdict == POLICY_DEFER) {
		s->rcpts_rejected++;
		s->pt->stats.recipients_rejected++;
		log_info("reject session=%llu client=%s from=<%s> to=<%s> reply=\"%s\"",
			 (unsigned long long)s->id, s->client_addr, s->env->sender, r->path, res->reply);
		snprintf(p->reply, sizeof(p->reply), "%s", res->reply);
	} else {
		er = envelope_add_rcpt(s->env, r->path);
		er->notify = r->notify;
		er->orcpt = r->orcpt[0] ? xstrdup(r->orcpt) : NULL;
		s->pt->stats.recipients_accepted++;
		snprintf(p->reply, sizeof(p->reply), "250 2.1.5 Ok");
	}
	s->facts.rcpt = NULL;
	p->disconnect = res->disconnect;
	session_reply_after(s, res->delay_ms);
}

/* ---- DATA / BDAT ------------------------------------------------------- */

/*
 * Keep the header block (bounded) for the DATA-stage engines: it ends at
 * the first empty line, which the decoder always emits as its own "\r\n".
 */
static void session_capture_headers(struct smtp_session *s, const char *data, size_t len)
{
	if (len == 2 && data[0] == '\r' && data[1] == '\n' && s->headers.len >= 2 &&
	    s->headers.data[s->headers.len - 2] == '\r' && s->headers.data[s->headers.len - 1] == '\n') {
		s->in_headers = false;
		return;
	}
	if (strbuf_append(&s->headers, data, len) < 0)
		s->in_headers = false;
}

static void session_emit(void *arg, const char *data, size_t len)
{
	struct smtp_session *s = arg;

	if (s->in_headers)
		session_capture_headers(s, data, len);
	s->data_size += len;
	if (s->data_size > s->cfg->max_message_size) {
		s->data_too_big = true;
		return;
	}
	spool_writer_write(s->writer, data, len);
}

static void session_write_received(struct smtp_session *s)
{
	char date[64], tlsdesc[160] = "";
	struct strbuf sb;
	time_t now = time(NULL);
	struct tm tm;
	const char *with;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (s->tls)
		tls_describe(bufferevent_openssl_get_ssl(s->bev), tlsdesc, sizeof(tlsdesc));
	with = s->env->smtputf8 ? (s->tls ? (s->auth_user ? "UTF8SMTPSA" : "UTF8SMTPS") : "UTF8SMTP")
	       : !s->esmtp ? "SMTP"
	       : s->tls ? (s->auth_user ? "ESMTPSA" : "ESMTPS") : (s->auth_user ? "ESMTPA" : "ESMTP");
	strbuf_init(&sb, 4096);
	strbuf_appendf(&sb, "Received: from %s ([%s])\r\n", s->helo, s->client_addr);
	if (tlsdesc[0])
		strbuf_appendf(&sb, "\t(using %s)\r\n", tlsdesc);
	strbuf_appendf(&sb, "\tby %s (postern) with %s id %s", s->cfg->hostname, with, s->env->id);
	if (s->env->nrcpts == 1)
		strbuf_appendf(&sb, "\r\n\tfor <%s>", s->env->rcpts[0].addr);
	strbuf_appendf(&sb, "; %s\r\n", date);
	spool_writer_write(s->writer, sb.data, sb.len);
	strbuf_free(&sb);
}

/* Open the spool file for a transaction that has recipients. */
static int session_open_message(struct smtp_session *s)
{
	spool_new_id(s->pt->spool, s->env->id);
	s->writer = spool_writer_new(s->pt->spool, s->env->id);
	if (s->writer == NULL) {
		log_error("spool session=%llu: cannot create message file: %s",
			  (unsigned long long)s->id, strerror(errno));
		return -1;
	}
	s->env->arrival = time(NULL);
	session_write_received(s);
	if (s->facts.received_spf != NULL) {
		spool_writer_write(s->writer, s->facts.received_spf, strlen(s->facts.received_spf));
		spool_writer_write(s->writer, "\r\n", 2);
		/* Written: one that appears later comes from the DATA stage. */
		free(s->spf_header);
		s->spf_header = s->facts.received_spf;
		s->facts.received_spf = NULL;
	}
	strbuf_init(&s->headers, SESSION_HEADERS_MAX);
	s->in_headers = true;
	s->data_size = 0;
	s->data_too_big = false;
	return 0;
}

/* NULL when the transaction may send its message, else the reply why not. */
static const char *session_txn_refusal(const struct smtp_session *s)
{
	if (s->env == NULL)
		return "503 5.5.1 Error: need MAIL command";
	if (s->env->nrcpts == 0)
		return s->rcpts_rejected > 0 ? "554 5.5.1 Error: no valid recipients"
					     : "503 5.5.1 Error: need RCPT command";
	return NULL;
}

static void cmd_data(struct smtp_session *s, const char *arg)
{
	const char *refusal;

	if (*arg != '\0') {
		session_reply(s, "501 5.5.4 Syntax: DATA");
		session_count_error(s);
		return;
	}
	if (s->bdat_used) {
		session_reply(s, "503 5.5.1 Error: DATA after BDAT");
		session_count_error(s);
		return;
	}
	refusal = session_txn_refusal(s);
	if (refusal != NULL) {
		session_reply(s, "%s", refusal);
		session_count_error(s);
		return;
	}
	if (session_open_message(s) < 0) {
		session_reply(s, "451 4.3.0 Error: queue file write error");
		return;
	}
	smtp_data_init(&s->dec, true, s->cfg->bare_newline, s->cfg->max_line_length);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	s->state = SESSION_DATA;
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_data, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
}

static void session_commit_done(void *arg, int error)
{
	struct session_async *a = arg;
	struct smtp_session *s = a->session;
	char id[QUEUE_ID_LEN + 1];

	memcpy(id, a->env->id, sizeof(id));
	if (error == 0) {
		log_info("accept queue_id=%s session=%llu client=%s from=<%s> rcpts=%zu size=%llu",
			 id, s ? (unsigned long long)s->id : 0ULL, a->env->client_addr, a->env->sender,
			 a->env->nrcpts, (unsigned long long)a->env->size);
		a->pt->stats.messages_accepted++;
		/* A quarantined envelope is committed held: queue_add keeps it on hold. */
		queue_add(a->pt->queue, a->env);
		if (a->hold) {
			log_info("quarantine queue_id=%s held for the operator", id);
			if (a->verdict != NULL)
				quarantine_record(a->pt, a->env, content_category_name(a->verdict->category),
						  a->verdict->reasons, a->verdict->score, a->verdict->scl);
		}
	} else {
		log_error("spool queue_id=%s: commit failed: %s", id, strerror(error));
		envelope_free(a->env);
	}
	free(a->verdict);
	free(a);
	if (s == NULL)
		return;
	s->async = NULL;
	s->state = SESSION_COMMAND;
	s->messages++;
	if (error == 0)
		session_reply(s, "250 2.0.0 Ok: queued as %s", id);
	else
		session_reply(s, "451 4.3.0 Error: queue file write error");
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

/* The Subject header, unfolded, from the captured header block. */
static char *session_find_subject(const struct strbuf *h)
{
	struct strbuf out;
	const char *p = h->data, *end = h->data + h->len;

	while (p != NULL && p < end) {
		if ((size_t)(end - p) > 8 && strncasecmp(p, "Subject:", 8) == 0) {
			strbuf_init(&out, 4096);
			for (p += 8; p < end; p++) {
				if (*p == '\r' || *p == '\n') {
					if (p + 2 < end && *p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
						p++;
						continue;
					}
					break;
				}
				strbuf_append(&out, p, 1);
			}
			return strbuf_detach(&out, NULL);
		}
		p = memchr(p, '\n', (size_t)(end - p));
		if (p != NULL)
			p++;
	}
	return NULL;
}

/*
 * Mail from a [perimeter] relay: from here to the end of the transaction
 * the engines judge the first Received hop outside the relays (and its
 * HELO), as inbound mail unless that host is trusted itself. When every
 * hop is trusted the message came from inside: nothing to judge.
 */
static void session_judge_perimeter_hop(struct smtp_session *s)
{
	struct policy_facts *f = &s->facts;
	struct sockaddr_storage hop;
	char helo[256] = "";
	const void *a;

	if (perimeter_find_client(s->headers.data, s->headers.len, &s->cfg->perimeter_relays, &hop, helo,
				  sizeof(helo)) != 1) {
		log_debug("perimeter session=%llu relay=%s: every Received hop is trusted",
			  (unsigned long long)s->id, s->client_addr);
		return;
	}
	a = hop.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&hop)->sin_addr
				     : (const void *)&((struct sockaddr_in6 *)&hop)->sin6_addr;
	memcpy(&f->client, &hop, sizeof(f->client));
	inet_ntop(hop.ss_family, a, f->client_addr, sizeof(f->client_addr));
	f->hop_helo = helo[0] ? xstrdup(helo) : NULL;
	f->perimeter_hop = true;
	if (s->auth_user == NULL &&
	    !cidr_list_contains(&s->cfg->trusted_networks, (const struct sockaddr *)&hop))
		f->direction = POLICY_DIR_INBOUND;
	log_info("perimeter session=%llu relay=%s client=%s helo=%s", (unsigned long long)s->id,
		 s->client_addr, f->client_addr, helo[0] ? helo : "-");
}

/* The whole message is in: check what the decoder saw, then the DATA stage. */
static void session_end_of_message(struct smtp_session *s)
{
	const char *refusal = NULL;

	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_command, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
	s->state = SESSION_COMMAND;
	s->pt->stats.bytes_received += s->data_size;
	if (s->data_too_big)
		refusal = "552 5.3.4 Message size exceeds fixed limit";
	else if (s->dec.line_too_long)
		refusal = "554 5.6.0 Message line too long";
	else if (s->dec.bare_newline_seen && s->cfg->bare_newline == BARE_NEWLINE_REJECT)
		refusal = "554 5.5.2 Message contains bare CR or LF characters";
	if (refusal != NULL) {
		struct policy_result res = { .verdict = POLICY_REJECT };

		snprintf(res.reply, sizeof(res.reply), "%s", refusal);
		session_pending_start(s, PENDING_DATA);
		session_stage_finish(s, &res);
		return;
	}
	s->subject = s->headers.len ? session_find_subject(&s->headers) : NULL;
	s->facts.subject = s->subject;
	s->facts.headers = s->headers.data;
	s->facts.headers_len = s->headers.len;
	if (s->facts.via_perimeter)
		session_judge_perimeter_hop(s);
	session_pending_start(s, PENDING_DATA);
	session_run_stage(s, POLICY_STAGE_DATA);
}

/* Refused at the end of DATA: nothing of the message is kept. */
static void session_refuse_message(struct smtp_session *s, const char *reply)
{
	s->pt->stats.messages_rejected++;
	log_info("reject session=%llu client=%s from=<%s> size=%llu reply=\"%s\"",
		 (unsigned long long)s->id, s->client_addr, s->env->sender,
		 (unsigned long long)s->data_size, reply);
	session_reply(s, "%s", reply);
	session_txn_reset(s);
}

/* Make the message durable; the 250 comes when the group commit is done. */
static void session_commit_message(struct smtp_session *s, bool hold)
{
	struct session_async *a;

	s->env->size = spool_writer_size(s->writer);
	a = xcalloc(1, sizeof(*a));
	a->session = s;
	a->pt = s->pt;
	a->hold = hold;
	a->env = s->env;
	/* The hold is part of the commit, so no crash can deliver a quarantined message. */
	a->env->held = hold;
	s->env = NULL;
	s->async = a;
	s->state = SESSION_WAITING;
	bufferevent_disable(s->bev, EV_READ);
	spool_commit(s->pt->spool, s->writer, a->env, session_commit_done, a);
	s->writer = NULL;
	session_txn_reset(s);
}

/* Up to max bytes of the message written so far, read back from the spool; NULL on error. */
static unsigned char *session_read_back(struct smtp_session *s, size_t max, size_t *len)
{
	int fd = spool_writer_open_read(s->writer);
	unsigned char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = xmalloc(max + 1);
	n = io_pread_full(fd, buf, max, 0);
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

/* The header line naming the signatures a message was scanned with; NULL without a scan. */
static const char *session_virus_header(const char *virus, char *buf, size_t len)
{
	if (virus == NULL)
		return NULL;
	snprintf(buf, len, "X-Postern-Virus-Scanned: %s", virus);
	return buf;
}

/* The status header's word for a tagged verdict: the spam level when scoring tagged it. */
static const char *session_mark_status(const struct content_verdict *v)
{
	if (v->category == CATEGORY_SPAM && v->level == SPAM_LEVEL_SPAM)
		return "spam";
	if (v->category == CATEGORY_SPAM && v->level == SPAM_LEVEL_SUSPECTED)
		return "suspected-spam";
	return "tagged";
}

/*
 * Marks go in as envelope edits: the spool file stays as received, so DKIM
 * signatures of untouched parts survive. A tagged message gets the status,
 * SCL and reasons (and spam or suspected spam its level's subject tag);
 * mail at the store threshold gets the junk header (and goes to the Junk
 * folder of local users); every message the virus engine looked at gets
 * the signature version it was scanned with, in one block with the others
 * (virus may be NULL).
 */
static void session_mark_message(struct smtp_session *s, const struct content_verdict *v,
				 const struct content_marks *marks, bool tagged, const char *virus)
{
	static const struct marks_options version_only = { .add_headers = true };
	bool suspected = v->category == CATEGORY_SPAM && v->level == SPAM_LEVEL_SUSPECTED;
	struct marks_options o = !tagged ? version_only : suspected ? marks->suspected : marks->spam;
	char extra[VIRUS_VERSION_MAX + 160];
	const char *virus_line;
	size_t n;
	unsigned char *head;

	s->env->junk = v->junk;
	if (!tagged && virus == NULL && !v->junk)
		return;
	head = session_read_back(s, SESSION_HEADERS_MAX + 4096, &n);
	if (head == NULL)
		return;
	if (!tagged || v->category != CATEGORY_SPAM)
		o.subject_tag = NULL;
	virus_line = session_virus_header(virus, extra, sizeof(extra));
	if (v->junk) {
		size_t used = virus_line != NULL ? strlen(virus_line) : 0;

		if (virus_line == NULL)
			extra[0] = '\0';
		snprintf(extra + used, sizeof(extra) - used, "%s%s: yes", used ? "\r\n" : "", marks->junk_header);
		virus_line = extra;
	}
	if (marks_apply(s->env, head, n, &o, tagged ? session_mark_status(v) : NULL, tagged ? v->scl : -1,
			tagged ? v->reasons : NULL, virus_line) < 0)
		log_warn("content session=%llu: cannot add the marks", (unsigned long long)s->id);
	free(head);
}

/*
 * The virus "clean" action: the infected parts become notes (envelope
 * edits over the whole spooled message); false when the message cannot be
 * cleaned with certainty and must be quarantined instead.
 */
static bool session_clean_message(struct smtp_session *s, const struct content_result *r,
				  const char *virus)
{
	char why[512] = "cannot read the message back";
	char extra[VIRUS_VERSION_MAX + 64];
	size_t n;
	unsigned char *raw = session_read_back(s, (size_t)spool_writer_size(s->writer), &n);
	int rc = -1;

	if (raw != NULL && n == spool_writer_size(s->writer))
		rc = content_clean_parts(s->env, raw, n, r, session_virus_header(virus, extra, sizeof(extra)),
					 why, sizeof(why));
	free(raw);
	if (rc < 0)
		log_warn("content session=%llu: cannot clean, quarantined: %s", (unsigned long long)s->id, why);
	else
		log_info("clean session=%llu queue_id=%s %s", (unsigned long long)s->id, s->env->id, why);
	return rc == 0;
}

/* The content stage's verdict decides the final reply. */
static void session_content_done(void *arg, const struct content_result *r,
				 const struct content_marks *marks)
{
	struct smtp_session *s = arg;
	const struct content_verdict *v = &r->verdict;
	char reply[POLICY_REPLY_MAX];
	char version[VIRUS_VERSION_MAX];
	const char *virus = NULL;

	s->cjob = NULL;
	s->state = SESSION_COMMAND;
	if (content_result_virus_version(r, version, sizeof(version)))
		virus = version;
	log_info("content session=%llu client=%s from=<%s> action=%s category=%s score=%.1f scl=%d level=%s junk=%s virus=\"%s\" reasons=\"%s\"",
		 (unsigned long long)s->id, s->client_addr, s->env->sender, content_action_name(v->action),
		 content_category_name(v->category), v->score, v->scl, spam_level_name(v->level),
		 v->junk ? "yes" : "no", virus != NULL ? virus : "off", v->reasons);
	if (r->auth_results != NULL && v->action != CONTENT_REJECT && v->action != CONTENT_DEFER &&
	    auth_results_add_edit(s->env, r->auth_results) < 0)
		log_warn("content session=%llu: cannot add Authentication-Results", (unsigned long long)s->id);
	switch (v->action) {
	case CONTENT_REJECT:
	case CONTENT_DEFER:
		content_verdict_reply(v, reply, sizeof(reply));
		session_refuse_message(s, reply);
		break;
	case CONTENT_DROP:
		/* Accepted as far as the sender can tell, and never delivered. */
		log_info("drop session=%llu queue_id=%s", (unsigned long long)s->id, s->env->id);
		session_reply(s, "250 2.0.0 Ok: queued as %s", s->env->id);
		s->messages++;
		session_txn_reset(s);
		break;
	case CONTENT_CLEAN:
	case CONTENT_QUARANTINE:
		/* What cannot be cleaned with certainty is quarantined. */
		if (v->action == CONTENT_CLEAN && session_clean_message(s, r, virus)) {
			session_commit_message(s, false);
			break;
		}
		session_mark_message(s, v, marks, false, virus);
		session_commit_message(s, true);
		s->async->verdict = xmalloc(sizeof(*v));
		*s->async->verdict = *v;
		break;
	case CONTENT_TAG:
	case CONTENT_NONE:
		session_mark_message(s, v, marks, v->action == CONTENT_TAG, virus);
		session_commit_message(s, false);
		break;
	}
	session_resume(s);
}

/*
 * A Received-SPF header from the DATA stage (the perimeter hop's SPF
 * check) comes too late for the spool file: it goes on top of the message
 * as an envelope edit, above our Received as RFC 7208 9.1 asks.
 */
static void session_add_late_spf_header(struct smtp_session *s)
{
	struct strbuf sb;

	strbuf_init(&sb, ENVELOPE_EDIT_INSERT_MAX);
	if (strbuf_appendf(&sb, "%s\r\n", s->facts.received_spf) < 0 ||
	    envelope_add_edit(s->env, 0, 0, sb.data, sb.len) < 0)
		log_warn("spf session=%llu: cannot add the Received-SPF header", (unsigned long long)s->id);
	strbuf_free(&sb);
	free(s->spf_header);
	s->spf_header = s->facts.received_spf;
	s->facts.received_spf = NULL;
}

/* The DATA stage answered: refuse the message, or scan it, or make it durable. */
static void session_data_finish(struct smtp_session *s, const struct policy_result *res)
{
	int fd;

	if (session_refused(res)) {
		session_refuse_message(s, res->reply);
		return;
	}
	if (s->facts.received_spf != NULL)
		session_add_late_spf_header(s);
	if (s->pt->content == NULL) {
		session_commit_message(s, false);
		return;
	}
	fd = spool_writer_open_read(s->writer);
	if (fd < 0) {
		log_error("spool session=%llu: cannot read the message back: %s", (unsigned long long)s->id,
			  strerror(errno));
		session_refuse_message(s, "451 4.3.0 Error: queue file read error");
		return;
	}
	s->cjob = content_stage_scan_facts(s->pt, fd, spool_writer_size(s->writer),
					   &(struct content_scan_facts){ s->env->id, s->env->sender, s->helo,
									 s->spf_header, s->client_addr,
									 &s->symbols },
					   session_content_done, s);
	s->state = SESSION_WAITING;
	bufferevent_disable(s->bev, EV_READ);
}

/* Feed DATA bytes to the decoder until the end marker or the buffer is empty. */
static void session_read_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[8];
	int n;

	while (s->state == SESSION_DATA && (n = evbuffer_peek(in, -1, NULL, vec, 8)) > 0) {
		size_t consumed = 0;

		for (int i = 0; i < n && i < 8 && s->dec.state != SMTP_DATA_DONE; i++)
			consumed += smtp_data_feed(&s->dec, vec[i].iov_base, vec[i].iov_len, session_emit, s);
		evbuffer_drain(in, consumed);
		if (s->dec.state == SMTP_DATA_DONE)
			session_end_of_message(s);
	}
}

static void cmd_bdat(struct smtp_session *s, const char *arg)
{
	struct smtp_error e;
	uint64_t size;
	bool last;

	if (smtp_parse_bdat(arg, &size, &last, &e) < 0) {
		session_reply_error(s, &e);
		session_count_error(s);
		return;
	}
	s->bdat_remaining = size;
	s->bdat_last = last;
	s->state = SESSION_BDAT;
	if (!s->bdat_used) {
		s->bdat_used = true;
		s->bdat_error = session_txn_refusal(s);
		if (s->bdat_error == NULL && session_open_message(s) < 0)
			s->bdat_error = "451 4.3.0 Error: queue file write error";
		if (s->bdat_error == NULL)
			smtp_data_init(&s->dec, false, s->cfg->bare_newline, s->cfg->max_line_length);
	}
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_data, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
}

/* A BDAT chunk has been read: acknowledge it or finish the message. */
static void session_bdat_chunk_done(struct smtp_session *s, uint64_t size)
{
	s->state = SESSION_COMMAND;
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_command, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
	if (s->bdat_error != NULL) {
		/* Every chunk of a failed transaction gets the reason; LAST ends it. */
		session_reply(s, "%s", s->bdat_error);
		if (s->bdat_last) {
			session_txn_reset(s);
			session_count_error(s);
		}
		return;
	}
	if (!s->bdat_last) {
		session_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)size);
		return;
	}
	smtp_data_finish(&s->dec, session_emit, s);
	session_end_of_message(s);
}

static void session_read_bdat(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[8];
	uint64_t chunk = s->bdat_remaining;

	while (s->bdat_remaining > 0) {
		int n = evbuffer_peek(in, (ev_ssize_t)(s->bdat_remaining < SSIZE_MAX ? s->bdat_remaining : SSIZE_MAX),
				      NULL, vec, 8);
		size_t got = 0;

		if (n <= 0)
			return;
		for (int i = 0; i < n && i < 8; i++) {
			size_t len = vec[i].iov_len;
			if (len > s->bdat_remaining - got)
				len = (size_t)(s->bdat_remaining - got);
			if (s->bdat_error == NULL)
				smtp_data_feed(&s->dec, vec[i].iov_base, len, session_emit, s);
			got += len;
		}
		evbuffer_drain(in, got);
		s->bdat_remaining -= got;
	}
	session_bdat_chunk_done(s, chunk);
}

/* ---- the rest ---------------------------------------------------------- */

static void session_command(struct smtp_session *s, char *line, size_t len)
{
	struct smtp_command cmd;
	struct smtp_error e;

	if (smtp_parse_command(line, len, &cmd, &e) < 0) {
		session_reply_error(s, &e);
		session_count_error(s);
		return;
	}
	switch (cmd.verb) {
	case SMTP_VERB_EHLO:
		cmd_helo(s, cmd.arg, true);
		break;
	case SMTP_VERB_HELO:
		cmd_helo(s, cmd.arg, false);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, cmd.arg);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, cmd.arg);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s, cmd.arg);
		break;
	case SMTP_VERB_BDAT:
		cmd_bdat(s, cmd.arg);
		break;
	case SMTP_VERB_RSET:
		session_txn_reset(s);
		session_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		session_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		session_reply(s, "221 2.0.0 Bye");
		session_close_after_flush(s);
		break;
	case SMTP_VERB_HELP:
		session_reply(s, "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH");
		break;
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		if ((cmd.verb == SMTP_VERB_VRFY && s->cfg->vrfy) || (cmd.verb == SMTP_VERB_EXPN && s->cfg->expn))
			session_reply(s, "252 2.5.0 Cannot verify the user, but will accept the message");
		else
			session_reply(s, "502 5.5.1 Error: command disabled");
		break;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(s, cmd.arg);
		break;
	case SMTP_VERB_AUTH:
		cmd_auth(s, cmd.arg);
		break;
	case SMTP_VERB_UNKNOWN:
		session_reply(s, "500 5.5.2 Error: command not recognized");
		session_count_error(s);
		break;
	}
}

/*
 * Read one command line. Returns false when no complete line is buffered.
 * An over-long line is skipped to its end and answered once.
 */
static bool session_read_line(struct smtp_session *s, struct evbuffer *in)
{
	size_t eol_len = 0;
	struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	size_t avail = evbuffer_get_length(in);
	char *line;

	if (p.pos < 0) {
		if (avail > s->cfg->max_command_length) {
			evbuffer_drain(in, avail);
			s->discarding_line = true;
		}
		return false;
	}
	if (s->discarding_line || (size_t)p.pos > s->cfg->max_command_length) {
		evbuffer_drain(in, (size_t)p.pos + eol_len);
		s->discarding_line = false;
		session_reply(s, "500 5.5.2 Error: line too long");
		session_count_error(s);
		return true;
	}
	line = xmalloc((size_t)p.pos + 1);
	evbuffer_remove(in, line, (size_t)p.pos);
	line[p.pos] = '\0';
	evbuffer_drain(in, eol_len);
	if (s->state == SESSION_COMMAND)
		session_command(s, line, (size_t)p.pos);
	else
		session_auth_line(s, line);
	explicit_bzero(line, (size_t)p.pos);
	free(line);
	return true;
}

/* Process buffered input until it runs out or the session has to wait. */
static void session_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	for (;;) {
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SESSION_OUTPUT_HIGH) {
			/* The client does not read its replies: wait until it does. */
			bufferevent_disable(s->bev, EV_READ);
			bufferevent_setwatermark(s->bev, EV_WRITE, SESSION_OUTPUT_HIGH / 2, 0);
			return;
		}
		switch (s->state) {
		case SESSION_COMMAND:
		case SESSION_AUTH_PLAIN:
		case SESSION_AUTH_LOGIN_USER:
		case SESSION_AUTH_LOGIN_PASS:
			if (!session_read_line(s, in))
				return;
			break;
		case SESSION_DATA:
			session_read_data(s, in);
			if (s->state == SESSION_DATA)
				return;
			break;
		case SESSION_BDAT:
			session_read_bdat(s, in);
			if (s->state == SESSION_BDAT)
				return;
			break;
		case SESSION_PREGREET:
			if (evbuffer_get_length(in) > 0)
				session_pregreet_violation(s);
			return;
		case SESSION_CLOSING:
		case SESSION_STARTTLS:
		case SESSION_WAITING:
		case SESSION_TLS_HANDSHAKE:
			return;
		}
	}
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	switch (s->state) {
	case SESSION_CLOSING:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			session_free(s);
		return;
	case SESSION_STARTTLS:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && session_start_tls(s) < 0) {
			log_error("tls session=%llu client=%s: cannot start TLS", (unsigned long long)s->id,
				  s->client_addr);
			session_free(s);
		}
		return;
	default:
		/* Output drained below the mark after a pause: resume reading. */
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (s->state != SESSION_WAITING) {
			bufferevent_enable(bev, EV_READ);
			session_process(s);
		}
	}
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SESSION_TLS_HANDSHAKE) {
			session_tls_established(s);
			session_process(s);
		}
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state != SESSION_CLOSING && s->state != SESSION_TLS_HANDSHAKE) {
		log_info("timeout session=%llu client=%s state=%d", (unsigned long long)s->id,
			 s->client_addr, (int)s->state);
		session_fatal(s, "421 4.4.2 Error: timeout exceeded");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		if (e != 0) {
			char buf[256];
			ERR_error_string_n(e, buf, sizeof(buf));
			log_info("tls session=%llu client=%s error=\"%s\"", (unsigned long long)s->id,
				 s->client_addr, buf);
		}
	}
	if (s->async != NULL && s->state == SESSION_WAITING) {
		/* The commit finishes without us; the message is queued anyway. */
		log_info("lost session=%llu client=%s while waiting", (unsigned long long)s->id, s->client_addr);
	}
	session_free(s);
}

void smtp_session_shutdown(struct smtp_session *s)
{
	if (s->state != SESSION_TLS_HANDSHAKE && s->state != SESSION_CLOSING) {
		session_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
	}
	session_free(s);
}

/* What the policy engines know from the start: who is calling, and which way the mail goes. */
static void session_facts_init(struct smtp_session *s)
{
	struct policy_facts *f = &s->facts;

	memcpy(&f->client, &s->client_sa, sizeof(f->client));
	f->client_len = sizeof(f->client);
	memcpy(f->client_addr, s->client_addr, sizeof(f->client_addr));
	memcpy(f->conn_addr, s->client_addr, sizeof(f->conn_addr));
	f->via_perimeter = cidr_list_contains(&s->cfg->perimeter_relays,
					      (const struct sockaddr *)&s->client_sa);
	f->direction = session_may_relay(s) ? POLICY_DIR_OUTBOUND : POLICY_DIR_INBOUND;
	f->symbols = &s->symbols;
	if (s->pt->policy != NULL)
		s->policy = policy_ref(s->pt->policy);
}

static void session_describe_peer(struct smtp_session *s, const struct sockaddr *sa, socklen_t salen)
{
	memcpy(&s->client_sa, sa, salen < sizeof(s->client_sa) ? salen : sizeof(s->client_sa));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, s->client_addr, sizeof(s->client_addr));
		s->client_port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, s->client_addr, sizeof(s->client_addr));
		s->client_port = ntohs(sin6->sin6_port);
	} else {
		snprintf(s->client_addr, sizeof(s->client_addr), "unknown");
	}
}

void smtp_session_start(struct postern *pt, evutil_socket_t fd, const struct sockaddr *sa,
			socklen_t salen, enum listen_kind kind)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->txn_symbols = SIZE_MAX;
	s->pt = pt;
	s->cfg = config_ref(pt->cfg);
	s->fd = fd;
	s->kind = kind;
	s->id = ++pt->stats.sessions_total;
	s->started = time(NULL);
	session_describe_peer(s, sa, salen);
	pt->stats.sessions_current++;
	smtp_server_session_added(pt->smtp, s);
	log_info("connect session=%llu client=%s port=%u listener=%s", (unsigned long long)s->id,
		 s->client_addr, s->client_port,
		 kind == LISTEN_SMTPS ? "smtps" : kind == LISTEN_SUBMISSION ? "submission" : "smtp");

	/* Replies are batched per read already; never wait for a delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	s->bev = bufferevent_socket_new(pt->base, fd, 0);
	if (s->bev == NULL) {
		session_free(s);
		return;
	}
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_INPUT_HIGH);
	bufferevent_set_timeouts(s->bev, &(struct timeval){ s->cfg->timeout_command, 0 },
				 &(struct timeval){ s->cfg->timeout_command, 0 });
	bufferevent_enable(s->bev, EV_WRITE);
	session_facts_init(s);
	s->state = SESSION_WAITING;
	session_pending_start(s, PENDING_CONNECT);
	session_run_stage(s, POLICY_STAGE_CONNECT);
}
