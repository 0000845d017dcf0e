/*
 * Every configuration key, described once, and the one parser and printer
 * per value type. The file parser, `postern check-config --dump`, the admin
 * API and docs/configuration.md all follow this table.
 */
#define LOG_MODULE "config"
#include "core/config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"

#define CONFIG_ITEM_MAX 300          /* one list item: a host name and a port fit */
#define CONFIG_SHOW_MAX 60           /* how much of a bad value an error quotes */

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define MINUTE 60ULL
#define HOUR (60ULL * MINUTE)
#define DAY (24ULL * HOUR)

#define KEY(sec, key, type, field, min, max, def, help) \
	{ sec, false, key, type, offsetof(struct config, field), 0, min, max, def, 0, help }
#define LIST(sec, key, type, field, count, min, max, def, help) \
	{ sec, false, key, type, offsetof(struct config, field), offsetof(struct config, count), \
	  min, max, def, 0, help }
#define NAMED(sec, st, key, type, field, min, max, def, flags, help) \
	{ sec, true, key, type, offsetof(struct st, field), 0, min, max, def, flags, help }
/* The keys every policy engine section has, mapped to its struct policy_common. */
#define COMMON(sec, eng, def_enabled, def_direction, def_action, def_score) \
	KEY(sec, "enabled", CONFIG_BOOL, eng.enabled, 0, 0, def_enabled, "run this check"), \
	KEY(sec, "direction", CONFIG_DIRECTION, eng.direction, 0, 0, def_direction, \
	    "mail checked: inbound (untrusted clients), outbound (trusted or authenticated) or both"), \
	KEY(sec, "whitelist", CONFIG_CIDR_LIST, eng.whitelist, 0, 1024, NULL, \
	    "client addresses or networks this check never judges"), \
	LIST(sec, "whitelist_senders", CONFIG_STRING_LIST, eng.whitelist_senders, eng.nwhitelist_senders, \
	     0, 1024, NULL, "senders this check never judges: local@domain, @domain or domain"), \
	KEY(sec, "action", CONFIG_POLICY_ACTION, eng.action, 0, 0, def_action, \
	    "on a hit: reject (5xx), defer (4xx), tag (add the score) or ignore (log only)"), \
	KEY(sec, "score", CONFIG_SCORE, eng.score, 0, 0, def_score, "score added with action tag, -100 to 100")

#define DNSBL_REPLY "554 5.7.1 Service unavailable; client [%0] blocked using %2"
#define RHSBL_REPLY "554 5.7.1 Sender address rejected: domain listed at %2"

