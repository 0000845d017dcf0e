/*
 * Configuration: one human-editable INI-style file (see etc/postern.conf).
 *
 *   [section]               key = value
 *   [section "name"]        named instance (domain "example.com", user "a@b")
 *
 * Every key is described once in a table (config_keys.c) with its type,
 * bounds and default: the parser, `postern check-config`, and the admin API
 * all go through that one setter. A loaded config is immutable and
 * reference-counted, so a reload swaps the pointer while sessions that
 * started under the old config finish with it.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "core/cidr.h"
#include "core/log.h"
#include "core/strbuf.h"

struct hostport {
	char *host;          /* name, IPv4 or IPv6 literal (without brackets) */
	uint16_t port;
};

enum listen_kind {
	LISTEN_SMTP,         /* plain, STARTTLS offered */
	LISTEN_SMTPS,        /* implicit TLS (port 465) */
	LISTEN_SUBMISSION,   /* plain+STARTTLS, AUTH required to send */
};

struct listen_spec {
	char *addr;          /* "0.0.0.0", "::", "127.0.0.1" */
	uint16_t port;
	enum listen_kind kind;
};

/* [domain "example.com"]: a protected domain relayed to its own hosts. */
struct relay_domain {
	char *domain;                /* lower case */
	struct hostport *hosts;      /* fallback order */
	size_t nhosts;
	unsigned line;               /* of its section header; 0: not from a file */
};

/* [user "alice@example.org"]: an account for AUTH and/or local delivery. */
struct user_account {
	char *address;               /* lower-case domain part */
	char *password_hash;         /* argon2id string ($argon2id$...), NULL: no AUTH */
	char *maildir;               /* NULL: [local] maildir template */
	uint64_t quota_bytes;        /* 0: unlimited */
	unsigned line;
};

/* [tls "name"] extra certificates chosen by SNI. */
struct tls_cert_spec {
	char *name;                  /* SNI host name pattern (exact or "*.example.org") */
	char *cert_file;
	char *key_file;
	unsigned line;
};

enum bare_newline_policy {
	BARE_NEWLINE_REJECT,         /* 550 the message, never split it */
	BARE_NEWLINE_NORMALIZE,      /* bare CR or LF becomes CRLF */
};

/* What a policy engine does on a hit ("reject", "defer", "tag", "ignore"). */
enum policy_action {
	POLICY_ACTION_REJECT = 0,    /* 5xx */
	POLICY_ACTION_DEFER,         /* 4xx */
	POLICY_ACTION_TAG,           /* add the engine's score and symbol, go on */
	POLICY_ACTION_IGNORE,        /* log only */
};

/* Which mail an engine looks at ("inbound", "outbound", "both"). */
enum policy_direction {
	POLICY_DIR_INBOUND = 1,      /* from untrusted, unauthenticated clients */
	POLICY_DIR_OUTBOUND = 2,     /* from trusted networks or authenticated users */
	POLICY_DIR_BOTH = 3,
};

/* The settings every policy engine has. */
struct policy_common {
	bool enabled;
	enum policy_direction direction;
	struct cidr_list whitelist;  /* client addresses this engine never judges */
	char **whitelist_senders;    /* "a@b.example" or "@b.example" (a bare domain gets its @), sorted */
	size_t nwhitelist_senders;
	enum policy_action action;
	double score;                /* with action tag */
};

/* [dnsbl "zone"] and [rhsbl "zone"]: one DNS block list. */
struct dnsbl_spec {
	char *zone;                  /* the section name, lower case */
	unsigned line;
	char *match;                 /* "any", "mask:0x0c" or "codes:127.0.0.2,127.0.0.4" */
	char *reply;                 /* with %0 client IP, %1 rule name, %2 zone */
	unsigned priority;           /* lower is checked first */
};

struct config {
	int refcount;
	char *path;

	/* [server] */
	char *hostname;
	char *banner;                /* text after "220 <hostname> " */
	struct listen_spec *listens;
	size_t nlistens;
	char *user;                  /* drop privileges to this user after binding */
	char *group;
	char *data_dir;              /* state: generated certificate, databases */
	char *admin_socket;          /* unix socket path for the CLI */
	char *pid_file;

	/* [log] */
	enum log_level log_level;
	char *log_file;
	bool log_syslog;
	bool log_stderr;

