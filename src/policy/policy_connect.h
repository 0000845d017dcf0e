/*
 * What the connect-stage engines (policy_iplist.c, policy_connlimit.c,
 * policy_dnsbl.c, policy_perimeter.c) offer beyond their constructors:
 * the perimeter's Received parser, which the session calls at DATA, and
 * a test hook for the connection-rate table's clock.
 */
#ifndef POSTERN_POLICY_CONNECT_H
#define POSTERN_POLICY_CONNECT_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/cidr.h"
#include "core/config.h"
#include "policy/ratelimit.h"

struct policy_state;

/* Cap on the Received headers perimeter_find_client looks at. */
#define PERIMETER_MAX_HOPS 64

/*
 * The first client outside the trusted relays, walking the Received
 * headers of a header block top-down: the newest hop was written by our
 * own client (a trusted relay), so each hop is believed only while the
 * host it names is itself in relays. A hop without a client address (a
 * local pickup such as "from mail@localhost") was written by the trusted
 * host itself and is skipped. Understands Postfix/Sendmail "(name
 * [1.2.3.4])", Exim "([1.2.3.4]:port helo=x)" and "[1.2.3.4]", IPv6
 * "[IPv6:2001:db8::1]", Exchange and qmail "(1.2.3.4)".
 * 1 with *out set, 0 when every hop is trusted or none can be read. With
 * helo (may be NULL), also the name that client gave in HELO as its relay
 * recorded it ("" when the hop does not show one it can be trusted with).
 */
int perimeter_find_client(const char *headers, size_t len, const struct cidr_list *relays,
			  struct sockaddr_storage *out, char *helo, size_t helolen);

/*
 * For tests: (re)create the connection-rate table of st from cfg's
 * [connlimit] settings with this clock, so bans can accumulate and decay
 * without sleeping. policy_connlimit_build keeps it since its parameters
 * match. -1 with err when cfg has no rate or unusable settings.
 */
int policy_connlimit_use_clock(struct policy_state *st, const struct config *cfg,
			       ratelimit_clock_fn clock, void *clock_arg, char *err, size_t errlen);

#endif