const struct config_key config_keys[] = {
	KEY("server", "hostname", CONFIG_HOSTNAME, hostname, 1, 253, NULL,
	    "name in the banner, EHLO replies and bounces (default: this machine's host name)"),
	KEY("server", "banner", CONFIG_STRING, banner, 1, 400, "postern ESMTP",
	    "text after \"220 <hostname> \" in the greeting"),
	LIST("server", "listen", CONFIG_LISTEN_LIST, listens, nlistens, 1, 64,
	     "0.0.0.0:25, 0.0.0.0:465/smtps, 0.0.0.0:587/submission",
	     "listeners: ADDR:PORT[/smtp|smtps|submission], ADDR an IPv4 address, [IPv6] or *"),
	KEY("server", "user", CONFIG_STRING, user, 1, 32, "postern",
	    "user to run as after binding the ports"),
	KEY("server", "group", CONFIG_STRING, group, 1, 32, NULL,
	    "group to run as (default: the user's primary group)"),
	KEY("server", "data_dir", CONFIG_PATH, data_dir, 1, 4095, "/var/lib/postern",
	    "state: the generated TLS certificate, databases"),
	KEY("server", "admin_socket", CONFIG_PATH, admin_socket, 1, 107, "/run/postern/admin.sock",
	    "unix socket of the admin API used by the postern CLI"),
	KEY("server", "pid_file", CONFIG_PATH, pid_file, 1, 4095, NULL,
	    "file to write the process id to (default: none)"),

	KEY("log", "level", CONFIG_LOG_LEVEL, log_level, 0, 0, "info",
	    "error, warn, info or debug"),
	KEY("log", "file", CONFIG_PATH, log_file, 1, 4095, NULL,
	    "append log lines to this file (default: none)"),
	KEY("log", "syslog", CONFIG_BOOL, log_syslog, 0, 0, "no", "log to syslog (facility mail)"),
	KEY("log", "stderr", CONFIG_BOOL, log_stderr, 0, 0, "yes", "log to standard error"),

	KEY("limits", "max_message_size", CONFIG_SIZE, max_message_size, KIB, 2 * GIB, "35M",
	    "largest message accepted, announced in EHLO SIZE"),
	KEY("limits", "max_recipients", CONFIG_UINT, max_recipients, 1, 100000, "100",
	    "recipients per transaction"),
	KEY("limits", "max_command_length", CONFIG_UINT, max_command_length, 512, 65536, "2048",
	    "longest SMTP command line in bytes, without CRLF"),
	KEY("limits", "max_line_length", CONFIG_UINT, max_line_length, 1000, 1048576, "8192",
	    "longest message text line in bytes, without CRLF"),
	KEY("limits", "max_sessions", CONFIG_UINT, max_sessions, 1, 1000000, "1000",
	    "concurrent inbound sessions; more are refused with 421"),
	KEY("limits", "max_errors", CONFIG_UINT, max_errors, 1, 1000, "10",
	    "bad commands in a session before 421 and close"),
	KEY("limits", "max_messages_per_session", CONFIG_UINT, max_messages_per_session, 1, 1000000, "1000",
	    "transactions in one session"),
	KEY("limits", "timeout_command", CONFIG_DURATION, timeout_command, 1, DAY, "5m",
	    "wait for the next command"),
	KEY("limits", "timeout_data", CONFIG_DURATION, timeout_data, 1, DAY, "10m",
	    "wait between reads of message data"),
	KEY("limits", "timeout_tls", CONFIG_DURATION, timeout_tls, 1, HOUR, "1m",
	    "the TLS handshake"),
	KEY("limits", "bare_newline", CONFIG_BARE_NEWLINE, bare_newline, 0, 0, "normalize",
	    "message text with a bare CR or LF: reject (550) or normalize to CRLF"),
	KEY("limits", "vrfy", CONFIG_BOOL, vrfy, 0, 0, "no", "answer VRFY (502 when off)"),
	KEY("limits", "expn", CONFIG_BOOL, expn, 0, 0, "no", "answer EXPN (502 when off)"),

	KEY("tls", "cert", CONFIG_PATH, tls_cert_file, 1, 4095, NULL,
	    "PEM certificate chain (default: a self-signed one generated in data_dir)"),
	KEY("tls", "key", CONFIG_PATH, tls_key_file, 1, 4095, NULL, "PEM private key of cert"),
	KEY("tls", "ciphers", CONFIG_STRING, tls_ciphers, 1, 1024, NULL,
	    "OpenSSL cipher list for TLS 1.2 (default: the library's)"),
	KEY("tls", "min_version", CONFIG_TLS_VERSION, tls_min_version, 7, 7, "TLSv1.2",
	    "TLSv1.2 or TLSv1.3"),

	KEY("auth", "enabled", CONFIG_BOOL, auth_enabled, 0, 0, "yes",
	    "offer AUTH PLAIN and LOGIN (only over TLS)"),
	KEY("auth", "max_failures", CONFIG_UINT, auth_max_failures, 1, 100, "3",
	    "failed AUTH attempts in a session before 421 and close"),

	KEY("relay", "trusted_networks", CONFIG_CIDR_LIST, trusted_networks, 0, 1024, "127.0.0.0/8, ::1",
	    "clients that may relay to any domain (addresses or CIDR prefixes)"),

	LIST("local", "domains", CONFIG_DOMAIN_LIST, local_domains, nlocal_domains, 0, 1024, NULL,
	     "domains delivered here, to the Maildir of their [user] entries"),
	KEY("local", "maildir", CONFIG_MAILDIR, maildir_template, 1, 4095, NULL,
	    "Maildir path template: %d domain, %u local part, %% a percent sign"),

	KEY("queue", "dir", CONFIG_PATH, spool_dir, 1, 4095, "/var/spool/postern",
	    "spool directory"),
	KEY("queue", "lifetime", CONFIG_DURATION, queue_lifetime, 1, 30 * DAY, "5d",
	    "how long to retry before bouncing"),
	KEY("queue", "retry_min", CONFIG_DURATION, retry_min, 1, DAY, "5m",
	    "first retry delay; it doubles up to retry_max"),
	KEY("queue", "retry_max", CONFIG_DURATION, retry_max, 1, 7 * DAY, "1h",
	    "longest retry delay"),
	KEY("queue", "max_deliveries", CONFIG_UINT, max_deliveries, 1, 10000, "100",
	    "concurrent outbound deliveries in total"),
	KEY("queue", "max_per_destination", CONFIG_UINT, max_per_destination, 1, 1000, "20",
	    "concurrent connections to one destination"),
	KEY("queue", "bounce_from", CONFIG_ADDRESS, bounce_from, 3, 320, NULL,
	    "From: of bounces (default: MAILER-DAEMON@hostname)"),
	KEY("queue", "syncfs", CONFIG_BOOL, spool_syncfs, 0, 0, "yes",
	    "commit a batch of messages with one syncfs() instead of one fsync() each"),

	KEY("delivery", "mx_port", CONFIG_UINT, mx_port, 1, 65535, "25",
	    "port of MX hosts"),
	KEY("delivery", "tls", CONFIG_BOOL, outbound_tls, 0, 0, "yes",
	    "use STARTTLS when the receiver offers it"),
	KEY("delivery", "timeout_connect", CONFIG_DURATION, timeout_connect, 1, HOUR, "30s",
	    "TCP connect to a receiver"),
	KEY("delivery", "timeout_reply", CONFIG_DURATION, timeout_reply, 1, HOUR, "5m",
	    "each reply of a receiver"),
	KEY("delivery", "helo_name", CONFIG_HOSTNAME, helo_name, 1, 253, NULL,
	    "name sent in EHLO (default: hostname)"),

	KEY("dns", "servers", CONFIG_NAMESERVERS, dns_servers, 1, 16, NULL,
	    "name servers as IP[:PORT] or [IPv6]:PORT (default: /etc/resolv.conf)"),
	KEY("dns", "timeout_ms", CONFIG_UINT, dns_timeout_ms, 100, 60000, "5000",
	    "milliseconds before a query is retried"),
	KEY("dns", "tries", CONFIG_UINT, dns_tries, 1, 10, "2", "attempts per query and server"),

	COMMON("iplist", iplist, "yes", "both", "reject", "1"),
	KEY("iplist", "allow", CONFIG_CIDR_LIST, ip_allow_written, 0, 10000, NULL,
	    "clients that skip the later legitimacy checks"),
	KEY("iplist", "deny", CONFIG_CIDR_LIST, ip_deny_written, 0, 10000, NULL,
	    "clients refused at connect"),
	KEY("iplist", "allow_file", CONFIG_PATH, ip_allow_file, 1, 4095, NULL,
	    "more allow entries: one address or network per line, # comments"),
	KEY("iplist", "deny_file", CONFIG_PATH, ip_deny_file, 1, 4095, NULL,
	    "more deny entries: one address or network per line, # comments"),

	COMMON("connlimit", connlimit, "yes", "inbound", "defer", "1"),
	KEY("connlimit", "max_per_ip", CONFIG_UINT, max_per_ip, 0, 100000, "50",
	    "concurrent sessions from one client address; 0: unlimited"),
	KEY("connlimit", "rate", CONFIG_UINT, conn_rate, 0, 1000000, "0",
	    "connections from one client address per window; 0: no limit"),
	KEY("connlimit", "window", CONFIG_DURATION, conn_window, 1, DAY, "1m",
	    "the period rate counts over"),
	KEY("connlimit", "ban_step", CONFIG_DURATION, conn_ban_step, 0, DAY, "1m",
	    "ban added for each connection over the rate"),
	KEY("connlimit", "ban_max", CONFIG_DURATION, conn_ban_max, 0, 30 * DAY, "1h",
	    "longest ban"),

	COMMON("pregreet", pregreet, "no", "inbound", "reject", "1"),
	KEY("pregreet", "greet_pause", CONFIG_DURATION_MS, greet_pause_ms, 0, 60000, "0",
	    "wait this long before the banner; a client that talks first is caught"),

	COMMON("dnsbl", dnsbl, "yes", "inbound", "reject", "3"),
	KEY("dnsbl", "reject_at_rcpt", CONFIG_BOOL, dnsbl_reject_at_rcpt, 0, 0, "yes",
	    "refuse a listed client at RCPT (so the refusal is logged with the recipient) instead of at connect"),
	KEY("dnsbl", "timeout", CONFIG_DURATION_MS, dnsbl_timeout_ms, 100, 60000, "5s",
	    "wait this long for all lists; a list that has not answered does not count"),
	COMMON("rhsbl", rhsbl, "yes", "inbound", "reject", "3"),

	KEY("perimeter", "relays", CONFIG_CIDR_LIST, perimeter_relays, 0, 1024, NULL,
	    "our own front relays: their mail is judged by the first untrusted Received hop"),

	COMMON("helo", helo, "yes", "inbound", "tag", "1.5"),
	KEY("helo", "require_fqdn", CONFIG_BOOL, helo_require_fqdn, 0, 0, "yes",
	    "the HELO name must be a dotted domain or an address literal"),
	KEY("helo", "require_resolvable", CONFIG_BOOL, helo_require_resolvable, 0, 0, "no",
	    "the HELO name must have an A or AAAA record"),

	COMMON("rdns", rdns, "no", "inbound", "tag", "1.5"),
	KEY("rdns", "require_ptr", CONFIG_BOOL, rdns_require_ptr, 0, 0, "yes",
	    "the client address must have a PTR record"),
	KEY("rdns", "require_fcrdns", CONFIG_BOOL, rdns_require_fcrdns, 0, 0, "no",
	    "the PTR name must resolve back to the client address"),

	COMMON("sender", sender, "yes", "both", "reject", "1"),
	LIST("sender", "allow", CONFIG_STRING_LIST, sender_allow, nsender_allow, 0, 10000, NULL,
	     "senders always accepted: local@domain, @domain or domain"),
	LIST("sender", "deny", CONFIG_STRING_LIST, sender_deny, nsender_deny, 0, 10000, NULL,
	     "senders refused: local@domain, @domain or domain"),
	KEY("sender", "reject_blank", CONFIG_BOOL, sender_reject_blank, 0, 0, "no",
	    "refuse the null sender MAIL FROM:<> (it is what bounces use)"),
	KEY("sender", "require_resolvable", CONFIG_BOOL, sender_require_resolvable, 0, 0, "no",
	    "the sender domain must have an MX, A or AAAA record"),

	COMMON("spf", spf, "no", "inbound", "reject", "2"),
	KEY("spf", "fail", CONFIG_POLICY_ACTION, spf_fail, 0, 0, "reject", "what to do on an SPF fail"),
	KEY("spf", "softfail", CONFIG_POLICY_ACTION, spf_softfail, 0, 0, "tag", "what to do on an SPF softfail"),
	KEY("spf", "temperror", CONFIG_POLICY_ACTION, spf_temperror, 0, 0, "defer",
	    "what to do on an SPF temperror (DNS trouble)"),
	KEY("spf", "permerror", CONFIG_POLICY_ACTION, spf_permerror, 0, 0, "tag",
	    "what to do on an SPF permerror (a broken record)"),
	KEY("spf", "header", CONFIG_BOOL, spf_header, 0, 0, "yes", "add a Received-SPF header"),

	COMMON("recipients", recipients, "yes", "inbound", "reject", "1"),
	KEY("recipients", "validation", CONFIG_RCPT_VALIDATION, rcpt_validation, 4, 7, "none",
	    "none, list (the list and list_file), callout (ask the protected domain's server) or ldap (look the address up in a directory)"),
	LIST("recipients", "list", CONFIG_STRING_LIST, rcpt_list_written, nrcpt_list_written, 0, 10000, NULL,
	     "valid recipients for validation = list: local@domain or @domain (any local part)"),
	KEY("recipients", "list_file", CONFIG_PATH, rcpt_list_file, 1, 4095, NULL,
	    "more valid recipients, one per line, # comments"),
	KEY("recipients", "ldap_uri", CONFIG_STRING, ldap_uri, 8, 1024, NULL,
	    "directory for validation = ldap: ldap://host[:port] or ldaps://host[:port] (several, space-separated, tried in order)"),
	KEY("recipients", "ldap_base", CONFIG_STRING, ldap_base, 1, 1024, NULL,
	    "search base for validation = ldap, e.g. ou=people,dc=example,dc=com"),
	KEY("recipients", "ldap_filter", CONFIG_STRING, ldap_filter, 3, 1024, "(mail=%s)",
	    "search filter; %s is the recipient address (escaped per RFC 4515), %u its local part, %d its domain; any entry found means the recipient exists"),
	KEY("recipients", "ldap_bind_dn", CONFIG_STRING, ldap_bind_dn, 1, 1024, NULL,
	    "DN to bind as (default: anonymous)"),
	KEY("recipients", "ldap_bind_password", CONFIG_STRING, ldap_bind_password, 1, 1024, NULL,
	    "password of ldap_bind_dn"),
	KEY("recipients", "ldap_timeout", CONFIG_DURATION_MS, ldap_timeout_ms, 100, 60000, "3s",
	    "time for one directory look-up (connect, bind and search); past it the recipient is accepted"),
	KEY("recipients", "callout_cache", CONFIG_DURATION, callout_cache_ttl, 0, 30 * DAY, "1h",
	    "how long a callout's \"exists\" answer is kept"),
	KEY("recipients", "callout_negative", CONFIG_DURATION, callout_negative_ttl, 0, 30 * DAY, "10m",
	    "how long a callout's \"unknown\" answer is kept"),
	KEY("recipients", "tarpit_after", CONFIG_UINT, tarpit_after, 0, 1000, "5",
	    "unknown recipients in a session before replies slow down; 0: never"),
	KEY("recipients", "tarpit_delay", CONFIG_DURATION_MS, tarpit_delay_ms, 0, 60000, "1s",
	    "delay added per unknown recipient past tarpit_after"),
	KEY("recipients", "max_unknown", CONFIG_UINT, max_unknown_rcpts, 0, 10000, "20",
	    "unknown recipients in a session before 421 and close; 0: never"),

	COMMON("greylist", greylist, "no", "inbound", "defer", "1"),
	KEY("greylist", "delay", CONFIG_DURATION, greylist_delay, 1, DAY, "5m",
	    "a retry is accepted this long after the first attempt"),
	KEY("greylist", "window", CONFIG_DURATION, greylist_window, 1, 7 * DAY, "4h",
	    "the retry must come within this long of the first attempt"),
	KEY("greylist", "whitelist_ttl", CONFIG_DURATION, greylist_whitelist_ttl, 0, 365 * DAY, "36d",
	    "a client that retried is let through without delay this long"),
	KEY("greylist", "ipv4_prefix", CONFIG_UINT, greylist_ipv4_prefix, 8, 32, "24",
	    "IPv4 clients in one network of this prefix count as one"),
	KEY("greylist", "ipv6_prefix", CONFIG_UINT, greylist_ipv6_prefix, 16, 128, "64",
	    "IPv6 clients in one network of this prefix count as one"),

	COMMON("sender_rate", sender_rate, "no", "outbound", "defer", "1"),
	KEY("sender_rate", "limit", CONFIG_UINT, sender_rate_limit, 1, 1000000, "100",
	    "messages from one sender per window"),
	KEY("sender_rate", "window", CONFIG_DURATION, sender_rate_window, 1, 7 * DAY, "1h",
	    "the period limit counts over"),
	KEY("sender_rate", "ban_step", CONFIG_DURATION, sender_rate_ban_step, 0, DAY, "1m",
	    "ban added for each message over the limit"),
	KEY("sender_rate", "ban_max", CONFIG_DURATION, sender_rate_ban_max, 0, 30 * DAY, "1d",
	    "longest ban"),

	COMMON("subject_rate", subject_rate, "no", "both", "defer", "1"),
	KEY("subject_rate", "limit", CONFIG_UINT, subject_rate_limit, 1, 1000000, "50",
	    "messages with one subject per window"),
	KEY("subject_rate", "window", CONFIG_DURATION, subject_rate_window, 1, 7 * DAY, "1h",
	    "the period limit counts over"),
	KEY("subject_rate", "ban_step", CONFIG_DURATION, subject_rate_ban_step, 0, DAY, "1m",
	    "ban added for each message over the limit"),
	KEY("subject_rate", "ban_max", CONFIG_DURATION, subject_rate_ban_max, 0, 30 * DAY, "1d",
	    "longest ban"),

	KEY("content", "enabled", CONFIG_BOOL, content_enabled, 0, 0, "yes",
	    "run the content stage (MIME checks, virus scan, rules) before the final reply to DATA"),
	KEY("content", "timeout", CONFIG_DURATION, content_timeout, 1, HOUR, "2m",
	    "a scan running longer defers the message"),
	KEY("virus", "enabled", CONFIG_BOOL, virus_enabled, 0, 0, "no", "scan with libclamav in process"),
	KEY("virus", "database", CONFIG_PATH, virus_database, 1, 4095, NULL,
	    "signature directory: freshclam's (/var/lib/clamav) or a directory of .hdb/.ndb/.cvd files"),
	KEY("virus", "action", CONFIG_STRING, virus_action, 3, 10, "reject",
	    "on a virus: reject (5xx with the virus name), drop, quarantine, tag or clean"),
	KEY("virus", "sample_percent", CONFIG_UINT, virus_sample_percent, 1, 100, "100",
	    "scan this share of messages while no virus was seen recently"),
	KEY("virus", "hot_period", CONFIG_DURATION, virus_hot_period, 0, 30 * DAY, "1h",
	    "after a detection, scan every message for this long"),
	KEY("virus", "tempfail_on_error", CONFIG_BOOL, virus_tempfail_on_error, 0, 0, "yes",
	    "when the scanner fails: defer the message (yes) or pass it (no)"),
	KEY("virus", "reload_check", CONFIG_DURATION, virus_reload_check, 1, DAY, "1m",
	    "how often the signature directory is looked at for new signatures"),
	KEY("rules", "file", CONFIG_PATH, rules_file, 1, 4095, NULL,
	    "content filter rules (see docs/rules.md); none by default"),
	KEY("phrases", "file", CONFIG_PATH, phrases_file, 1, 4095, NULL,
	    "weighted phrases (lines: WEIGHT subject, body or both \"phrase\") summed into one PHRASES spam score; none by default"),
	KEY("quarantine", "expire", CONFIG_DURATION, quarantine_expire, 1, 365 * DAY, "30d",
	    "a quarantined message not released within this long is deleted"),
	KEY("actions", "virus", CONFIG_STRING, actions_virus, 3, 10, "engine",
	    "for a virus: tag, quarantine, reject, drop, defer, or engine (what the virus engine demanded)"),
	KEY("actions", "spam", CONFIG_STRING, actions_spam, 3, 10, "engine",
	    "for spam: tag, quarantine, reject, drop, defer, or engine (what the engine demanded)"),
	KEY("actions", "rule", CONFIG_STRING, actions_rule, 3, 10, "engine",
	    "for a content rule: tag, quarantine, reject, drop, defer, or engine (the rule's own action)"),
	KEY("actions", "dynamic", CONFIG_STRING, actions_dynamic, 3, 10, "engine",
	    "for client-reputation (dynamic) verdicts: tag, quarantine, reject, drop, defer, or engine"),
	KEY("actions", "subject_tag", CONFIG_STRING, actions_subject_tag, 1, 64, "[SPAM] ",
	    "put in front of the Subject of spam that is tagged (printable ASCII)"),
	KEY("actions", "status_header", CONFIG_STRING, actions_status_header, 1, 76, "X-Postern-Status",
	    "header naming the action on tagged mail"),
	KEY("actions", "reason_header", CONFIG_STRING, actions_reason_header, 1, 76, "X-Postern-Reason",
	    "header with the reasons on tagged mail"),
	KEY("actions", "scl_header", CONFIG_STRING, actions_scl_header, 1, 76, "X-Postern-SCL",
	    "header with the spam confidence level (0-9) on tagged mail"),
	KEY("bayes", "enabled", CONFIG_BOOL, bayes_enabled, 0, 0, "no",
	    "run the Bayesian filter (train it first with postern learn)"),
	KEY("bayes", "database", CONFIG_PATH, bayes_database, 1, 4095, NULL,
	    "the token database (default: <data_dir>/bayes.db)"),
	KEY("bayes", "autolearn", CONFIG_BOOL, bayes_autolearn, 0, 0, "yes",
	    "learn from messages the other engines found clearly spam or ham (each decision is logged)"),
	KEY("bayes", "autolearn_spam_score", CONFIG_SCORE, bayes_autolearn_spam_score, 0, 0, "12",
	    "learn as spam when the other engines' total score is at least this (a virus or a deny-list or DNSBL hit also counts)"),
	KEY("bayes", "autolearn_ham_score", CONFIG_SCORE, bayes_autolearn_ham_score, 0, 0, "-2",
	    "learn as ham when the other engines' total score is at most this and no action was demanded"),
	KEY("bayes", "reload_check", CONFIG_DURATION, bayes_reload_check, 1, DAY, "10s",
	    "how often the gateway looks for learning done by others (postern learn) and reloads the tokens"),
	KEY("dkim", "verify", CONFIG_BOOL, dkim_verify, 0, 0, "yes",
	    "verify DKIM signatures of incoming mail (DKIM_VALID -1, DKIM_INVALID +1)"),
	KEY("dkim", "dmarc", CONFIG_BOOL, dkim_dmarc, 0, 0, "yes",
	    "apply the From domain's DMARC policy: reject (550), quarantine, or none (+1)"),
	KEY("dkim", "authentication_results", CONFIG_BOOL, dkim_authentication_results, 0, 0, "yes",
	    "add an Authentication-Results header (SPF, DKIM, DMARC) to accepted mail"),
	KEY("dkim", "dns_timeout", CONFIG_DURATION_MS, dkim_dns_timeout_ms, 100, 60000, "5s",
	    "time for all DKIM key and DMARC look-ups of one message"),
	KEY("scoring", "suspected_scl", CONFIG_UINT, scoring_suspected_scl, 1, 9, "5",
	    "SCL from which a message is suspected spam (status suspected-spam, suspected_subject_tag)"),
	KEY("scoring", "spam_scl", CONFIG_UINT, scoring_spam_scl, 1, 9, "7",
	    "SCL from which a message is spam (status spam, [actions] subject_tag, [actions] spam)"),
	KEY("scoring", "gateway_scl", CONFIG_UINT, scoring_gateway_scl, 1, 10, "9",
	    "SCL from which gateway_action applies (10: never)"),
	KEY("scoring", "gateway_action", CONFIG_STRING, scoring_gateway_action, 3, 10, "reject",
	    "at gateway_scl and above: reject, drop, quarantine or tag"),
	KEY("scoring", "store_scl", CONFIG_UINT, scoring_store_scl, 1, 10, "5",
	    "SCL from which local delivery files the message in the Junk folder and store_header says yes (10: never)"),
	KEY("scoring", "store_header", CONFIG_STRING, scoring_store_header, 1, 76, "X-Postern-Junk",
	    "header set to yes at store_scl and above, for downstream servers' junk rules"),
	KEY("scoring", "suspected_subject_tag", CONFIG_STRING, scoring_suspected_subject_tag, 1, 64,
	    "[SUSPECTED SPAM] ", "put in front of the Subject of suspected spam (printable ASCII)"),
	KEY("phishing", "enabled", CONFIG_BOOL, phishing_enabled, 0, 0, "yes",
	    "look for phishing links: text showing another domain, IP links, brand lookalikes, shorteners, forms"),
	LIST("phishing", "brands", CONFIG_DOMAIN_LIST, phishing_brands, nphishing_brands, 0, 10000, NULL,
	     "protected brand domains whose lookalikes are phishing (default: a built-in list of much-phished brands)"),
	LIST("phishing", "shorteners", CONFIG_DOMAIN_LIST, phishing_shorteners, nphishing_shorteners, 0, 10000, NULL,
	     "URL shortener domains (default: a built-in list)"),
	KEY("fuzzy", "enabled", CONFIG_BOOL, fuzzy_enabled, 0, 0, "yes",
	    "near-duplicate detection of known spam by text shingles"),
	KEY("fuzzy", "database", CONFIG_PATH, fuzzy_database, 1, 4095, NULL,
	    "the fuzzy hash database (default: <data_dir>/fuzzy.db)"),
	KEY("fuzzy", "threshold", CONFIG_UINT, fuzzy_threshold, 10, 100, "60",
	    "percent of matching shingle hashes that makes a near-duplicate"),
	KEY("fuzzy", "score", CONFIG_SCORE, fuzzy_score, 0, 0, "10",
	    "FUZZY_SPAM score at 100 % similarity (half of it at the threshold)"),
	KEY("fuzzy", "learn_scl", CONFIG_UINT, fuzzy_learn_scl, 1, 10, "8",
	    "remember messages judged at least this SCL without the fuzzy score itself (10: never)"),
	KEY("fuzzy", "min_words", CONFIG_UINT, fuzzy_min_words, 4, 10000, "20",
	    "texts with fewer words are neither matched nor remembered"),
	KEY("fuzzy", "expire", CONFIG_DURATION, fuzzy_expire, 1, 3650 * DAY, "30d",
	    "a remembered spam hash not seen again for this long is forgotten"),
	KEY("history", "enabled", CONFIG_BOOL, history_enabled, 0, 0, "yes",
	    "noise reduction: dampen spam scores of senders with a long clean history"),
	KEY("history", "database", CONFIG_PATH, history_database, 1, 4095, NULL,
	    "the sender history database (default: <data_dir>/history.db)"),
	KEY("history", "min_messages", CONFIG_UINT, history_min_messages, 1, 100000, "10",
	    "clean messages a sender needs before its scores are dampened"),
	KEY("history", "max_spam_percent", CONFIG_UINT, history_max_spam_percent, 0, 100, "5",
	    "a sender with more spam than this share of its messages gets no dampening"),
	KEY("history", "dampen_percent", CONFIG_UINT, history_dampen_percent, 0, 100, "50",
	    "the largest share of a message's spam score taken off for a clean sender"),
	KEY("history", "half_life", CONFIG_DURATION, history_half_life, 1, 3650 * DAY, "90d",
	    "old messages weigh half after this long"),

	{ "domain", true, "hosts", CONFIG_HOSTPORT_LIST, offsetof(struct relay_domain, hosts),
	  offsetof(struct relay_domain, nhosts), 1, 64, NULL, CONFIG_KEY_REQUIRED,
	  "hosts to relay this domain's mail to, in order: HOST[:PORT], [IPv6][:PORT]" },

	NAMED("user", user_account, "password", CONFIG_PASSWORD_HASH, password_hash, 1, 512, NULL, 0,
	      "argon2id hash from `postern passwd` (default: no AUTH for this user)"),
	NAMED("user", user_account, "maildir", CONFIG_MAILDIR, maildir, 1, 4095, NULL, 0,
	      "this user's Maildir, a template like [local] maildir (default: that template)"),
	NAMED("user", user_account, "quota", CONFIG_SIZE, quota_bytes, 0, 1024 * GIB, "0", 0,
	      "Maildir size limit, 0 for none"),

	NAMED("tls", tls_cert_spec, "cert", CONFIG_PATH, cert_file, 1, 4095, NULL, CONFIG_KEY_REQUIRED,
	      "PEM certificate chain served when the client asks for this name (SNI)"),
	NAMED("tls", tls_cert_spec, "key", CONFIG_PATH, key_file, 1, 4095, NULL, CONFIG_KEY_REQUIRED,
	      "PEM private key of cert"),

	NAMED("dnsbl", dnsbl_spec, "match", CONFIG_DNSBL_MATCH, match, 1, 1024, "any", 0,
	      "which answers count as listed: any, mask:0xHEX or codes:127.0.0.2,127.0.0.4"),
	NAMED("dnsbl", dnsbl_spec, "reply", CONFIG_DNSBL_REPLY, reply, 9, 400, DNSBL_REPLY, 0,
	      "reply to a listed client: %0 its address, %1 the rule name, %2 the zone, %% a percent sign"),
	NAMED("dnsbl", dnsbl_spec, "priority", CONFIG_UINT, priority, 0, 10000, "100", 0,
	      "lists with a lower priority are checked first and name the hit"),

	NAMED("rhsbl", dnsbl_spec, "match", CONFIG_DNSBL_MATCH, match, 1, 1024, "any", 0,
	      "which answers count as listed: any, mask:0xHEX or codes:127.0.0.2,127.0.0.4"),
	NAMED("rhsbl", dnsbl_spec, "reply", CONFIG_DNSBL_REPLY, reply, 9, 400, RHSBL_REPLY, 0,
	      "reply to a listed sender: %0 the client address, %1 the rule name, %2 the zone, %% a percent sign"),
	NAMED("rhsbl", dnsbl_spec, "priority", CONFIG_UINT, priority, 0, 10000, "100", 0,
	      "lists with a lower priority are checked first and name the hit"),
};

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };

const struct config_key *config_key_find(const char *section, bool named, const char *name)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->named == named && strcmp(k->section, section) == 0 && strcmp(k->name, name) == 0)
			return k;
	}
	return NULL;
}

static void why_set(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static void *field(void *base, size_t offset)
{
	return (char *)base + offset;
}

static const void *cfield(const void *base, size_t offset)
{
	return (const char *)base + offset;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void lower_case(char *s)
{
	for (; *s; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

/*
 * RFC 1123 labels; a last label of digits only is refused so that a
 * mistyped IPv4 address ("192.0.2.300") is not taken for a name.
 */
bool config_valid_hostname(const char *name)
{
	size_t len = strlen(name), label = 0;
	bool digits_only = true;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = name[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || name[i - 1] == '-')
				return false;
			if (c == '\0')
				return !digits_only;
			label = 0;
			digits_only = true;
		} else if (is_alnum(c) || (c == '-' && label > 0)) {
			digits_only = digits_only && is_digit(c);
			label++;
		} else {
			return false;
		}
	}
	return true;
}

/* Digits only, with an overflow check: strtoul would take signs and blanks. */
static int parse_u64(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

static int parse_scaled(const char *s, const char *suffixes, const uint64_t *mults, uint64_t *out)
{
	uint64_t v, mult = 1;
	const char *suffix;

	if (parse_u64(&s, &v) < 0)
		return -1;
	if (*s != '\0') {
		if (s[1] != '\0' || (suffix = strchr(suffixes, *s)) == NULL)
			return -1;
		mult = mults[suffix - suffixes];
	}
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	static const uint64_t mults[] = { KIB, KIB, MIB, MIB, GIB, GIB };

	return parse_scaled(s, "kKmMgG", mults, out);
}

int config_parse_duration(const char *s, unsigned *out_seconds)
{
	static const uint64_t mults[] = { 1, MINUTE, HOUR, DAY };
	uint64_t v;

	if (parse_scaled(s, "smhd", mults, &v) < 0 || v > UINT32_MAX)
		return -1;
	*out_seconds = (unsigned)v;
	return 0;
}

/* Milliseconds: "500", "500ms", "2s", "1m". */
static int parse_duration_ms(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;

	if (parse_u64(&s, &v) < 0)
		return -1;
	if (strcmp(s, "s") == 0)
		mult = 1000;
	else if (strcmp(s, "m") == 0)
		mult = 60000;
	else if (*s != '\0' && strcmp(s, "ms") != 0)
		return -1;
	if (v > UINT32_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

/* The largest unit that divides the value exactly, so "35M" reads back as "35M". */
static int format_scaled(struct strbuf *out, uint64_t v, const char *units, const uint64_t *mults, size_t n)
{
	for (size_t i = n; i-- > 0;) {
		if (v != 0 && v % mults[i] == 0)
			return strbuf_appendf(out, "%llu%c", (unsigned long long)(v / mults[i]), units[i]);
	}
	return strbuf_appendf(out, "%llu", (unsigned long long)v);
}

static int format_size(struct strbuf *out, uint64_t v)
{
	static const uint64_t mults[] = { KIB, MIB, GIB };

	return format_scaled(out, v, "kMG", mults, 3);
}

static int format_duration(struct strbuf *out, uint64_t v)
{
	static const uint64_t mults[] = { 1, MINUTE, HOUR, DAY };

	return format_scaled(out, v, "smhd", mults, 4);
}

static int format_duration_ms(struct strbuf *out, uint64_t v)
{
	if (v != 0 && v % 60000 == 0)
		return strbuf_appendf(out, "%llum", (unsigned long long)(v / 60000));
	if (v != 0 && v % 1000 == 0)
		return strbuf_appendf(out, "%llus", (unsigned long long)(v / 1000));
	return strbuf_appendf(out, v != 0 ? "%llums" : "%llu", (unsigned long long)v);
}

/* "between 1k and 2G" in the key's own units, for error messages. */
static void format_range(const struct config_key *k, char *buf, size_t len)
{
	struct strbuf sb;

	strbuf_init(&sb, len);
	if (k->type == CONFIG_SIZE) {
		format_size(&sb, k->min);
		strbuf_appends(&sb, " and ");
		format_size(&sb, k->max);
	} else if (k->type == CONFIG_DURATION) {
		format_duration(&sb, k->min);
		strbuf_appends(&sb, " and ");
		format_duration(&sb, k->max);
	} else if (k->type == CONFIG_DURATION_MS) {
		format_duration_ms(&sb, k->min);
		strbuf_appends(&sb, " and ");
		format_duration_ms(&sb, k->max);
	} else {
		strbuf_appendf(&sb, "%llu and %llu", (unsigned long long)k->min, (unsigned long long)k->max);
	}
	snprintf(buf, len, "%s", sb.data ? sb.data : "");
	strbuf_free(&sb);
}

static int parse_port(const char *s, uint16_t *out)
{
	uint64_t v;

	if (parse_u64(&s, &v) < 0 || *s != '\0' || v == 0 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* Keep what a protocol line or a log line could not carry out of values. */
static bool printable_text(const char *s)
{
	for (; *s; s++) {
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	}
	return true;
}

static int set_string(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char **slot = field(base, k->offset);
	size_t len = strlen(value);

	if (len < k->min || len > k->max) {
		why_set(why, whylen, "expected a text of %llu to %llu characters, got %zu",
			(unsigned long long)k->min, (unsigned long long)k->max, len);
		return -1;
	}
	if (!printable_text(value)) {
		why_set(why, whylen, "control characters are not allowed");
		return -1;
	}
	free(*slot);
	*slot = xstrdup(value);
	return 0;
}

static bool valid_local_part(const char *s, size_t len)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~.";

	if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_alnum(s[i]) && strchr(atext, s[i]) == NULL)
			return false;
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/* local@domain with a dot-atom local part and a host name; the domain is lower-cased. */
int config_normalize_address(char *address, char *why, size_t whylen)
{
	char *at = strchr(address, '@');

	if (at == NULL || strchr(at + 1, '@') != NULL) {
		why_set(why, whylen, "expected an address local@domain with exactly one @");
		return -1;
	}
	if (!valid_local_part(address, (size_t)(at - address))) {
		why_set(why, whylen, "bad local part before the @ (letters, digits, .!#$%%&'*+-/=?^_`{|}~)");
		return -1;
	}
	if (!config_valid_hostname(at + 1)) {
		why_set(why, whylen, "\"%.*s\" after the @ is not a valid domain name", CONFIG_SHOW_MAX, at + 1);
		return -1;
	}
	lower_case(at + 1);
	return 0;
}

static bool valid_maildir(const char *s, char *why, size_t whylen)
{
	if (s[0] != '/') {
		why_set(why, whylen, "expected an absolute path");
		return false;
	}
	for (const char *p = s; (p = strchr(p, '%')) != NULL; p += 2) {
		if (p[1] != 'd' && p[1] != 'u' && p[1] != '%') {
			why_set(why, whylen, "unknown %%-escape (use %%d domain, %%u local part, %%%% percent)");
			return false;
		}
	}
	return true;
}

static bool valid_password_hash(const char *s, char *why, size_t whylen)
{
	static const char hashchars[] = "$=,+/.-";

	if (strncmp(s, "$argon2id$", 10) != 0) {
		why_set(why, whylen, "expected an argon2id hash starting with $argon2id$ (see `postern passwd`)");
		return false;
	}
	for (; *s; s++) {
		if (!is_alnum(*s) && strchr(hashchars, *s) == NULL) {
			why_set(why, whylen, "unexpected character in the argon2id hash");
			return false;
		}
	}
	return true;
}

#define CONFIG_DNSBL_CODES_MAX 32

/* "mask:0xHEX": at most 8 hex digits, not all zero (that would match nothing). */
static bool dnsbl_mask_valid(const char *hex)
{
	size_t n = strspn(hex, "0123456789abcdefABCDEF");

	return n >= 1 && n <= 8 && hex[n] == '\0' && strspn(hex, "0") < n;
}

/* "codes:A,B": IPv4 addresses in 127.0.0.0/8, written back without blanks. */
static int dnsbl_codes_normalize(const char *list, struct strbuf *out, char *why, size_t whylen)
{
	const char *p = list;
	size_t ncodes = 0;

	for (;;) {
		char code[INET_ADDRSTRLEN];
		unsigned char addr[4];
		size_t len;

		p += strspn(p, " \t");
		len = strcspn(p, ", \t");
		if (len == 0 || len >= sizeof(code)) {
			why_set(why, whylen, "expected codes:127.x.y.z[,127.x.y.z...]");
			return -1;
		}
		memcpy(code, p, len);
		code[len] = '\0';
		if (inet_pton(AF_INET, code, addr) != 1 || addr[0] != 127) {
			why_set(why, whylen, "code \"%.*s\" is not an IPv4 address in 127.0.0.0/8", CONFIG_SHOW_MAX, code);
			return -1;
		}
		if (++ncodes > CONFIG_DNSBL_CODES_MAX) {
			why_set(why, whylen, "too many codes (at most %d)", CONFIG_DNSBL_CODES_MAX);
			return -1;
		}
		strbuf_appendf(out, "%s%s", ncodes > 1 ? "," : "", code);
		p += len;
		p += strspn(p, " \t");
		if (*p == '\0')
			return 0;
		if (*p++ != ',') {
			why_set(why, whylen, "expected a comma between codes");
			return -1;
		}
	}
}

/* The match rule of a block list, normalized so that a dump reads back the same. */
static char *dnsbl_match_normalize(const char *value, char *why, size_t whylen)
{
	struct strbuf sb;

	strbuf_init(&sb, 1024);
	if (strcasecmp(value, "any") == 0) {
		strbuf_appends(&sb, "any");
	} else if (strncasecmp(value, "mask:0x", 7) == 0 && dnsbl_mask_valid(value + 7)) {
		strbuf_appendf(&sb, "mask:0x%s", value + 7);
		lower_case(sb.data);
	} else if (strncasecmp(value, "mask:", 5) == 0) {
		why_set(why, whylen, "expected mask:0x and 1 to 8 hex digits, not all zero");
		strbuf_free(&sb);
		return NULL;
	} else if (strncasecmp(value, "codes:", 6) == 0) {
		strbuf_appends(&sb, "codes:");
		if (dnsbl_codes_normalize(value + 6, &sb, why, whylen) < 0) {
			strbuf_free(&sb);
			return NULL;
		}
	} else {
		why_set(why, whylen, "expected any, mask:0xHEX or codes:127.x.y.z[,...], got \"%.*s\"",
			CONFIG_SHOW_MAX, value);
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb, NULL);
}

/* "NNN" then a space, 1 to 3 digits for each part of an enhanced code: the end of it. */
static const char *reply_codes_end(const char *s)
{
	if ((s[0] != '4' && s[0] != '5') || !is_digit(s[1]) || !is_digit(s[2]) || s[3] != ' ' ||
	    s[4] != s[0] || s[5] != '.')
		return NULL;
	s += 6;
	for (int part = 0; part < 2; part++) {
		size_t n = strspn(s, "0123456789");

		if (n < 1 || n > 3 || (part == 0 && s[n] != '.'))
			return NULL;
		s += n + (part == 0);
	}
	return s;
}

/*
 * A block list reply goes out as one SMTP reply line: a 4xx or 5xx code,
 * an enhanced code of the same class, and only the escapes the DNSBL
 * client expands.
 */
static bool valid_dnsbl_reply(const char *s, char *why, size_t whylen)
{
	const char *p = reply_codes_end(s);

	if (p == NULL || (*p != '\0' && *p != ' ')) {
		why_set(why, whylen, "expected a 4xx or 5xx reply code and an enhanced code of the same class,"
			" e.g. \"554 5.7.1 text\"");
		return false;
	}
	for (; (p = strchr(p, '%')) != NULL; p += 2) {
		if (p[1] != '0' && p[1] != '1' && p[1] != '2' && p[1] != '%') {
			why_set(why, whylen, "unknown %%-escape (use %%0 client address, %%1 rule name, %%2 zone,"
				" %%%% percent)");
			return false;
		}
	}
	return true;
}

static bool valid_rcpt_validation(char *s, char *why, size_t whylen)
{
	lower_case(s);
	if (strcmp(s, "none") == 0 || strcmp(s, "list") == 0 || strcmp(s, "callout") == 0 ||
	    strcmp(s, "ldap") == 0)
		return true;
	why_set(why, whylen, "expected none, list, callout or ldap, got \"%.*s\"", CONFIG_SHOW_MAX, s);
	return false;
}

/* The typed strings: check their syntax, then store them like any string. */
static int set_checked_string(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char *copy = xstrdup(value);
	int ok = 1;

	switch (k->type) {
	case CONFIG_PATH:
		if (value[0] != '/') {
			why_set(why, whylen, "expected an absolute path");
			ok = 0;
		}
		break;
	case CONFIG_HOSTNAME:
		if (!config_valid_hostname(value)) {
			why_set(why, whylen, "\"%.*s\" is not a valid host name", CONFIG_SHOW_MAX, value);
			ok = 0;
		}
		break;
	case CONFIG_ADDRESS:
		ok = config_normalize_address(copy, why, whylen) == 0;
		break;
	case CONFIG_MAILDIR:
		ok = valid_maildir(value, why, whylen);
		break;
	case CONFIG_PASSWORD_HASH:
		ok = valid_password_hash(value, why, whylen);
		break;
	case CONFIG_TLS_VERSION:
		if (strcmp(value, "TLSv1.2") != 0 && strcmp(value, "TLSv1.3") != 0) {
			why_set(why, whylen, "expected TLSv1.2 or TLSv1.3");
			ok = 0;
		}
		break;
	case CONFIG_DNSBL_MATCH:
		free(copy);
		copy = dnsbl_match_normalize(value, why, whylen);
		ok = copy != NULL;
		break;
	case CONFIG_DNSBL_REPLY:
		ok = valid_dnsbl_reply(value, why, whylen);
		break;
	case CONFIG_RCPT_VALIDATION:
		ok = valid_rcpt_validation(copy, why, whylen);
		break;
	default:
		panic("set_checked_string: type %d", (int)k->type);
	}
	if (ok && set_string(k, base, copy, why, whylen) < 0)
		ok = 0;
	free(copy);
	return ok ? 0 : -1;
}

static int set_bool(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	bool *slot = field(base, k->offset);

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*slot = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*slot = false;
			return 0;
		}
	}
	why_set(why, whylen, "expected yes or no (true/false, on/off, 1/0), got \"%.*s\"", CONFIG_SHOW_MAX, value);
	return -1;
}

static int set_number(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char range[96];
	uint64_t v;
	unsigned secs = 0;
	const char *p = value;
	int r;

	if (k->type == CONFIG_SIZE) {
		r = config_parse_size(value, &v);
	} else if (k->type == CONFIG_DURATION) {
		r = config_parse_duration(value, &secs);
		v = secs;
	} else if (k->type == CONFIG_DURATION_MS) {
		r = parse_duration_ms(value, &v);
	} else {
		r = parse_u64(&p, &v) < 0 || *p != '\0' ? -1 : 0;
	}
	if (r < 0 || v < k->min || v > k->max) {
		format_range(k, range, sizeof(range));
		why_set(why, whylen, "expected %s between %s, got \"%.*s\"",
			k->type == CONFIG_SIZE ? "a size in bytes or with a k, M or G suffix" :
			k->type == CONFIG_DURATION ? "a duration in seconds or with an s, m, h or d suffix" :
			k->type == CONFIG_DURATION_MS ? "a duration in milliseconds or with an ms, s or m suffix" :
			"an integer", range, CONFIG_SHOW_MAX, value);
		return -1;
	}
	if (k->type == CONFIG_SIZE)
		*(uint64_t *)field(base, k->offset) = v;
	else
		*(unsigned *)field(base, k->offset) = (unsigned)v;
	return 0;
}

static int set_log_level(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcasecmp(value, log_level_names[i]) == 0) {
			*(enum log_level *)field(base, k->offset) = (enum log_level)i;
			return 0;
		}
	}
	why_set(why, whylen, "expected error, warn, info or debug, got \"%.*s\"", CONFIG_SHOW_MAX, value);
	return -1;
}

static int set_bare_newline(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	enum bare_newline_policy *slot = field(base, k->offset);

	if (strcasecmp(value, "reject") == 0) {
		*slot = BARE_NEWLINE_REJECT;
	} else if (strcasecmp(value, "normalize") == 0) {
		*slot = BARE_NEWLINE_NORMALIZE;
	} else {
		why_set(why, whylen, "expected reject or normalize, got \"%.*s\"", CONFIG_SHOW_MAX, value);
		return -1;
	}
	return 0;
}

static const char *const action_names[] = { "reject", "defer", "tag", "ignore" };
static const char *const direction_names[] = { NULL, "inbound", "outbound", "both" };

static int set_policy_action(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++) {
		if (strcasecmp(value, action_names[i]) == 0) {
			*(enum policy_action *)field(base, k->offset) = (enum policy_action)i;
			return 0;
		}
	}
	why_set(why, whylen, "expected reject, defer, tag or ignore, got \"%.*s\"", CONFIG_SHOW_MAX, value);
	return -1;
}

static int set_direction(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	for (size_t i = 1; i < sizeof(direction_names) / sizeof(direction_names[0]); i++) {
		if (strcasecmp(value, direction_names[i]) == 0) {
			*(enum policy_direction *)field(base, k->offset) = (enum policy_direction)i;
			return 0;
		}
	}
	why_set(why, whylen, "expected inbound, outbound or both, got \"%.*s\"", CONFIG_SHOW_MAX, value);
	return -1;
}

#define SCORE_MAX 100
#define SCORE_DECIMALS_MAX 3

/*
 * A score is read in thousandths so that "2.5" is exact, printed back the
 * same way, and no locale can turn the decimal point into a comma.
 */
static int parse_score(const char *s, long long *milli)
{
	uint64_t whole, frac = 0;
	bool negative = *s == '-';
	size_t ndec = 0;

	if (negative)
		s++;
	if (parse_u64(&s, &whole) < 0 || whole > SCORE_MAX)
		return -1;
	if (*s == '.') {
		s++;
		for (; is_digit(*s) && ndec < SCORE_DECIMALS_MAX; s++, ndec++)
			frac = frac * 10 + (uint64_t)(*s - '0');
		if (ndec == 0)
			return -1;
		for (size_t i = ndec; i < SCORE_DECIMALS_MAX; i++)
			frac *= 10;
	}
	if (*s != '\0')
		return -1;
	*milli = (long long)(whole * 1000 + frac) * (negative ? -1 : 1);
	return *milli > SCORE_MAX * 1000 || *milli < -SCORE_MAX * 1000 ? -1 : 0;
}

static int set_score(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	long long milli;

	if (parse_score(value, &milli) < 0) {
		why_set(why, whylen, "expected a number between -%d and %d with at most %d decimals, got \"%.*s\"",
			SCORE_MAX, SCORE_MAX, SCORE_DECIMALS_MAX, CONFIG_SHOW_MAX, value);
		return -1;
	}
	*(double *)field(base, k->offset) = (double)milli / 1000.0;
	return 0;
}

/* The shortest text parse_score reads back as the same thousandths. */
static int format_score(struct strbuf *out, double v)
{
	long long milli = (long long)(v * 1000.0 + (v < 0 ? -0.5 : 0.5));
	unsigned long long a = (unsigned long long)(milli < 0 ? -milli : milli);
	char frac[8];
	size_t n;

	snprintf(frac, sizeof(frac), "%03llu", a % 1000);
	for (n = 3; n > 0 && frac[n - 1] == '0'; n--)
		;
	frac[n] = '\0';
	return strbuf_appendf(out, "%s%llu%s%s", milli < 0 ? "-" : "", a / 1000, n > 0 ? "." : "", frac);
}

struct item_list {
	char **items;
	size_t count;
};

static void item_list_free(struct item_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* Items are separated by any run of commas and blanks. */
static int split_list(const struct config_key *k, const char *value, struct item_list *out,
		      char *why, size_t whylen)
{
	const char *p = value;

	out->items = NULL;
	out->count = 0;
	for (;;) {
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (out->count == k->max) {
			why_set(why, whylen, "too many items (at most %llu)", (unsigned long long)k->max);
			goto fail;
		}
		if (len > CONFIG_ITEM_MAX) {
			why_set(why, whylen, "item \"%.*s...\" is too long", CONFIG_SHOW_MAX, p);
			goto fail;
		}
		out->items = xreallocarray(out->items, out->count + 1, sizeof(*out->items));
		out->items[out->count++] = xstrndup(p, len);
		p += len;
	}
	if (out->count < k->min) {
		why_set(why, whylen, "expected at least %llu item%s", (unsigned long long)k->min,
			k->min == 1 ? "" : "s");
		goto fail;
	}
	return 0;
fail:
	item_list_free(out);
	return -1;
}

/*
 * "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address. host
 * comes back normalized (IP literals via inet_ntop, names lower case);
 * *has_port tells whether a port was written.
 */
static int parse_hostport(const char *item, bool ip_only, char *host, size_t hostlen,
			  uint16_t *port, bool *has_port)
{
	char buf[CONFIG_ITEM_MAX + 1];
	unsigned char addr[16];
	const char *portstr = NULL;
	char *name = buf;

	snprintf(buf, sizeof(buf), "%s", item);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return -1;
		*close = '\0';
		name = buf + 1;
		if (close[1] == ':')
			portstr = close + 2;
		if (inet_pton(AF_INET6, name, addr) != 1)
			return -1;
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		/* a bare IPv6 address: the colons are its own */
	} else {
		char *colon = strchr(buf, ':');

		if (colon != NULL) {
			*colon = '\0';
			portstr = colon + 1;
		}
		if (inet_pton(AF_INET, name, addr) != 1 && (ip_only || !config_valid_hostname(name)))
			return -1;
	}
	*has_port = portstr != NULL;
	if (portstr != NULL && parse_port(portstr, port) < 0)
		return -1;
	if (strchr(name, ':') != NULL)
		inet_ntop(AF_INET6, addr, name, (socklen_t)(sizeof(buf) - (size_t)(name - buf)));
	lower_case(name);
	if (strlen(name) >= hostlen)
		return -1;
	memcpy(host, name, strlen(name) + 1);
	return 0;
}

static int set_hostport_list(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	struct hostport **slot = field(base, k->offset);
	size_t *count = field(base, k->count_offset);
	struct item_list items;
	struct hostport *hosts;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	hosts = xcalloc(items.count, sizeof(*hosts));
	for (size_t i = 0; i < items.count; i++) {
		char host[CONFIG_ITEM_MAX + 1];
		bool has_port;

		hosts[i].port = 25;
		if (parse_hostport(items.items[i], false, host, sizeof(host), &hosts[i].port, &has_port) < 0) {
			why_set(why, whylen, "bad host \"%.*s\": expected HOST[:PORT] or [IPv6][:PORT]",
				CONFIG_SHOW_MAX, items.items[i]);
			for (size_t j = 0; j < i; j++)
				free(hosts[j].host);
			free(hosts);
			item_list_free(&items);
			return -1;
		}
		hosts[i].host = xstrdup(host);
	}
	config_key_clear(k, base);
	*slot = hosts;
	*count = items.count;
	item_list_free(&items);
	return 0;
}

static int set_nameservers(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char **slot = field(base, k->offset);
	struct item_list items;
	struct strbuf sb;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	strbuf_init(&sb, (CONFIG_ITEM_MAX + 1) * k->max);
	for (size_t i = 0; i < items.count; i++) {
		char host[INET6_ADDRSTRLEN + 1];
		uint16_t port;
		bool has_port, v6;

		if (parse_hostport(items.items[i], true, host, sizeof(host), &port, &has_port) < 0) {
			why_set(why, whylen, "bad name server \"%.*s\": expected IP[:PORT] or [IPv6]:PORT",
				CONFIG_SHOW_MAX, items.items[i]);
			strbuf_free(&sb);
			item_list_free(&items);
			return -1;
		}
		v6 = strchr(host, ':') != NULL;
		if (i > 0)
			strbuf_appends(&sb, ",");
		if (!has_port)
			strbuf_appends(&sb, host);
		else
			strbuf_appendf(&sb, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
	}
	item_list_free(&items);
	free(*slot);
	*slot = strbuf_detach(&sb, NULL);
	return 0;
}

static const char *const listen_kind_names[] = { "smtp", "smtps", "submission" };

static int parse_listen(const char *item, struct listen_spec *out)
{
	char buf[CONFIG_ITEM_MAX + 1];
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];
	char *slash, *colon, *host = buf;
	int family = AF_INET;

	snprintf(buf, sizeof(buf), "%s", item);
	out->kind = LISTEN_SMTP;
	if ((slash = strchr(buf, '/')) != NULL) {
		size_t i;

		*slash = '\0';
		for (i = 0; i < 3 && strcasecmp(slash + 1, listen_kind_names[i]) != 0; i++)
			;
		if (i == 3)
			return -1;
		out->kind = (enum listen_kind)i;
	}
	if ((colon = strrchr(buf, ':')) == NULL || parse_port(colon + 1, &out->port) < 0)
		return -1;
	*colon = '\0';
	if (buf[0] == '[') {
		if (colon == buf || colon[-1] != ']')
			return -1;
		colon[-1] = '\0';
		host = buf + 1;
		family = AF_INET6;
	} else if (strcmp(buf, "*") == 0) {
		host = "0.0.0.0";
	}
	if (inet_pton(family, host, addr) != 1)
		return -1;
	inet_ntop(family, addr, text, sizeof(text));
	out->addr = xstrdup(text);
	return 0;
}

static void listen_free(struct listen_spec *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i].addr);
	free(l);
}