	/* [limits] */
	uint64_t max_message_size;   /* bytes, announced in SIZE */
	unsigned max_recipients;     /* per transaction */
	unsigned max_command_length; /* command line, without CRLF */
	unsigned max_line_length;    /* DATA text line, without CRLF */
	unsigned max_sessions;       /* concurrent inbound sessions */
	unsigned max_errors;         /* bad commands before 421 and close */
	unsigned max_messages_per_session;
	unsigned timeout_command;    /* seconds waiting for a command */
	unsigned timeout_data;       /* seconds between DATA/BDAT reads */
	unsigned timeout_tls;        /* seconds for the TLS handshake */
	enum bare_newline_policy bare_newline;
	bool vrfy;                   /* off by default */
	bool expn;                   /* off by default */

	/* [tls] */
	char *tls_cert_file;         /* NULL: generate self-signed in data_dir */
	char *tls_key_file;
	char *tls_ciphers;           /* OpenSSL cipher list, NULL: library default */
	char *tls_min_version;       /* "TLSv1.2" */
	struct tls_cert_spec *tls_sni;
	size_t ntls_sni;

	/* [auth] */
	bool auth_enabled;           /* AUTH PLAIN/LOGIN, only after TLS */
	unsigned auth_max_failures;  /* per session before 421 */

	/* [relay] */
	struct cidr_list trusted_networks; /* may relay anywhere */
	struct relay_domain *domains;      /* protected domains */
	size_t ndomains;

	/* [local] standalone mode */
	char **local_domains;
	size_t nlocal_domains;
	char *maildir_template;      /* "%d" domain, "%u" local part, e.g. /var/mail/%d/%u */
	struct user_account *users;
	size_t nusers;

	/* [queue] */
	char *spool_dir;
	unsigned queue_lifetime;     /* seconds before a bounce */
	unsigned retry_min;          /* first retry delay, seconds */
	unsigned retry_max;          /* backoff cap, seconds */
	unsigned max_deliveries;     /* concurrent outbound deliveries in total */
	unsigned max_per_destination;/* concurrent connections per destination */
	char *bounce_from;           /* "MAILER-DAEMON@<hostname>" when NULL */
	bool spool_syncfs;           /* group commit with one syncfs() per batch */

	/* [delivery] */
	unsigned mx_port;            /* port for MX deliveries (25; tests change it) */
	bool outbound_tls;           /* opportunistic STARTTLS */
	unsigned timeout_connect;    /* seconds */
	unsigned timeout_reply;      /* seconds per reply */
	char *helo_name;             /* NULL: hostname */

	/* [dns] */
	char *dns_servers;           /* "127.0.0.1:5353,::1", NULL: /etc/resolv.conf */
	unsigned dns_timeout_ms;
	unsigned dns_tries;

