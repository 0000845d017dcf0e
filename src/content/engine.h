/*
 * The content stage's engine model (Rspamd-like symbols): every engine
 * looks at one parsed message and adds results — a symbol with a score, a
 * human reason, and optionally an action it demands (a virus: reject).
 * The content pipeline runs all engines for one message on one worker
 * thread, so check() must be thread-safe with respect to the engine's
 * shared state (signature databases, rule sets) and must not block on the
 * network without a bound.
 */
#ifndef POSTERN_CONTENT_ENGINE_H
#define POSTERN_CONTENT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

struct envelope;
struct mime_message;

enum content_action {
	CONTENT_NONE = 0,         /* only a score */
	CONTENT_TAG,              /* accept, mark headers/subject */
	CONTENT_QUARANTINE,
	CONTENT_REJECT,           /* 5xx */
	CONTENT_DROP,             /* accept and discard */
	CONTENT_DEFER,            /* 4xx */
	CONTENT_CLEAN,            /* virus: remove infected parts, deliver the rest */
};

enum content_category {
	CATEGORY_NONE = 0,
	CATEGORY_VIRUS,
	CATEGORY_SPAM,
	CATEGORY_RULE,
	CATEGORY_DYNAMIC,
};

#define ENGINE_SYMBOL_MAX 64
#define ENGINE_REASON_MAX 256
#define ENGINE_REPLY_MAX 256

struct engine_result {
	char engine[32];                       /* "virus", "rules", "bayes" */
	char symbol[ENGINE_SYMBOL_MAX];        /* "VIRUS_FOUND", "RULE_EXE_ATTACHMENT" */
	double score;
	enum content_category category;
	enum content_action action;            /* CONTENT_NONE: score only */
	char reason[ENGINE_REASON_MAX];        /* "Eicar-Signature in part 2 (eicar.com)" */
	int part_index;                        /* -1: whole message */
	char reply[ENGINE_REPLY_MAX];          /* SMTP reply text for reject/defer; "": the default */
};

struct engine_results {
	struct engine_result *items;
	size_t count;
	size_t cap;
};

/*
 * What the SMTP session knows of one message's authentication that the
 * engines need (DMARC uses the SPF result), and where the "dkim" engine
 * leaves the Authentication-Results field for the session to add. Owned
 * by one scan, so check() may write auth_results.
 */
struct content_auth {
	const char *received_spf;              /* our "Received-SPF: ..." field, NULL: SPF not checked */
	const char *mailfrom;                  /* envelope sender, "" for <> */
	const char *helo;                      /* client HELO/EHLO name, or NULL */
	const char *client_addr;               /* the client's IP address as text, or NULL */
	const struct engine_results *policy;   /* the connection and protocol stages' symbols, or NULL:
						  copied into the run's results before any engine runs */
	char *auth_results;                    /* out: "Authentication-Results: ...\r\n" (xmalloc) or NULL */
};

/* What every engine sees. env and auth are NULL in `postern scan`. */
struct content_message {
	const struct envelope *env;
	const unsigned char *raw;              /* the whole message */
	size_t raw_len;
	struct mime_message *mime;             /* parsed tree, see content/mime.h */
	struct content_auth *auth;
};

/*
 * One engine of the content pipeline. check() adds its results to `out`
 * (engine_results_add) and must be thread-safe with respect to `state`;
 * free() releases `state`. A pipeline owns the engines added to it and,
 * when freed, calls free(state) and then free() on the struct itself, so
 * an engine's create function returns it from xmalloc/xcalloc.
 */
struct content_engine {
	const char *name;
	void *state;
	void (*check)(void *state, const struct content_message *m, struct engine_results *out);
	void (*free)(void *state);
};

/* A zeroed result (part_index -1) with engine and symbol set, appended to r. */
struct engine_result *engine_results_add(struct engine_results *r, const char *engine, const char *symbol);
void engine_results_free(struct engine_results *r);
/* Append a copy of every result of src to dst. */
void engine_results_append_all(struct engine_results *dst, const struct engine_results *src);

#endif