/* Parse every item into l; the count of entries filled is returned in *done. */
static int parse_listen_items(const struct item_list *items, struct listen_spec *l, size_t *done,
			      char *why, size_t whylen)
{
	for (*done = 0; *done < items->count; (*done)++) {
		size_t i = *done;

		if (parse_listen(items->items[i], &l[i]) < 0) {
			why_set(why, whylen, "bad listen address \"%.*s\": expected ADDR:PORT[/smtp|smtps|submission]"
				" with ADDR an IPv4 address, [IPv6] or *", CONFIG_SHOW_MAX, items->items[i]);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (l[j].port == l[i].port && strcmp(l[j].addr, l[i].addr) == 0) {
				why_set(why, whylen, "\"%.*s\" has the address and port of \"%.*s\"",
					CONFIG_SHOW_MAX, items->items[i], CONFIG_SHOW_MAX, items->items[j]);
				free(l[i].addr);
				return -1;
			}
		}
	}
	return 0;
}

static int set_listen_list(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	struct listen_spec **slot = field(base, k->offset);
	size_t *count = field(base, k->count_offset);
	struct item_list items;
	struct listen_spec *l;
	size_t done;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	l = xcalloc(items.count, sizeof(*l));
	if (parse_listen_items(&items, l, &done, why, whylen) < 0) {
		listen_free(l, done);
		item_list_free(&items);
		return -1;
	}
	config_key_clear(k, base);
	*slot = l;
	*count = items.count;
	item_list_free(&items);
	return 0;
}