	/*
	 * Connection- and protocol-level defence (issue 3). Every engine
	 * section has the policy_common keys: enabled, direction, whitelist,
	 * whitelist_senders, action, score.
	 */
	/* [iplist]: allow = skip later legitimacy checks; deny = 554 at connect */
	struct policy_common iplist;
	struct cidr_list ip_allow;
	struct cidr_list ip_deny;
	char *ip_allow_file;         /* one address or CIDR per line, '#' comments */
	char *ip_deny_file;
	/* [connlimit]: concurrent sessions and connection rate per client IP */
	struct policy_common connlimit;
	unsigned max_per_ip;         /* 0: unlimited */
	unsigned conn_rate;          /* connections per conn_window; 0: off */
	unsigned conn_window;        /* seconds */
	unsigned conn_ban_step;      /* seconds of ban per attempt over the rate */
	unsigned conn_ban_max;       /* seconds */
	/* [pregreet]: greet pause; a client that talks first is dropped */
	struct policy_common pregreet;
	unsigned greet_pause_ms;
	/* [dnsbl] general settings; the lists are [dnsbl "zone"] / [rhsbl "zone"] */
	struct policy_common dnsbl;
	bool dnsbl_reject_at_rcpt;   /* reject at RCPT (Exchange) instead of at connect */
	unsigned dnsbl_timeout_ms;
	struct dnsbl_spec *dnsbls;
	size_t ndnsbls;
	struct policy_common rhsbl;
	struct dnsbl_spec *rhsbls;
	size_t nrhsbls;
	/* [perimeter]: mail arriving through these relays is judged by the first untrusted Received hop */
	struct cidr_list perimeter_relays;
	/* [helo] */
	struct policy_common helo;
	bool helo_require_fqdn;      /* a dotted domain or an address literal */
	bool helo_require_resolvable;
	/* [rdns] */
	struct policy_common rdns;
	bool rdns_require_ptr;
	bool rdns_require_fcrdns;    /* the PTR name must resolve back to the client */
	/* [sender] */
	struct policy_common sender;
	char **sender_allow;         /* "local@domain" or "@domain" (see config_normalize_pattern), sorted */
	size_t nsender_allow;
	char **sender_deny;
	size_t nsender_deny;
	bool sender_reject_blank;    /* refuse MAIL FROM:<> */
	bool sender_require_resolvable; /* the sender domain must have MX or A/AAAA */
	/* [spf] */
	struct policy_common spf;
	enum policy_action spf_fail;      /* default reject */
	enum policy_action spf_softfail;  /* default tag */
	enum policy_action spf_temperror; /* default defer */
	enum policy_action spf_permerror; /* default tag */
	bool spf_header;             /* add Received-SPF */
	/* [recipients]: validation and tarpit */
	struct policy_common recipients;
	char *rcpt_validation;       /* "none", "list", "callout" or "ldap" */
	char **rcpt_list;            /* valid recipients for "list" (also "@domain" wildcards), sorted */
	size_t nrcpt_list;
	char *rcpt_list_file;
	char *ldap_uri;              /* validation = ldap: the directory */
	char *ldap_base;
	char *ldap_filter;           /* %s address, %u local part, %d domain */
	char *ldap_bind_dn;          /* NULL: anonymous */
	char *ldap_bind_password;
	unsigned ldap_timeout_ms;
	unsigned callout_cache_ttl;  /* seconds a positive callout (or LDAP) answer is kept */
	unsigned callout_negative_ttl;
	unsigned tarpit_after;       /* unknown recipients before replies slow down; 0: never */
	unsigned tarpit_delay_ms;    /* added per unknown recipient past tarpit_after */
	unsigned max_unknown_rcpts;  /* then 421 and close; 0: never */
	/* [greylist]: greylisting-style deferral */
	struct policy_common greylist;
	unsigned greylist_delay;     /* seconds before a retry is accepted */
	unsigned greylist_window;    /* seconds within which the retry must come */
	unsigned greylist_whitelist_ttl; /* auto-whitelist after a successful retry */
	unsigned greylist_ipv4_prefix;   /* 24 */
	unsigned greylist_ipv6_prefix;   /* 64 */
	/* [sender_rate] and [subject_rate]: repeat limits with accumulating bans */
	struct policy_common sender_rate;
	unsigned sender_rate_limit;
	unsigned sender_rate_window;
	unsigned sender_rate_ban_step;
	unsigned sender_rate_ban_max;
	struct policy_common subject_rate;
	unsigned subject_rate_limit;
	unsigned subject_rate_window;
	unsigned subject_rate_ban_step;
	unsigned subject_rate_ban_max;

	/*
	 * [iplist] allow/deny and [recipients] list as the file wrote them:
	 * config_finish adds the entries of allow_file, deny_file and
	 * list_file to make ip_allow, ip_deny and rcpt_list, so the lists read
	 * from files do not end up in `--dump`.
	 */
	struct cidr_list ip_allow_written;
	struct cidr_list ip_deny_written;
	char **rcpt_list_written;
	size_t nrcpt_list_written;

