/*
 * struct postern: the one context of a running gateway. Everything that
 * would otherwise be global mutable state hangs off it.
 */
#ifndef POSTERN_CONTEXT_H
#define POSTERN_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct config;
struct spool;
struct queue;
struct dns_resolver;
struct tls_context;
struct workpool;
struct smtp_server;
struct admin_server;
struct delivery_smtp;
struct policy;
struct policy_state;
struct content_stage;
struct virus_engine;
struct quarantine;
struct bayes;
struct fuzzy;
struct sender_history;
struct event;

struct postern_stats {
	uint64_t sessions_total;
	uint64_t sessions_current;
	uint64_t sessions_refused;     /* over max_sessions */
	uint64_t messages_accepted;
	uint64_t messages_rejected;
	uint64_t recipients_accepted;
	uint64_t recipients_rejected;
	uint64_t bytes_received;
	uint64_t auth_failures;
	uint64_t reloads;
};

struct postern {
	struct event_base *base;
	struct config *cfg;            /* current; sessions hold their own reference */
	struct spool *spool;
	struct queue *queue;
	struct dns_resolver *dns;
	struct tls_context *tls;
	struct workpool *workers;
	struct smtp_server *smtp;
	struct admin_server *admin;
	struct delivery_smtp *delivery;
	struct policy *policy;         /* current engines; sessions hold their own reference */
	struct policy_state *policy_state; /* counters, bans and caches kept across reloads */
	struct content_stage *content; /* current content pipeline; scans hold their own reference */
	struct virus_engine *virus;    /* signatures stay loaded across config reloads */
	struct event *virus_reload;    /* looks at the signature directory for changes */
	struct quarantine *quarantine; /* held messages' metadata and their expiry */
	struct bayes *bayes;           /* [bayes] token store, open across config reloads */
	struct event *bayes_refresh;   /* looks for other processes' learning every [bayes] reload_check */
	bool bayes_refreshing;         /* a refresh job is in the worker pool */
	struct fuzzy *fuzzy;           /* [fuzzy] store of spam signatures, open across reloads */
	struct sender_history *history; /* [history] per-sender counts, open across reloads */
	struct postern_stats stats;
	time_t started;
	char *config_path;
};

/* Reload the config file; on error the old config stays and err says why. */
int postern_reload(struct postern *pt, char *err, size_t errlen);

#endif