static int strptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Kept sorted so config_is_local_domain can binary-search it. */
static int set_domain_list(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char ***slot = field(base, k->offset);
	size_t *count = field(base, k->count_offset);
	struct item_list items;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	for (size_t i = 0; i < items.count; i++) {
		if (!config_valid_hostname(items.items[i])) {
			why_set(why, whylen, "\"%.*s\" is not a valid domain name", CONFIG_SHOW_MAX, items.items[i]);
			item_list_free(&items);
			return -1;
		}
		lower_case(items.items[i]);
	}
	if (items.count > 0)
		qsort(items.items, items.count, sizeof(*items.items), strptr_cmp);
	for (size_t i = 1; i < items.count; i++) {
		if (strcmp(items.items[i - 1], items.items[i]) == 0) {
			why_set(why, whylen, "\"%.*s\" is listed twice", CONFIG_SHOW_MAX, items.items[i]);
			item_list_free(&items);
			return -1;
		}
	}
	config_key_clear(k, base);
	*slot = items.items;
	*count = items.count;
	return 0;
}

char *config_normalize_pattern(const char *pattern, char *why, size_t whylen)
{
	const char *at = strchr(pattern, '@');
	char *out;

	if (at == NULL || at == pattern) {
		const char *domain = at == NULL ? pattern : at + 1;

		if (!config_valid_hostname(domain)) {
			why_set(why, whylen, "\"%.*s\" is not an address, @domain or domain", CONFIG_SHOW_MAX, pattern);
			return NULL;
		}
		out = xmalloc(strlen(domain) + 2);
		out[0] = '@';
		memcpy(out + 1, domain, strlen(domain) + 1);
		lower_case(out);
		return out;
	}
	out = xstrdup(pattern);
	if (config_normalize_address(out, why, whylen) < 0) {
		size_t len = strlen(why);

		if (len + 1 < whylen)
			snprintf(why + len, whylen - len, " in \"%.*s\"", CONFIG_SHOW_MAX, pattern);
		free(out);
		return NULL;
	}
	return out;
}

