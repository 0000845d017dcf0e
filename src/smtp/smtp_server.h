/*
 * The inbound side: listeners (bound before privileges are dropped) and
 * the set of live sessions.
 */
#ifndef POSTERN_SMTP_SERVER_H
#define POSTERN_SMTP_SERVER_H

#include <stddef.h>

#include "core/config.h"

struct postern;
struct smtp_server;
struct smtp_session;

struct smtp_server *smtp_server_new(struct postern *pt, char *err, size_t errlen);
/* Start accepting (after privileges are dropped and the queue is up). */
void smtp_server_enable(struct smtp_server *srv);
/* Stop accepting and close every session; used at shutdown. */
void smtp_server_free(struct smtp_server *srv);

/* Session bookkeeping used by smtp_session.c. */
void smtp_server_session_added(struct smtp_server *srv, struct smtp_session *s);
void smtp_server_session_removed(struct smtp_server *srv, struct smtp_session *s);

#endif
