/*
 * Listeners and the session list. Sockets are bound while still root and
 * stay disabled until the rest of the gateway is ready, so no client is
 * accepted before the spool and the queue can take its mail.
 */
#include "smtp/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "core/alloc.h"
#include "core/context.h"
#include "smtp/smtp_session.h"

#define LOG_MODULE "smtp"
#include "core/log.h"

#define LISTEN_BACKLOG 4096

struct smtp_listener {
	struct smtp_server *srv;
	struct evconnlistener *lev;
	struct event *resume;          /* re-enable after running out of descriptors */
	enum listen_kind kind;
	char name[80];
};

struct smtp_server {
	struct postern *pt;
	struct smtp_listener *listeners;
	size_t nlisteners;
	struct smtp_session *sessions;
};

/* Refuse politely over max_sessions: the client learns to come back later. */
static void listener_refuse(struct smtp_server *srv, evutil_socket_t fd)
{
	char line[320];
	int n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: too many connections, try again later\r\n",
			 srv->pt->cfg->hostname);

	(void)!send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
	srv->pt->stats.sessions_refused++;
}

static void listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
			       int salen, void *arg)
{
	struct smtp_listener *l = arg;
	struct postern *pt = l->srv->pt;

	if (pt->stats.sessions_current >= pt->cfg->max_sessions) {
		log_warn("refuse listener=%s reason=max_sessions limit=%u", l->name, pt->cfg->max_sessions);
		listener_refuse(l->srv, fd);
		return;
	}
	smtp_session_start(pt, fd, sa, (socklen_t)salen, l->kind);
}

static void listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_listener *l = arg;

	evconnlistener_enable(l->lev);
}

/* accept() failing (EMFILE, ENFILE) must not spin: pause this listener briefly. */
static void listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct smtp_listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();

	log_error("accept listener=%s error=\"%s\"; pausing 1s", l->name, evutil_socket_error_to_string(err));
	evconnlistener_disable(lev);
	event_add(l->resume, &(struct timeval){ 1, 0 });
}

static evutil_socket_t listener_bind(const struct listen_spec *ls, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	evutil_socket_t fd;
	int one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ls->addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(ls->port);
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, ls->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(ls->port);
		len = sizeof(struct sockaddr_in6);
	} else {
		snprintf(err, errlen, "listen %s:%u: not an IP address", ls->addr, ls->port);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listen %s:%u: socket: %s", ls->addr, ls->port, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "listen %s:%u: %s", ls->addr, ls->port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct smtp_server *smtp_server_new(struct postern *pt, char *err, size_t errlen)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	const struct config *cfg = pt->cfg;

	srv->pt = pt;
	srv->listeners = xcalloc(cfg->nlistens, sizeof(*srv->listeners));
	for (size_t i = 0; i < cfg->nlistens; i++) {
		const struct listen_spec *ls = &cfg->listens[i];
		struct smtp_listener *l = &srv->listeners[i];
		evutil_socket_t fd = listener_bind(ls, err, errlen);

		if (fd < 0)
			goto fail;
		l->srv = srv;
		l->kind = ls->kind;
		snprintf(l->name, sizeof(l->name), "%s:%u", ls->addr, ls->port);
		l->lev = evconnlistener_new(pt->base, listener_accept_cb, l,
					    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1, fd);
		if (l->lev == NULL) {
			snprintf(err, errlen, "listen %s: cannot create listener", l->name);
			close(fd);
			goto fail;
		}
		evconnlistener_set_error_cb(l->lev, listener_error_cb);
		l->resume = evtimer_new(pt->base, listener_resume_cb, l);
		srv->nlisteners++;
	}
	return srv;
fail:
	smtp_server_free(srv);
	return NULL;
}

void smtp_server_enable(struct smtp_server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_enable(srv->listeners[i].lev);
		log_info("listening on %s (%s)", srv->listeners[i].name,
			 srv->listeners[i].kind == LISTEN_SMTPS ? "smtps" :
			 srv->listeners[i].kind == LISTEN_SUBMISSION ? "submission" : "smtp");
	}
}

void smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i].lev);
		event_free(srv->listeners[i].resume);
	}
	while (srv->sessions != NULL)
		smtp_session_shutdown(srv->sessions);
	free(srv->listeners);
	free(srv);
}

void smtp_server_session_added(struct smtp_server *srv, struct smtp_session *s)
{
	*smtp_session_prev_link(s) = NULL;
	*smtp_session_next_link(s) = srv->sessions;
	if (srv->sessions != NULL)
		*smtp_session_prev_link(srv->sessions) = s;
	srv->sessions = s;
}

void smtp_server_session_removed(struct smtp_server *srv, struct smtp_session *s)
{
	struct smtp_session *next = *smtp_session_next_link(s);
	struct smtp_session *prev = *smtp_session_prev_link(s);

	if (prev != NULL)
		*smtp_session_next_link(prev) = next;
	else
		srv->sessions = next;
	if (next != NULL)
		*smtp_session_prev_link(next) = prev;
}