/* Sorted, so the engines can binary-search; a pattern written twice is a typo. */
static int set_string_list(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char ***slot = field(base, k->offset);
	size_t *count = field(base, k->count_offset);
	struct item_list items;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	for (size_t i = 0; i < items.count; i++) {
		char *norm = config_normalize_pattern(items.items[i], why, whylen);

		if (norm == NULL) {
			item_list_free(&items);
			return -1;
		}
		free(items.items[i]);
		items.items[i] = norm;
	}
	if (items.count > 0)
		qsort(items.items, items.count, sizeof(*items.items), strptr_cmp);
	for (size_t i = 1; i < items.count; i++) {
		if (strcmp(items.items[i - 1], items.items[i]) == 0) {
			why_set(why, whylen, "\"%.*s\" is listed twice", CONFIG_SHOW_MAX, items.items[i]);
			item_list_free(&items);
			return -1;
		}
	}
	config_key_clear(k, base);
	*slot = items.items;
	*count = items.count;
	return 0;
}

static int set_cidr_list(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	struct cidr_list *slot = field(base, k->offset);
	struct cidr_list list = { 0 };
	struct item_list items;

	if (split_list(k, value, &items, why, whylen) < 0)
		return -1;
	for (size_t i = 0; i < items.count; i++) {
		if (cidr_list_add(&list, items.items[i]) < 0) {
			why_set(why, whylen, "bad network \"%.*s\": expected an IPv4 or IPv6 address or a prefix"
				" like 192.0.2.0/24", CONFIG_SHOW_MAX, items.items[i]);
			cidr_list_free(&list);
			item_list_free(&items);
			return -1;
		}
	}
	cidr_list_finish(&list);
	item_list_free(&items);
	cidr_list_free(slot);
	*slot = list;
	return 0;
}

