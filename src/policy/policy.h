/*
 * The connect and protocol stages: small engines run in a fixed order at
 * each point of the SMTP dialogue, cheap and decisive ones first.
 *
 *   CONNECT  before the banner: IP lists, concurrency, connection rate,
 *            DNSBL, pregreet
 *   HELO     after HELO/EHLO: HELO sanity, reverse DNS
 *   MAIL     after MAIL FROM: sender lists, RHSBL, SPF, sender rate
 *   RCPT     after each RCPT TO: recipient validation, tarpit, greylisting,
 *            a DNSBL hit deferred to RCPT
 *   DATA     at the end of DATA, before the content stage: subject rate;
 *            for mail through [perimeter] relays, the connection rate,
 *            DNSBL and SPF of the first untrusted Received hop
 *
 * An engine answers PASS (go on), TAG (add a symbol and score, go on),
 * DEFER (4xx), REJECT (5xx), or ACCEPT (an allow list matched: the later
 * legitimacy checks of the session are skipped; the virus scan never is).
 * The first DEFER or REJECT ends the stage. Engines that need the network
 * answer asynchronously; the runner hides the difference from the session.
 *
 * Engine state that must outlive a reload (rate tables, bans, caches,
 * the greylist database) lives in struct policy_state, owned by the
 * gateway; struct policy (the engine list built from one config) is
 * rebuilt on every reload and reference-counted like the config.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "core/config.h"

struct postern;
struct engine_results;

enum policy_stage {
	POLICY_STAGE_CONNECT = 0,
	POLICY_STAGE_HELO,
	POLICY_STAGE_MAIL,
	POLICY_STAGE_RCPT,
	POLICY_STAGE_DATA,
	POLICY_STAGE_COUNT,
};

enum policy_verdict {
	POLICY_PASS = 0,
	POLICY_TAG,
	POLICY_ACCEPT,
	POLICY_DEFER,
	POLICY_REJECT,
};

#define POLICY_REPLY_MAX 512

struct policy_result {
	enum policy_verdict verdict;
	char reply[POLICY_REPLY_MAX];   /* "550 5.7.1 text" for DEFER/REJECT */
	char engine[32];                /* which engine decided */
	bool disconnect;                /* close the session after the reply */
	unsigned delay_ms;              /* wait this long before replying (tarpit) */
};

/*
 * What the engines know about the session and the transaction. The
 * session owns it and fills it as the dialogue goes; engines read it and
 * add what they learn (reverse DNS name, symbols).
 */
struct policy_facts {
	struct sockaddr_storage client;  /* the judged client (perimeter may replace it) */
	socklen_t client_len;
	char client_addr[INET6_ADDRSTRLEN];
	char conn_addr[INET6_ADDRSTRLEN];  /* the connecting client, whoever is judged */
	bool via_perimeter;              /* the connecting client is one of [perimeter] relays */
	bool perimeter_hop;              /* at DATA: client is the first untrusted Received hop */
	char *hop_helo;                  /* that hop's HELO as its relay recorded it, or NULL */
	enum policy_direction direction; /* INBOUND or OUTBOUND for this session */
	bool allowlisted;                /* an allow list matched: skip legitimacy checks */
	bool tls;
	const char *auth_user;           /* NULL when not authenticated */
	const char *helo;                /* NULL before HELO/EHLO */
	const char *sender;              /* NULL before MAIL; "" for the null sender */
	const char *rcpt;                /* the recipient being judged at RCPT */
	const char *subject;             /* at DATA, unfolded; NULL if none */
	const char *headers;             /* at DATA: the message's header block (bounded) */
	size_t headers_len;
	unsigned rcpts_unknown;          /* recipients refused as unknown so far */
	char *ptr_name;                  /* reverse DNS name once known (engine-owned copy) */
	char dnsbl_reply[POLICY_REPLY_MAX]; /* a DNSBL hit deferred to RCPT; "" when none */
	char *received_spf;              /* "Received-SPF: ..." header to add, or NULL */
	bool conn_slot_held;             /* connlimit counted this session */
	struct engine_results *symbols;  /* scores handed to the content stage */
};

typedef void (*policy_done_cb)(void *arg, const struct policy_result *res);

/*
 * One engine. check() either decides at once (returns 0 with *res filled)
 * or starts asynchronous work (returns 1, stores its handle in *handle, and
 * later calls done(arg, res) exactly once from the event loop unless
 * cancel(state, handle) came first).
 */
struct policy_engine {
	const char *name;
	enum policy_stage stage;
	const struct policy_common *common;  /* enabled, direction, whitelists (in the config) */
	bool legitimacy;                     /* skipped for allow-listed sessions */
	void *state;
	int (*check)(void *state, struct policy_facts *f, struct policy_result *res,
		     policy_done_cb done, void *arg, void **handle);
	void (*cancel)(void *state, void *handle);
	/* Optional: the session ended (release what check() took for it). */
	void (*session_end)(void *state, struct policy_facts *f);
	void (*free)(void *state);
};

struct policy_state;
struct policy;
struct policy_run;

/* State kept across reloads; freed at shutdown. */
struct policy_state *policy_state_new(struct postern *pt);
void policy_state_free(struct policy_state *st);

/* The engines for cfg (NULL with err on a bad setting). */
struct policy *policy_new(struct postern *pt, struct config *cfg, char *err, size_t errlen);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/*
 * Run a stage. Returns 0 with *res filled when every engine answered at
 * once, or 1 when done(arg, res) will be called later (then *run is the
 * handle for policy_run_cancel). facts must stay valid until then.
 */
int policy_run(struct policy *p, enum policy_stage stage, struct policy_facts *f,
	       struct policy_result *res, policy_done_cb done, void *arg, struct policy_run **run);
void policy_run_cancel(struct policy_run *run);

/*
 * Tarpit against directory harvesting, shared by the session (unknown
 * local users) and the recipients engine: the delay before the reply to
 * the next recipient, and whether the session must end.
 */
unsigned policy_tarpit_delay_ms(const struct config *cfg, unsigned rcpts_unknown);
bool policy_harvest_limit_reached(const struct config *cfg, unsigned rcpts_unknown);

/* The session ended: release what engines hold for it (concurrency slots). */
void policy_session_end(struct policy *p, struct policy_facts *f);
void policy_facts_free(struct policy_facts *f);

/* Helpers shared by the engines. */
bool policy_sender_listed(char *const *list, size_t n, const char *sender);
void policy_result_reply(struct policy_result *res, enum policy_action action, const char *engine,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
