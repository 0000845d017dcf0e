/*
 * One inbound SMTP session: the RFC 5321 state machine with ESMTP
 * extensions, driven by a bufferevent. Sessions hold their own reference
 * to the config they started with, so a reload never changes the rules in
 * the middle of a transaction.
 */
#ifndef POSTERN_SMTP_SESSION_H
#define POSTERN_SMTP_SESSION_H

#include <event2/util.h>
#include <sys/socket.h>

#include "core/config.h"

struct postern;
struct smtp_session;

/* Take over an accepted connection. */
void smtp_session_start(struct postern *pt, evutil_socket_t fd, const struct sockaddr *sa,
			socklen_t salen, enum listen_kind kind);
/* Close at shutdown: "421 shutting down" and free. */
void smtp_session_shutdown(struct smtp_session *s);

/* Intrusive list links owned by smtp_server.c. */
struct smtp_session **smtp_session_next_link(struct smtp_session *s);
struct smtp_session **smtp_session_prev_link(struct smtp_session *s);

#endif