int config_key_set(const struct config_key *k, void *base, const char *value, char *why, size_t whylen)
{
	switch (k->type) {
	case CONFIG_STRING:
		return set_string(k, base, value, why, whylen);
	case CONFIG_PATH:
	case CONFIG_HOSTNAME:
	case CONFIG_ADDRESS:
	case CONFIG_MAILDIR:
	case CONFIG_PASSWORD_HASH:
	case CONFIG_TLS_VERSION:
	case CONFIG_DNSBL_MATCH:
	case CONFIG_DNSBL_REPLY:
	case CONFIG_RCPT_VALIDATION:
		return set_checked_string(k, base, value, why, whylen);
	case CONFIG_NAMESERVERS:
		return set_nameservers(k, base, value, why, whylen);
	case CONFIG_BOOL:
		return set_bool(k, base, value, why, whylen);
	case CONFIG_UINT:
	case CONFIG_SIZE:
	case CONFIG_DURATION:
	case CONFIG_DURATION_MS:
		return set_number(k, base, value, why, whylen);
	case CONFIG_POLICY_ACTION:
		return set_policy_action(k, base, value, why, whylen);
	case CONFIG_DIRECTION:
		return set_direction(k, base, value, why, whylen);
	case CONFIG_SCORE:
		return set_score(k, base, value, why, whylen);
	case CONFIG_STRING_LIST:
		return set_string_list(k, base, value, why, whylen);
	case CONFIG_LOG_LEVEL:
		return set_log_level(k, base, value, why, whylen);
	case CONFIG_BARE_NEWLINE:
		return set_bare_newline(k, base, value, why, whylen);
	case CONFIG_LISTEN_LIST:
		return set_listen_list(k, base, value, why, whylen);
	case CONFIG_HOSTPORT_LIST:
		return set_hostport_list(k, base, value, why, whylen);
	case CONFIG_DOMAIN_LIST:
		return set_domain_list(k, base, value, why, whylen);
	case CONFIG_CIDR_LIST:
		return set_cidr_list(k, base, value, why, whylen);
	}
	panic("config_key_set: type %d", (int)k->type);
}