	/*
	 * The content stage (issue 4): runs at the end of DATA, before the
	 * final reply, in the worker pool.
	 */
	/* [content] */
	bool content_enabled;
	unsigned content_timeout;     /* seconds; a scan over it defers the message */
	/* [virus] */
	bool virus_enabled;
	char *virus_database;         /* signature directory (freshclam's, or tests/clamav-db) */
	char *virus_action;           /* "reject", "drop", "quarantine", "tag" or "clean" */
	unsigned virus_sample_percent;/* scan this share of messages while no virus was seen; 100: all */
	unsigned virus_hot_period;    /* seconds of scanning everything after a detection */
	bool virus_tempfail_on_error; /* scanner failure: defer (yes) or pass (no) */
	unsigned virus_reload_check;  /* seconds between looks at the signature directory */
	/* [rules] */
	char *rules_file;
	/* [quarantine] */
	unsigned quarantine_expire;   /* seconds a held message waits for the operator, then deleted */
	/* [actions]: per-category action ("engine": the engine's own) and the marks */
	char *actions_virus;          /* tag, quarantine, reject, drop, defer or engine */
	char *actions_spam;
	char *actions_rule;
	char *actions_dynamic;
	char *actions_subject_tag;    /* "[SPAM] " */
	char *actions_status_header;  /* "X-Postern-Status" */
	char *actions_reason_header;  /* "X-Postern-Reason" */
	char *actions_scl_header;     /* "X-Postern-SCL" */
	/* [bayes] */
	bool bayes_enabled;
	char *bayes_database;         /* NULL: <data_dir>/bayes.db */
	bool bayes_autolearn;
	double bayes_autolearn_spam_score; /* other engines' total at least this: learn as spam */
	double bayes_autolearn_ham_score;  /* at most this, nothing demanded: learn as ham */
	/* [dkim] */
	bool dkim_verify;
	bool dkim_dmarc;              /* evaluate DMARC and apply the From domain's policy */
	bool dkim_authentication_results; /* add Authentication-Results to accepted mail */
	unsigned dkim_dns_timeout_ms; /* all DKIM/DMARC look-ups of one message */
	/* [phrases] */
	char *phrases_file;
	/* [scoring]: SCL levels and the thresholds that act on them */
	unsigned scoring_suspected_scl;   /* SCL from which a message is suspected spam */
	unsigned scoring_spam_scl;        /* SCL from which it is spam */
	unsigned scoring_gateway_scl;     /* SCL from which gateway_action applies; 10: never */
	char *scoring_gateway_action;     /* reject, drop, quarantine or tag */
	unsigned scoring_store_scl;       /* SCL from which mail goes to Junk / gets the junk header; 10: never */
	char *scoring_store_header;       /* "X-Postern-Junk" */
	char *scoring_suspected_subject_tag; /* "[SUSPECTED SPAM] " */
	/* [phishing] */
	bool phishing_enabled;
	char **phishing_brands;           /* protected brand domains; NULL: the built-in list */
	size_t nphishing_brands;
	char **phishing_shorteners;       /* URL shortener domains; NULL: the built-in list */
	size_t nphishing_shorteners;
	/* [fuzzy] */
	bool fuzzy_enabled;
	char *fuzzy_database;             /* NULL: <data_dir>/fuzzy.db */
	unsigned fuzzy_threshold;         /* percent of matching shingles that makes a near-duplicate */
	double fuzzy_score;               /* at 100 % similarity; scaled down to half at the threshold */
	unsigned fuzzy_learn_scl;         /* store messages judged at least this SCL without fuzzy's own score */
	unsigned fuzzy_min_words;         /* shorter texts are neither matched nor stored */
	unsigned fuzzy_expire;            /* seconds a stored spam hash lives after it was last seen */
	/* [history]: per-sender noise reduction */
	bool history_enabled;
	char *history_database;           /* NULL: <data_dir>/history.db */
	unsigned history_min_messages;    /* clean messages needed before dampening */
	unsigned history_max_spam_percent;/* a history with more spam than this is not clean */
	unsigned history_dampen_percent;  /* the largest share of the score taken off */
	unsigned history_half_life;       /* seconds after which old counts weigh half */
	/* [bayes] reload */
	unsigned bayes_reload_check;      /* seconds between looks for other writers' learning */
};

/* A precise error: "file:line: [section] key: why"; empty parts are left out. */
struct config_error {
	char file[256];
	unsigned line;               /* 0: not tied to a line */
	char key[64];
	char message[512];
	char section[320];           /* "limits", "domain \"example.com\"" */
};

/* Value types of the key table; each has one parser and one printer. */
enum config_type {
	CONFIG_STRING,               /* char *; min/max bound the length */
	CONFIG_PATH,                 /* char *, absolute path */
	CONFIG_HOSTNAME,             /* char *, syntactically valid host name */
	CONFIG_ADDRESS,              /* char *, local@domain */
	CONFIG_MAILDIR,              /* char *, absolute path with %d %u %% */
	CONFIG_PASSWORD_HASH,        /* char *, "$argon2id$..." */
	CONFIG_TLS_VERSION,          /* char *, "TLSv1.2" or "TLSv1.3" */
	CONFIG_NAMESERVERS,          /* char *, "ip[:port]" items joined by ',' */
	CONFIG_BOOL,                 /* bool: yes/no true/false on/off 1/0 */
	CONFIG_UINT,                 /* unsigned within min..max */
	CONFIG_SIZE,                 /* uint64_t bytes: "35M", "10k", "1G", "512" */
	CONFIG_DURATION,             /* unsigned seconds: "30s", "5m", "2h", "5d" */
	CONFIG_LOG_LEVEL,            /* enum log_level */
	CONFIG_BARE_NEWLINE,         /* enum bare_newline_policy */
	CONFIG_LISTEN_LIST,          /* struct listen_spec *, count at count_offset */
	CONFIG_HOSTPORT_LIST,        /* struct hostport *, count at count_offset */
	CONFIG_DOMAIN_LIST,          /* char ** (lower case), count at count_offset */
	CONFIG_CIDR_LIST,            /* struct cidr_list */
	CONFIG_DURATION_MS,          /* unsigned milliseconds: "500ms", "2s", "1m"; a bare number is ms */
	CONFIG_POLICY_ACTION,        /* enum policy_action: reject, defer, tag, ignore */
	CONFIG_DIRECTION,            /* enum policy_direction: inbound, outbound, both */
	CONFIG_SCORE,                /* double within -100..100, at most 3 decimals: "2.5" */
	CONFIG_DNSBL_MATCH,          /* char *: "any", "mask:0xHEX" or "codes:127.x.y.z,..." */
	CONFIG_DNSBL_REPLY,          /* char *: "554 5.7.1 text" with %0 %1 %2 %% */
	CONFIG_RCPT_VALIDATION,      /* char *: "none", "list", "callout" or "ldap" */
	CONFIG_STRING_LIST,          /* char ** of patterns (see config_normalize_pattern),
				        sorted, count at count_offset */
};

#define CONFIG_KEY_REQUIRED 0x1  /* a named section is incomplete without it */

/*
 * One key of the file. offset is into struct config for plain sections and
 * into the instance struct (relay_domain, user_account, tls_cert_spec) for
 * named ones. min/max bound numbers, string lengths or list item counts.
 */
struct config_key {
	const char *section;
	bool named;
	const char *name;
	enum config_type type;
	size_t offset;
	size_t count_offset;
	uint64_t min;
	uint64_t max;
	const char *def;             /* default as written in the file; NULL: unset */
	unsigned flags;
	const char *help;
};

extern const struct config_key config_keys[];
extern const size_t config_nkeys;

const struct config_key *config_key_find(const char *section, bool named, const char *name);
/* Parse value into the key's field of base, replacing the old value; -1 with why. */
int config_key_set(const struct config_key *key, void *base, const char *value, char *why, size_t whylen);
/* Print the key's value as the file would write it; -1 when the key is unset. */
int config_key_format(const struct config_key *key, const void *base, struct strbuf *out);
void config_key_clear(const struct config_key *key, void *base);
bool config_valid_hostname(const char *name);
/* Check local@domain (dot-atom local part, host name domain) and lower-case the domain. */
int config_normalize_address(char *address, char *why, size_t whylen);
/*
 * A sender or recipient pattern: "local@domain", "@domain" or "domain",
 * returned allocated as "local@domain" or "@domain" with the domain in
 * lower case; NULL with why when malformed.
 */
char *config_normalize_pattern(const char *pattern, char *why, size_t whylen);

/* A config holding only the defaults (refcount 1, hostname from the system). */
struct config *config_new(void);
/* A store's database file: the configured path, else `file` in data_dir (the caller frees it). */
char *config_store_path(const struct config *cfg, const char *configured, const char *file);
/*
 * The one setter of the parser and the admin API. section is written as
 * inside the brackets: "limits" or "domain \"example.com\"" (a missing
 * named instance is created). Call config_finish before using the result.
 */
int config_set(struct config *cfg, const char *section, const char *key, const char *value,
	       char *why, size_t whylen);
/* Sort the look-up tables and run the cross-key checks; -1 with *err filled. */
int config_finish(struct config *cfg, struct config_error *err);
/* Every key with its effective value, grouped by section, re-parseable. */
int config_dump(const struct config *cfg, FILE *out);

/* Load and validate; NULL with *err filled on any problem. refcount = 1. */
struct config *config_load(const char *path, struct config_error *err);
/* Same, from a buffer (used by the fuzzer and tests); name is used in errors. */
struct config *config_parse(const char *name, const char *text, size_t len, struct config_error *err);
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);
void config_error_format(const struct config_error *err, char *buf, size_t len);

/*
 * Look-ups used on the hot path: binary searches, case-insensitive (for
 * users, the whole address). Valid on a loaded config or after config_finish.
 */
const struct relay_domain *config_find_domain(const struct config *cfg, const char *domain);
bool config_is_local_domain(const struct config *cfg, const char *domain);
const struct user_account *config_find_user(const struct config *cfg, const char *address);

/* Parse "10k", "35M", "1G" / "30s", "5m", "2h", "5d" (used by the CLI too). */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, unsigned *out_seconds);

#endif