void config_key_clear(const struct config_key *k, void *base)
{
	switch (k->type) {
	case CONFIG_STRING:
	case CONFIG_PATH:
	case CONFIG_HOSTNAME:
	case CONFIG_ADDRESS:
	case CONFIG_MAILDIR:
	case CONFIG_PASSWORD_HASH:
	case CONFIG_TLS_VERSION:
	case CONFIG_NAMESERVERS:
	case CONFIG_DNSBL_MATCH:
	case CONFIG_DNSBL_REPLY:
	case CONFIG_RCPT_VALIDATION: {
		char **slot = field(base, k->offset);
		free(*slot);
		*slot = NULL;
		break;
	}
	case CONFIG_LISTEN_LIST: {
		struct listen_spec **slot = field(base, k->offset);
		size_t *count = field(base, k->count_offset);
		listen_free(*slot, *count);
		*slot = NULL;
		*count = 0;
		break;
	}
	case CONFIG_HOSTPORT_LIST: {
		struct hostport **slot = field(base, k->offset);
		size_t *count = field(base, k->count_offset);
		for (size_t i = 0; i < *count; i++)
			free((*slot)[i].host);
		free(*slot);
		*slot = NULL;
		*count = 0;
		break;
	}
	case CONFIG_DOMAIN_LIST:
	case CONFIG_STRING_LIST: {
		char ***slot = field(base, k->offset);
		size_t *count = field(base, k->count_offset);
		for (size_t i = 0; i < *count; i++)
			free((*slot)[i]);
		free(*slot);
		*slot = NULL;
		*count = 0;
		break;
	}
	case CONFIG_CIDR_LIST:
		cidr_list_free(field(base, k->offset));
		break;
	case CONFIG_BOOL:
	case CONFIG_UINT:
	case CONFIG_SIZE:
	case CONFIG_DURATION:
	case CONFIG_LOG_LEVEL:
	case CONFIG_BARE_NEWLINE:
	case CONFIG_DURATION_MS:
	case CONFIG_POLICY_ACTION:
	case CONFIG_DIRECTION:
	case CONFIG_SCORE:
		break;
	}
}

static int format_listen(struct strbuf *out, const struct listen_spec *l)
{
	const char *fmt = strchr(l->addr, ':') != NULL ? "[%s]:%u" : "%s:%u";

	if (strbuf_appendf(out, fmt, l->addr, (unsigned)l->port) < 0)
		return -1;
	if (l->kind != LISTEN_SMTP)
		return strbuf_appendf(out, "/%s", listen_kind_names[l->kind]);
	return 0;
}

static int format_hostport(struct strbuf *out, const struct hostport *h)
{
	const char *fmt = strchr(h->host, ':') != NULL ? "[%s]:%u" : "%s:%u";

	return strbuf_appendf(out, fmt, h->host, (unsigned)h->port);
}

static int format_list(const struct config_key *k, const void *base, struct strbuf *out)
{
	size_t count = *(const size_t *)cfield(base, k->count_offset);

	for (size_t i = 0; i < count; i++) {
		int r;

		if (i > 0 && strbuf_appends(out, ", ") < 0)
			return -1;
		if (k->type == CONFIG_LISTEN_LIST)
			r = format_listen(out, &(*(struct listen_spec *const *)cfield(base, k->offset))[i]);
		else if (k->type == CONFIG_HOSTPORT_LIST)
			r = format_hostport(out, &(*(struct hostport *const *)cfield(base, k->offset))[i]);
		else
			r = strbuf_appends(out, (*(char **const *)cfield(base, k->offset))[i]);
		if (r < 0)
			return -1;
	}
	return 0;
}

int config_key_format(const struct config_key *k, const void *base, struct strbuf *out)
{
	const void *p = cfield(base, k->offset);

	switch (k->type) {
	case CONFIG_STRING:
	case CONFIG_PATH:
	case CONFIG_HOSTNAME:
	case CONFIG_ADDRESS:
	case CONFIG_MAILDIR:
	case CONFIG_PASSWORD_HASH:
	case CONFIG_TLS_VERSION:
	case CONFIG_NAMESERVERS:
	case CONFIG_DNSBL_MATCH:
	case CONFIG_DNSBL_REPLY:
	case CONFIG_RCPT_VALIDATION:
		if (*(char *const *)p == NULL)
			return -1;
		return strbuf_appends(out, *(char *const *)p);
	case CONFIG_BOOL:
		return strbuf_appends(out, *(const bool *)p ? "yes" : "no");
	case CONFIG_UINT:
		return strbuf_appendf(out, "%u", *(const unsigned *)p);
	case CONFIG_SIZE:
		return format_size(out, *(const uint64_t *)p);
	case CONFIG_DURATION:
		return format_duration(out, *(const unsigned *)p);
	case CONFIG_LOG_LEVEL:
		return strbuf_appends(out, log_level_names[*(const enum log_level *)p]);
	case CONFIG_BARE_NEWLINE:
		return strbuf_appends(out, *(const enum bare_newline_policy *)p == BARE_NEWLINE_REJECT ?
				      "reject" : "normalize");
	case CONFIG_DURATION_MS:
		return format_duration_ms(out, *(const unsigned *)p);
	case CONFIG_POLICY_ACTION:
		return strbuf_appends(out, action_names[*(const enum policy_action *)p]);
	case CONFIG_DIRECTION:
		return strbuf_appends(out, direction_names[*(const enum policy_direction *)p]);
	case CONFIG_SCORE:
		return format_score(out, *(const double *)p);
	case CONFIG_LISTEN_LIST:
	case CONFIG_HOSTPORT_LIST:
	case CONFIG_DOMAIN_LIST:
	case CONFIG_STRING_LIST:
		return format_list(k, base, out);
	case CONFIG_CIDR_LIST:
		return cidr_list_format(p, out);
	}
	panic("config_key_format: type %d", (int)k->type);
}
