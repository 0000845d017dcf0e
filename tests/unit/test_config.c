#include "unit.h"

#include <arpa/inet.h>
#include <limits.h>
#include <time.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"

static struct config *parse(const char *text, struct config_error *err)
{
	return config_parse("test.conf", text, strlen(text), err);
}

static void fail_with_error(const char *file, int line, const char *what, const struct config_error *err)
{
	char buf[1200];

	config_error_format(err, buf, sizeof(buf));
	unit_fail(file, line, "%s: %s", what, buf);
}

/* Parse text that must be valid; the caller unrefs. */
static struct config *parse_ok_at(const char *file, int line, const char *text)
{
	struct config_error err;
	struct config *cfg = parse(text, &err);

	if (cfg == NULL) {
		fail_with_error(file, line, "unexpected error", &err);
		exit(1);
	}
	return cfg;
}
#define parse_ok(text) parse_ok_at(__FILE__, __LINE__, text)

/* text must fail at line with key (may be "") and a message containing part. */
static void expect_error_at(const char *file, int line, const char *text, unsigned eline,
			    const char *key, const char *part)
{
	struct config_error err;
	struct config *cfg = parse(text, &err);

	if (cfg != NULL) {
		unit_fail(file, line, "accepted, expected an error \"%s\"", part);
		config_unref(cfg);
		return;
	}
	if (err.line != eline || strcmp(err.key, key) != 0 || strstr(err.message, part) == NULL)
		fail_with_error(file, line, "wrong error", &err);
	if (strcmp(err.file, "test.conf") != 0)
		unit_fail(file, line, "error file is \"%s\"", err.file);
}
#define expect_error(text, eline, key, part) expect_error_at(__FILE__, __LINE__, text, eline, key, part)

/* Set one key in a fresh config; returns it or NULL with why filled. */
static struct config *with(const char *section, const char *key, const char *value, char *why, size_t len)
{
	struct config *cfg = config_new();

	if (config_set(cfg, section, key, value, why, len) < 0) {
		config_unref(cfg);
		return NULL;
	}
	return cfg;
}

#define CHECK_VALUE_OK(section, key, value)                                                       \
	do {                                                                                      \
		char why_[512];                                                                   \
		struct config *c_ = with(section, key, value, why_, sizeof(why_));                \
		if (c_ == NULL)                                                                   \
			unit_fail(__FILE__, __LINE__, "[%s] %s = \"%s\": %s", section, key, value, why_); \
		else                                                                              \
			config_unref(c_);                                                         \
	} while (0)

#define CHECK_VALUE_BAD(section, key, value, part)                                                \
	do {                                                                                      \
		char why_[512];                                                                   \
		struct config *c_ = with(section, key, value, why_, sizeof(why_));                \
		if (c_ != NULL) {                                                                 \
			unit_fail(__FILE__, __LINE__, "[%s] %s = \"%s\" accepted", section, key, value); \
			config_unref(c_);                                                         \
		} else if (strstr(why_, part) == NULL) {                                          \
			unit_fail(__FILE__, __LINE__, "[%s] %s = \"%s\": \"%s\" lacks \"%s\"",         \
				  section, key, value, why_, part);                               \
		}                                                                                 \
	} while (0)

/* The source tree: __FILE__ is relative to the compiler's directory (the repo or a build dir). */
static int source_path(const char *rel, char *out, size_t len)
{
	const char *me = __FILE__;
	const char *tail = strstr(me, "tests/unit/test_config.c");
	char exe[PATH_MAX];
	ssize_t n;
	struct stat st;

	if (tail == NULL)
		return -1;
	if (snprintf(out, len, "%.*s%s", (int)(tail - me), me, rel) < (int)len && stat(out, &st) == 0)
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0 && me[0] != '/') {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		if (snprintf(out, len, "%s/%.*s%s", exe, (int)(tail - me), me, rel) < (int)len &&
		    stat(out, &st) == 0)
			return 0;
	}
	return -1;
}

TEST(config_defaults)
{
	struct config *cfg = parse_ok("");

	CHECK(cfg->hostname != NULL && cfg->hostname[0] != '\0');
	CHECK(config_valid_hostname(cfg->hostname));
	CHECK_STR(cfg->banner, "postern ESMTP");
	CHECK_INT(cfg->nlistens, 3);
	CHECK_STR(cfg->listens[0].addr, "0.0.0.0");
	CHECK_INT(cfg->listens[0].port, 25);
	CHECK_INT(cfg->listens[0].kind, LISTEN_SMTP);
	CHECK_INT(cfg->listens[1].port, 465);
	CHECK_INT(cfg->listens[1].kind, LISTEN_SMTPS);
	CHECK_INT(cfg->listens[2].port, 587);
	CHECK_INT(cfg->listens[2].kind, LISTEN_SUBMISSION);
	CHECK_STR(cfg->user, "postern");
	CHECK(cfg->group == NULL);
	CHECK_STR(cfg->data_dir, "/var/lib/postern");
	CHECK_STR(cfg->admin_socket, "/run/postern/admin.sock");
	CHECK(cfg->pid_file == NULL);
	CHECK_INT(cfg->log_level, LOG_LEVEL_INFO);
	CHECK(cfg->log_file == NULL);
	CHECK(cfg->log_stderr);
	CHECK(!cfg->log_syslog);
	CHECK_INT(cfg->max_message_size, 35 * 1024 * 1024);
	CHECK_INT(cfg->max_recipients, 100);
	CHECK_INT(cfg->max_command_length, 2048);
	CHECK_INT(cfg->max_line_length, 8192);
	CHECK_INT(cfg->max_sessions, 1000);
	CHECK_INT(cfg->max_errors, 10);
	CHECK_INT(cfg->max_messages_per_session, 1000);
	CHECK_INT(cfg->timeout_command, 300);
	CHECK_INT(cfg->timeout_data, 600);
	CHECK_INT(cfg->timeout_tls, 60);
	CHECK_INT(cfg->bare_newline, BARE_NEWLINE_NORMALIZE);
	CHECK(!cfg->vrfy);
	CHECK(!cfg->expn);
	CHECK(cfg->tls_cert_file == NULL && cfg->tls_key_file == NULL && cfg->tls_ciphers == NULL);
	CHECK_STR(cfg->tls_min_version, "TLSv1.2");
	CHECK_INT(cfg->ntls_sni, 0);
	CHECK(cfg->auth_enabled);
	CHECK_INT(cfg->auth_max_failures, 3);
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "127.0.0.1"));
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "127.255.255.255"));
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "::1"));
	CHECK(!cidr_list_contains_text(&cfg->trusted_networks, "192.0.2.1"));
	CHECK_INT(cfg->ndomains, 0);
	CHECK_INT(cfg->nlocal_domains, 0);
	CHECK(cfg->maildir_template == NULL);
	CHECK_INT(cfg->nusers, 0);
	CHECK_STR(cfg->spool_dir, "/var/spool/postern");
	CHECK_INT(cfg->queue_lifetime, 5 * 86400);
	CHECK_INT(cfg->retry_min, 300);
	CHECK_INT(cfg->retry_max, 3600);
	CHECK_INT(cfg->max_deliveries, 100);
	CHECK_INT(cfg->max_per_destination, 20);
	CHECK(cfg->bounce_from == NULL);
	CHECK(cfg->spool_syncfs);
	CHECK_INT(cfg->mx_port, 25);
	CHECK(cfg->outbound_tls);
	CHECK_INT(cfg->timeout_connect, 30);
	CHECK_INT(cfg->timeout_reply, 300);
	CHECK(cfg->helo_name == NULL);
	CHECK(cfg->dns_servers == NULL);
	CHECK_INT(cfg->dns_timeout_ms, 5000);
	CHECK_INT(cfg->dns_tries, 2);
	CHECK_INT(cfg->refcount, 1);
	CHECK_STR(cfg->path, "test.conf");
	config_unref(cfg);
}

/* Each default reads back exactly as written, so docs, dump and table agree. */
TEST(config_table_is_consistent)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		struct config *cfg = config_new();
		struct relay_domain dom = { 0 };
		struct user_account user = { 0 };
		struct tls_cert_spec sni = { 0 };
		struct dnsbl_spec bl = { 0 };
		void *base = cfg;
		struct strbuf sb;
		char why[256];

		CHECK(k->help != NULL && k->help[0] != '\0');
		CHECK(config_key_find(k->section, k->named, k->name) == k);
		for (const char *c = k->name; *c; c++)
			CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_');
		if (k->named)
			base = strcmp(k->section, "domain") == 0 ? (void *)&dom :
			       strcmp(k->section, "user") == 0 ? (void *)&user :
			       strcmp(k->section, "tls") == 0 ? (void *)&sni : (void *)&bl;
		if (k->def != NULL) {
			strbuf_init(&sb, 4096);
			if (config_key_set(k, base, k->def, why, sizeof(why)) < 0)
				unit_fail(__FILE__, __LINE__, "[%s] %s default: %s", k->section, k->name, why);
			CHECK_INT(config_key_format(k, base, &sb), 0);
			if (strcmp(sb.data, k->def) != 0)
				unit_fail(__FILE__, __LINE__, "[%s] %s: default \"%s\" prints as \"%s\"",
					  k->section, k->name, k->def, sb.data);
			strbuf_free(&sb);
		}
		if (k->named)
			config_key_clear(k, base);
		config_unref(cfg);
	}
	CHECK(config_key_find("server", false, "nosuch") == NULL);
	CHECK(config_key_find("domain", false, "hosts") == NULL);
	CHECK(config_key_find("tls", true, "ciphers") == NULL);
}

TEST(config_shipped_file_parses)
{
	char path[PATH_MAX];
	struct config_error err;
	struct config *cfg;

	CHECK_INT(source_path("etc/postern.conf", path, sizeof(path)), 0);
	cfg = config_load(path, &err);
	if (cfg == NULL) {
		fail_with_error(__FILE__, __LINE__, "etc/postern.conf", &err);
		return;
	}
	CHECK_INT(cfg->nlistens, 3);
	CHECK_INT(cfg->listens[1].kind, LISTEN_SMTPS);
	CHECK_STR(cfg->user, "postern");
	CHECK_STR(cfg->spool_dir, "/var/spool/postern");
	CHECK_STR(cfg->data_dir, "/var/lib/postern");
	CHECK_STR(cfg->admin_socket, "/run/postern/admin.sock");
	CHECK_STR(cfg->path, path);
	CHECK_INT(cfg->ndomains, 0);
	CHECK(cfg->spf.enabled);
	CHECK_INT(cfg->spf_fail, POLICY_ACTION_TAG);
	CHECK(!cfg->rdns.enabled);
	CHECK(!cfg->greylist.enabled);
	CHECK_INT(cfg->ndnsbls, 0);
	CHECK_STR(cfg->rcpt_validation, "none");
	config_unref(cfg);
}

/* docs/configuration.md lists every key of the table with its default, and no other. */
TEST(config_docs_match_table)
{
	char path[PATH_MAX], line[4096], section[64] = "";
	bool named = false;
	bool *seen = xcalloc(config_nkeys, sizeof(*seen));
	FILE *f;

	CHECK_INT(source_path("docs/configuration.md", path, sizeof(path)), 0);
	f = fopen(path, "r");
	if (f == NULL) {
		unit_fail(__FILE__, __LINE__, "cannot open %s", path);
		free(seen);
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char key[64], *cell;
		const struct config_key *k;

		if (strncmp(line, "### [", 5) == 0) {
			size_t n = strcspn(line + 5, " ]");
			snprintf(section, sizeof(section), "%.*s", (int)n, line + 5);
			named = line[5 + n] == ' ';
			continue;
		}
		if (strncmp(line, "## ", 3) == 0)
			section[0] = '\0';
		if (section[0] == '\0' || strncmp(line, "| `", 3) != 0)
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)strcspn(line + 3, "`"), line + 3);
		k = config_key_find(section, named, key);
		if (k == NULL) {
			unit_fail(__FILE__, __LINE__, "docs list [%s%s] %s, the table does not", section,
				  named ? " NAME" : "", key);
			continue;
		}
		seen[k - config_keys] = true;
		cell = strchr(strchr(line + 1, '|') + 1, '|') + 2;
		if (k->def != NULL) {
			char want[256];

			snprintf(want, sizeof(want), "`%s` |", k->def);
			if (strncmp(cell, want, strlen(want)) != 0)
				unit_fail(__FILE__, __LINE__, "docs: [%s] %s default should be %s", section, key, want);
		} else if (cell[0] != '(') {
			unit_fail(__FILE__, __LINE__, "docs: [%s] %s has no default: say what unset means", section, key);
		}
	}
	fclose(f);
	for (size_t i = 0; i < config_nkeys; i++) {
		if (!seen[i])
			unit_fail(__FILE__, __LINE__, "docs miss [%s%s] %s", config_keys[i].section,
				  config_keys[i].named ? " NAME" : "", config_keys[i].name);
	}
	free(seen);
}

TEST(config_full_example)
{
	struct config *cfg = parse_ok(
		"# a comment\n"
		"; another\n"
		"   # indented comment\n"
		"[server]\n"
		"hostname = mx.example.org\n"
		"banner = \"  Welcome, \\\"friend\\\" \\\\o/  \"\n"
		"listen = *:2525, [::1]:2465/smtps 127.0.0.1:2587/SUBMISSION\n"
		"user = nobody\n"
		"group = nogroup\n"
		"data_dir = /tmp/postern/data\n"
		"admin_socket = /tmp/postern/admin.sock\n"
		"pid_file = /tmp/postern/pid\n"
		"[log]\n"
		"level = DEBUG\n"
		"file = /tmp/postern/log\n"
		"syslog = on\n"
		"stderr = off\n"
		"[limits]\n"
		"max_message_size = 10k\n"
		"max_recipients = 5\n"
		"timeout_command = 90\n"
		"timeout_data = 2h\n"
		"bare_newline = reject\n"
		"vrfy = true\n"
		"expn = 1\n"
		"[tls]\n"
		"cert = /etc/ssl/a.pem\n"
		"key = /etc/ssl/a.key\n"
		"ciphers = HIGH:!aNULL\n"
		"min_version = TLSv1.3\n"
		"[tls \"*.Example.NET\"]\n"
		"cert = /etc/ssl/b.pem\n"
		"key = /etc/ssl/b.key\n"
		"[auth]\n"
		"enabled = no\n"
		"max_failures = 5\n"
		"[relay]\n"
		"trusted_networks = 192.0.2.0/24,2001:db8::/32\n"
		"[domain \"Example.COM\"]\n"
		"hosts = mx1.example.com, [2001:db8::25]:2525, 192.0.2.25\n"
		"[local]\n"
		"domains = Example.ORG example.net\n"
		"maildir = /var/mail/%d/%u\n"
		"[user \"Alice@Example.ORG\"]\n"
		"password = $argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA\n"
		"quota = 1G\n"
		"[user \"bob@example.net\"]\n"
		"maildir = /srv/bob\n"
		"[queue]\n"
		"dir = /tmp/postern/spool\n"
		"lifetime = 3s\n"
		"retry_min = 1s\n"
		"retry_max = 1s\n"
		"bounce_from = postmaster@Example.ORG\n"
		"syncfs = no\n"
		"[delivery]\n"
		"mx_port = 2526\n"
		"tls = no\n"
		"helo_name = out.example.org\n"
		"[dns]\n"
		"servers = 127.0.0.1:5353, ::1 [::2]:53\n"
		"timeout_ms = 250\n"
		"tries = 1\n");

	CHECK_STR(cfg->hostname, "mx.example.org");
	CHECK_STR(cfg->banner, "  Welcome, \"friend\" \\o/  ");
	CHECK_INT(cfg->nlistens, 3);
	CHECK_STR(cfg->listens[0].addr, "0.0.0.0");
	CHECK_INT(cfg->listens[0].port, 2525);
	CHECK_STR(cfg->listens[1].addr, "::1");
	CHECK_INT(cfg->listens[1].kind, LISTEN_SMTPS);
	CHECK_INT(cfg->listens[2].kind, LISTEN_SUBMISSION);
	CHECK_STR(cfg->group, "nogroup");
	CHECK_INT(cfg->log_level, LOG_LEVEL_DEBUG);
	CHECK(cfg->log_syslog && !cfg->log_stderr);
	CHECK_INT(cfg->max_message_size, 10240);
	CHECK_INT(cfg->timeout_command, 90);
	CHECK_INT(cfg->timeout_data, 7200);
	CHECK_INT(cfg->bare_newline, BARE_NEWLINE_REJECT);
	CHECK(cfg->vrfy && cfg->expn);
	CHECK_STR(cfg->tls_min_version, "TLSv1.3");
	CHECK_INT(cfg->ntls_sni, 1);
	CHECK_STR(cfg->tls_sni[0].name, "*.example.net");
	CHECK_STR(cfg->tls_sni[0].key_file, "/etc/ssl/b.key");
	CHECK(!cfg->auth_enabled);
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "2001:db8:1::5"));
	CHECK(!cidr_list_contains_text(&cfg->trusted_networks, "127.0.0.1"));
	CHECK_INT(cfg->ndomains, 1);
	CHECK_STR(cfg->domains[0].domain, "example.com");
	CHECK_INT(cfg->domains[0].line, 39);
	CHECK_INT(cfg->domains[0].nhosts, 3);
	CHECK_STR(cfg->domains[0].hosts[0].host, "mx1.example.com");
	CHECK_INT(cfg->domains[0].hosts[0].port, 25);
	CHECK_STR(cfg->domains[0].hosts[1].host, "2001:db8::25");
	CHECK_INT(cfg->domains[0].hosts[1].port, 2525);
	CHECK_STR(cfg->domains[0].hosts[2].host, "192.0.2.25");
	CHECK_INT(cfg->nlocal_domains, 2);
	CHECK_STR(cfg->local_domains[0], "example.net");
	CHECK_STR(cfg->local_domains[1], "example.org");
	CHECK_INT(cfg->nusers, 2);
	CHECK_STR(cfg->users[0].address, "Alice@example.org");
	CHECK_INT(cfg->users[0].quota_bytes, 1024ULL * 1024 * 1024);
	CHECK(cfg->users[0].maildir == NULL);
	CHECK_STR(cfg->users[1].maildir, "/srv/bob");
	CHECK_INT(cfg->users[1].quota_bytes, 0);
	CHECK(cfg->users[1].password_hash == NULL);
	CHECK_INT(cfg->queue_lifetime, 3);
	CHECK_STR(cfg->bounce_from, "postmaster@example.org");
	CHECK(!cfg->spool_syncfs);
	CHECK_INT(cfg->mx_port, 2526);
	CHECK(!cfg->outbound_tls);
	CHECK_STR(cfg->dns_servers, "127.0.0.1:5353,::1,[::2]:53");
	CHECK_INT(cfg->dns_timeout_ms, 250);
	config_unref(cfg);
}

TEST(config_line_endings_bom_and_no_final_newline)
{
	struct config *cfg = parse_ok("\xef\xbb\xbf[server]\r\nbanner = hi there \r\n\r\n[limits]\r\nmax_recipients=7");

	CHECK_STR(cfg->banner, "hi there");
	CHECK_INT(cfg->max_recipients, 7);
	config_unref(cfg);
	cfg = parse_ok("[server]\n\tbanner\t=\t tabbed\t\n");
	CHECK_STR(cfg->banner, "tabbed");
	config_unref(cfg);
	cfg = parse_ok("[server]\nbanner = a # not a comment ; either\n");
	CHECK_STR(cfg->banner, "a # not a comment ; either");
	config_unref(cfg);
	cfg = parse_ok("[ server ]\n[ domain  \"a.example\" ]\nhosts = b.example\n");
	CHECK_INT(cfg->ndomains, 1);
	config_unref(cfg);
}

TEST(config_bool_values)
{
	static const char *const yes[] = { "yes", "YES", "true", "True", "on", "1", NULL };
	static const char *const no[] = { "no", "No", "false", "FALSE", "off", "0", NULL };
	char why[256];

	for (int i = 0; yes[i]; i++) {
		struct config *cfg = with("limits", "vrfy", yes[i], why, sizeof(why));
		CHECK(cfg != NULL && cfg->vrfy);
		config_unref(cfg);
		cfg = with("auth", "enabled", no[i], why, sizeof(why));
		CHECK(cfg != NULL && !cfg->auth_enabled);
		config_unref(cfg);
	}
	CHECK_VALUE_BAD("limits", "vrfy", "maybe", "expected yes or no");
	CHECK_VALUE_BAD("limits", "vrfy", "", "expected yes or no");
	CHECK_VALUE_BAD("limits", "vrfy", "2", "expected yes or no");
	CHECK_VALUE_BAD("limits", "vrfy", "yess", "expected yes or no");
	expect_error("[log]\nsyslog = y\n", 2, "syslog", "got \"y\"");
}

TEST(config_uint_values)
{
	char why[256];
	struct config *cfg;

	CHECK_VALUE_OK("limits", "max_recipients", "1");
	CHECK_VALUE_OK("limits", "max_recipients", "100000");
	CHECK_VALUE_OK("limits", "max_recipients", "007");
	CHECK_VALUE_BAD("limits", "max_recipients", "0", "expected an integer between 1 and 100000, got \"0\"");
	CHECK_VALUE_BAD("limits", "max_recipients", "100001", "between 1 and 100000");
	CHECK_VALUE_BAD("limits", "max_recipients", "-1", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "+5", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "5x", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "5 6", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "0x10", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "99999999999999999999999999", "an integer");
	CHECK_VALUE_BAD("limits", "max_recipients", "4294967297", "an integer");
	CHECK_VALUE_BAD("limits", "max_command_length", "511", "between 512 and 65536");
	CHECK_VALUE_BAD("delivery", "mx_port", "65536", "between 1 and 65535");
	cfg = with("limits", "max_sessions", "1000000", why, sizeof(why));
	CHECK(cfg != NULL && cfg->max_sessions == 1000000);
	config_unref(cfg);
}

TEST(config_size_values)
{
	uint64_t v;
	char why[256];
	struct config *cfg;

	CHECK_INT(config_parse_size("0", &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(config_parse_size("512", &v), 0);
	CHECK_INT(v, 512);
	CHECK_INT(config_parse_size("10k", &v), 0);
	CHECK_INT(v, 10240);
	CHECK_INT(config_parse_size("10K", &v), 0);
	CHECK_INT(v, 10240);
	CHECK_INT(config_parse_size("35M", &v), 0);
	CHECK_INT(v, 35 * 1048576);
	CHECK_INT(config_parse_size("35m", &v), 0);
	CHECK_INT(v, 35 * 1048576);
	CHECK_INT(config_parse_size("1G", &v), 0);
	CHECK_INT(v, 1073741824);
	CHECK_INT(config_parse_size("18446744073709551615", &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_INT(config_parse_size("18446744073709551616", &v), -1);
	CHECK_INT(config_parse_size("17179869184G", &v), -1);
	CHECK_INT(config_parse_size("17179869183G", &v), 0);
	CHECK_INT(config_parse_size("", &v), -1);
	CHECK_INT(config_parse_size("k", &v), -1);
	CHECK_INT(config_parse_size("1.5M", &v), -1);
	CHECK_INT(config_parse_size("1T", &v), -1);
	CHECK_INT(config_parse_size("1MB", &v), -1);
	CHECK_INT(config_parse_size("-1", &v), -1);
	CHECK_INT(config_parse_size(" 1", &v), -1);
	CHECK_INT(config_parse_size("1 M", &v), -1);
	CHECK_VALUE_OK("limits", "max_message_size", "1k");
	CHECK_VALUE_OK("limits", "max_message_size", "2G");
	CHECK_VALUE_BAD("limits", "max_message_size", "1023", "between 1k and 2G");
	CHECK_VALUE_BAD("limits", "max_message_size", "2049M", "between 1k and 2G");
	CHECK_VALUE_BAD("limits", "max_message_size", "lots", "a size");
	cfg = with("user \"a@b.example\"", "quota", "0", why, sizeof(why));
	CHECK(cfg != NULL && cfg->nusers == 1 && cfg->users[0].quota_bytes == 0);
	config_unref(cfg);
}

TEST(config_duration_values)
{
	unsigned v;

	CHECK_INT(config_parse_duration("90", &v), 0);
	CHECK_INT(v, 90);
	CHECK_INT(config_parse_duration("30s", &v), 0);
	CHECK_INT(v, 30);
	CHECK_INT(config_parse_duration("5m", &v), 0);
	CHECK_INT(v, 300);
	CHECK_INT(config_parse_duration("2h", &v), 0);
	CHECK_INT(v, 7200);
	CHECK_INT(config_parse_duration("5d", &v), 0);
	CHECK_INT(v, 432000);
	CHECK_INT(config_parse_duration("4294967295", &v), 0);
	CHECK(v == 4294967295u);
	CHECK_INT(config_parse_duration("4294967296", &v), -1);
	CHECK_INT(config_parse_duration("49711d", &v), -1);
	CHECK_INT(config_parse_duration("1w", &v), -1);
	CHECK_INT(config_parse_duration("m", &v), -1);
	CHECK_INT(config_parse_duration("", &v), -1);
	CHECK_INT(config_parse_duration("1m30s", &v), -1);
	CHECK_INT(config_parse_duration("5M", &v), -1);
	CHECK_VALUE_BAD("queue", "lifetime", "0", "between 1s and 30d");
	CHECK_VALUE_BAD("queue", "lifetime", "31d", "between 1s and 30d");
	CHECK_VALUE_BAD("limits", "timeout_tls", "2h", "between 1s and 1h");
	CHECK_VALUE_BAD("limits", "timeout_tls", "soon", "a duration");
	CHECK_VALUE_OK("queue", "lifetime", "30d");
}

TEST(config_enum_values)
{
	CHECK_VALUE_OK("log", "level", "error");
	CHECK_VALUE_OK("log", "level", "warn");
	CHECK_VALUE_OK("log", "level", "Info");
	CHECK_VALUE_BAD("log", "level", "verbose", "expected error, warn, info or debug");
	CHECK_VALUE_BAD("log", "level", "", "expected error");
	CHECK_VALUE_OK("limits", "bare_newline", "reject");
	CHECK_VALUE_BAD("limits", "bare_newline", "fix", "expected reject or normalize");
	CHECK_VALUE_BAD("tls", "min_version", "TLSv1.1", "TLSv1.2 or TLSv1.3");
	CHECK_VALUE_BAD("tls", "min_version", "tlsv1.2", "TLSv1.2 or TLSv1.3");
}

TEST(config_listen_values)
{
	char why[256];
	struct config *cfg = with("server", "listen", "[2001:DB8::1]:25/smtp,*:465/smtps", why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK_INT(cfg->nlistens, 2);
	CHECK_STR(cfg->listens[0].addr, "2001:db8::1");
	CHECK_INT(cfg->listens[0].kind, LISTEN_SMTP);
	CHECK_STR(cfg->listens[1].addr, "0.0.0.0");
	config_unref(cfg);
	CHECK_VALUE_OK("server", "listen", "[::]:25");
	CHECK_VALUE_OK("server", "listen", "127.0.0.1:25, 127.0.0.1:26, [::1]:25");
	CHECK_VALUE_BAD("server", "listen", "127.0.0.1", "bad listen address \"127.0.0.1\"");
	CHECK_VALUE_BAD("server", "listen", "127.0.0.1:0", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "127.0.0.1:65536", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", ":25", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "[::1]", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "::1:25", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "[::1:25", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "[1.2.3.4]:25", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "1.2.3.4:25/pop3", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "1.2.3.4:25/", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "mx.example.org:25", "bad listen address");
	CHECK_VALUE_BAD("server", "listen", "127.0.0.1:25, 127.0.0.1:25/smtps",
			"\"127.0.0.1:25/smtps\" has the address and port of \"127.0.0.1:25\"");
	CHECK_VALUE_BAD("server", "listen", "*:25 0.0.0.0:25", "has the address and port");
	CHECK_VALUE_BAD("server", "listen", "[::1]:25 [0:0::1]:25", "has the address and port");
	CHECK_VALUE_BAD("server", "listen", "", "at least 1 item");
	CHECK_VALUE_BAD("server", "listen", " , ,", "at least 1 item");
	expect_error("[server]\nlisten =\n", 2, "listen", "at least 1 item");
}

TEST(config_hostport_values)
{
	char why[256];
	struct config *cfg = with("domain \"example.com\"", "hosts",
				  "MX.Example.COM:2525 2001:db8::1 [2001:db8::2] 192.0.2.1:26", why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK_INT(cfg->domains[0].nhosts, 4);
	CHECK_STR(cfg->domains[0].hosts[0].host, "mx.example.com");
	CHECK_INT(cfg->domains[0].hosts[0].port, 2525);
	CHECK_STR(cfg->domains[0].hosts[1].host, "2001:db8::1");
	CHECK_INT(cfg->domains[0].hosts[1].port, 25);
	CHECK_STR(cfg->domains[0].hosts[2].host, "2001:db8::2");
	CHECK_INT(cfg->domains[0].hosts[2].port, 25);
	CHECK_INT(cfg->domains[0].hosts[3].port, 26);
	config_unref(cfg);
	CHECK_VALUE_OK("domain \"example.com\"", "hosts", "localhost");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "192.0.2.300:25", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "mx..example.com", "bad host \"mx..example.com\"");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "-mx.example.com", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "mx_1.example.com", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "host:0", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "host:99999", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "host:", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "host:25:26", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "[::1", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "[zz]:25", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "[::1]25", "bad host");
	CHECK_VALUE_BAD("domain \"example.com\"", "hosts", "", "at least 1 item");
}

TEST(config_cidr_values)
{
	char why[256];
	struct config *cfg = with("relay", "trusted_networks", "10.0.0.0/8 192.0.2.1, 2001:db8::/32", why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "10.9.8.7"));
	CHECK(cidr_list_contains_text(&cfg->trusted_networks, "192.0.2.1"));
	CHECK(!cidr_list_contains_text(&cfg->trusted_networks, "192.0.2.2"));
	CHECK(!cidr_list_contains_text(&cfg->trusted_networks, "127.0.0.1"));
	config_unref(cfg);
	cfg = with("relay", "trusted_networks", "", why, sizeof(why));
	CHECK(cfg != NULL && cfg->trusted_networks.count == 0);
	CHECK(!cidr_list_contains_text(&cfg->trusted_networks, "127.0.0.1"));
	config_unref(cfg);
	CHECK_VALUE_BAD("relay", "trusted_networks", "10.0.0.0/8, 10.0.0.0/33", "bad network \"10.0.0.0/33\"");
	CHECK_VALUE_BAD("relay", "trusted_networks", "localhost", "bad network");
	expect_error("[relay]\n\ntrusted_networks = 1.2.3.4/8 nope\n", 3, "trusted_networks", "bad network \"nope\"");
}

TEST(config_domain_list_values)
{
	char why[256];
	struct config *cfg = with("local", "domains", "B.example, a.EXAMPLE c.example", why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK_INT(cfg->nlocal_domains, 3);
	CHECK_STR(cfg->local_domains[0], "a.example");
	CHECK_STR(cfg->local_domains[1], "b.example");
	CHECK(config_is_local_domain(cfg, "C.Example"));
	CHECK(!config_is_local_domain(cfg, "d.example"));
	CHECK(!config_is_local_domain(cfg, NULL));
	config_unref(cfg);
	CHECK_VALUE_BAD("local", "domains", "a.example, A.example", "\"a.example\" is listed twice");
	CHECK_VALUE_BAD("local", "domains", "a.example bad_domain", "\"bad_domain\" is not a valid domain name");
	CHECK_VALUE_BAD("local", "domains", "a.example.", "not a valid domain name");
}

TEST(config_string_values)
{
	char long_banner[402];

	memset(long_banner, 'x', 401);
	long_banner[401] = '\0';
	CHECK_VALUE_BAD("server", "banner", long_banner, "1 to 400 characters");
	long_banner[400] = '\0';
	CHECK_VALUE_OK("server", "banner", long_banner);
	CHECK_VALUE_BAD("server", "banner", "", "1 to 400 characters");
	CHECK_VALUE_BAD("server", "banner", "a\rb", "control characters");
	CHECK_VALUE_BAD("server", "banner", "a\nb", "control characters");
	CHECK_VALUE_OK("server", "banner", "a\tb");
	CHECK_VALUE_BAD("server", "hostname", "mx_1.example.org", "not a valid host name");
	CHECK_VALUE_BAD("server", "hostname", "mx.example.org.", "not a valid host name");
	CHECK_VALUE_BAD("server", "hostname", "a.-b", "not a valid host name");
	CHECK_VALUE_OK("server", "hostname", "localhost");
	CHECK_VALUE_OK("server", "hostname", "1-2.example");
	CHECK_VALUE_OK("server", "hostname", "123.example");
	CHECK_VALUE_BAD("server", "hostname", "192.0.2.300", "not a valid host name");
	CHECK_VALUE_BAD("server", "hostname", "example.123", "not a valid host name");
	CHECK_VALUE_BAD("server", "data_dir", "var/lib/postern", "absolute path");
	memset(long_banner, 'a', 108);
	long_banner[0] = '/';
	long_banner[108] = '\0';
	CHECK_VALUE_BAD("server", "admin_socket", long_banner, "1 to 107 characters");
	long_banner[107] = '\0';
	CHECK_VALUE_OK("server", "admin_socket", long_banner);
	CHECK_VALUE_BAD("queue", "bounce_from", "postmaster", "exactly one @");
	CHECK_VALUE_BAD("queue", "bounce_from", "a@b@c", "exactly one @");
	CHECK_VALUE_BAD("queue", "bounce_from", "@example.org", "bad local part");
	CHECK_VALUE_BAD("queue", "bounce_from", "a b@example.org", "bad local part");
	CHECK_VALUE_BAD("queue", "bounce_from", "a..b@example.org", "bad local part");
	CHECK_VALUE_BAD("queue", "bounce_from", "a@", "not a valid domain name");
	CHECK_VALUE_OK("queue", "bounce_from", "MAILER-DAEMON@mx.example.org");
	CHECK_VALUE_BAD("local", "maildir", "/var/mail/%x", "unknown %-escape");
	CHECK_VALUE_BAD("local", "maildir", "/var/mail/%", "unknown %-escape");
	CHECK_VALUE_BAD("local", "maildir", "mail/%d/%u", "absolute path");
	CHECK_VALUE_OK("local", "maildir", "/var/mail/%d/%u/100%%");
	CHECK_VALUE_OK("user \"a@b.example\"", "maildir", "/home/%u/Maildir");
	CHECK_VALUE_BAD("user \"a@b.example\"", "maildir", "/home/100%", "unknown %-escape");
	CHECK_VALUE_BAD("user \"a@b.example\"", "maildir", "Maildir", "absolute path");
	CHECK_VALUE_BAD("user \"a@b.example\"", "password", "secret", "$argon2id$");
	CHECK_VALUE_BAD("user \"a@b.example\"", "password", "$argon2i$v=19$m=1,t=1,p=1$a$b", "$argon2id$");
	CHECK_VALUE_BAD("user \"a@b.example\"", "password", "$argon2id$v=19$m=1 t=1", "unexpected character");
	CHECK_VALUE_BAD("dns", "servers", "dns.example", "bad name server \"dns.example\"");
	CHECK_VALUE_BAD("dns", "servers", "127.0.0.1:0", "bad name server");
	CHECK_VALUE_BAD("dns", "servers", "", "at least 1 item");
}

TEST(config_quoting)
{
	struct config *cfg;

	expect_error("[server]\nbanner = \"abc\n", 2, "banner", "missing closing quote");
	expect_error("[server]\nbanner = \"a\\nb\"\n", 2, "banner", "unknown escape");
	expect_error("[server]\nbanner = \"ab\\", 2, "banner", "unknown escape");
	expect_error("[server]\nbanner = \"a\" b\n", 2, "banner", "unexpected text after the closing quote");
	expect_error("[server]\nbanner = \"\"\n", 2, "banner", "1 to 400 characters");
	cfg = parse_ok("[server]\nbanner = say \"hi\"\n");
	CHECK_STR(cfg->banner, "say \"hi\"");
	config_unref(cfg);
	cfg = parse_ok("[server]\nbanner = \"tab\tinside\"   \n");
	CHECK_STR(cfg->banner, "tab\tinside");
	config_unref(cfg);
}

TEST(config_syntax_errors)
{
	expect_error("hostname = a\n", 1, "hostname", "key before the first [section]");
	expect_error("\n\n[server\n", 3, "", "bad section header");
	expect_error("[server] x\n", 1, "", "bad section header");
	expect_error("[Server]\n", 1, "", "bad section header");
	expect_error("[]\n", 1, "", "bad section header");
	expect_error("[domain \"a.example]\n", 1, "", "missing closing quote");
	expect_error("[domain \"\"]\n", 1, "", "empty section name");
	expect_error("[server]\nhostname\n", 2, "hostname", "expected '='");
	expect_error("[server]\nhostname : x\n", 2, "hostname", "expected '='");
	expect_error("[server]\n= x\n", 2, "", "expected key = value");
	expect_error("[server]\nHostname = x\n", 2, "", "bad key name \"Hostname\"");
	expect_error("[server]\nhost-name = x\n", 2, "", "bad key name");
	expect_error("[server]\nbanner = a\x01z\n", 2, "", "control character 0x01 in column 11");
	expect_error("[server]\nbanner = a\x7f\n", 2, "", "control character 0x7f");
	expect_error("[server]\nbanner = a\rz\n", 2, "", "control character 0x0d");
}

TEST(config_nul_byte)
{
	static const char text[] = "[server]\nbanner = a\0b\n";
	struct config_error err;

	CHECK(config_parse("test.conf", text, sizeof(text) - 1, &err) == NULL);
	CHECK_INT(err.line, 2);
	CHECK(strstr(err.message, "control character 0x00") != NULL);
}

TEST(config_structure_errors)
{
	struct config_error err;
	struct config *cfg;

	expect_error("[nosuch]\n", 1, "", "unknown section");
	expect_error("[nosuch \"x\"]\n", 1, "", "unknown section");
	expect_error("[server \"x\"]\n", 1, "", "takes no name");
	expect_error("[domain]\n", 1, "", "needs a name");
	expect_error("[user]\n", 1, "", "needs a name");
	expect_error("[server]\nnosuch = 1\n", 2, "nosuch", "unknown key");
	expect_error("[limits]\nhostname = x.example\n", 2, "hostname", "unknown key");
	expect_error("[domain \"a.example\"]\nhosts = b.example\nquota = 1\n", 3, "quota", "unknown key");
	expect_error("[tls \"a.example\"]\nciphers = HIGH\n", 2, "ciphers", "unknown key");
	expect_error("[server]\nuser = a\n\nuser = b\n", 4, "user", "duplicate key (first set at line 2)");
	expect_error("[server]\n[log]\n[server]\n", 3, "", "section appears twice (first at line 1)");
	expect_error("[domain \"a.example\"]\nhosts = x.example\n[domain \"b.example\"]\nhosts = x.example\n"
		     "[domain \"A.Example\"]\nhosts = y.example\n", 5, "", "section appears twice (first at line 1)");
	expect_error("[user \"a@b.example\"]\n[user \"A@B.EXAMPLE\"]\n", 2, "", "section appears twice (first at line 1)");
	expect_error("[domain \"bad_name\"]\n", 1, "", "not a valid domain name");
	expect_error("[domain \"a..example\"]\n", 1, "", "not a valid domain name");
	expect_error("[user \"nobody\"]\n", 1, "", "exactly one @");
	expect_error("[user \"a@b@c.example\"]\n", 1, "", "exactly one @");
	expect_error("[user \"@c.example\"]\n", 1, "", "bad local part");
	expect_error("[user \"a@\"]\n", 1, "", "not a valid domain name");
	expect_error("[tls \"*\"]\n", 1, "", "not a valid host name or *.domain pattern");
	expect_error("[tls \"a.*.example\"]\n", 1, "", "not a valid host name");

	/* The section is part of the error for key problems. */
	cfg = parse("[domain \"A.example\"]\nhosts = x..y\n", &err);
	CHECK(cfg == NULL);
	CHECK_STR(err.section, "domain \"a.example\"");
	CHECK_STR(err.key, "hosts");
}

TEST(config_missing_required)
{
	expect_error("[domain \"a.example\"]\n[server]\n", 1, "hosts", "missing (required)");
	expect_error("[server]\n[domain \"a.example\"]\nhosts = b.example\n\n[domain \"c.example\"]\n", 5, "hosts",
		     "missing (required)");
	expect_error("[tls \"a.example\"]\ncert = /a.pem\n", 1, "key", "missing (required)");
	expect_error("[tls \"a.example\"]\nkey = /a.key\n", 1, "cert", "missing (required)");
}

TEST(config_cross_checks)
{
	struct config *cfg;

	expect_error("[tls]\nmin_version = TLSv1.2\ncert = /etc/a.pem\n", 3, "cert", "set both or neither");
	expect_error("[tls]\n\nkey = /etc/a.key\n", 3, "key", "set both or neither");
	expect_error("[queue]\nretry_min = 2h\n", 2, "retry_min", "retry_min (7200s) is longer than retry_max (3600s)");
	expect_error("[queue]\nretry_min = 10m\nretry_max = 5m\n", 3, "retry_max", "longer than retry_max");
	cfg = parse_ok("[queue]\nretry_min = 1h\nretry_max = 1h\n");
	config_unref(cfg);

	expect_error("[local]\ndomains = a.example\n", 2, "domains", "local domain \"a.example\" has no mailbox");
	expect_error("[local]\ndomains = a.example b.example\n[user \"x@a.example\"]\nmaildir = /m/x\n", 2, "domains",
		     "\"b.example\" has no mailbox");
	expect_error("[local]\ndomains = a.example\n[user \"x@a.example\"]\nmaildir = /m/x\n[user \"y@A.example\"]\n",
		     5, "maildir", "[local] has no maildir template");
	cfg = parse_ok("[local]\ndomains = a.example\n[user \"x@a.example\"]\nmaildir = /m/x\n[user \"y@other.example\"]\n");
	config_unref(cfg);
	cfg = parse_ok("[local]\ndomains = a.example\nmaildir = /var/mail/%d/%u\n");
	config_unref(cfg);

	expect_error("[local]\ndomains = a.example\nmaildir = /m/%u\n\n[domain \"A.EXAMPLE\"]\nhosts = mx.example\n", 5, "",
		     "also listed in [local] domains");
}

TEST(config_too_large_inputs)
{
	struct config_error err;
	size_t big = 1024 * 1024 + 1;
	char *text = xmalloc(big + 1);
	struct strbuf sb;

	memset(text, '#', big);
	text[big] = '\0';
	CHECK(config_parse("test.conf", text, big, &err) == NULL);
	CHECK_INT(err.line, 0);
	CHECK(strstr(err.message, "file too large") != NULL);
	CHECK(strstr(err.message, "1048577") != NULL);

	memset(text, 'x', 9000);
	memcpy(text, "[server]\n#", 10);
	text[9000] = '\n';
	CHECK(config_parse("test.conf", text, 9001, &err) == NULL);
	CHECK_INT(err.line, 2);
	CHECK(strstr(err.message, "line too long") != NULL);
	free(text);

	/* Exactly at the line limit is fine. */
	strbuf_init(&sb, 20000);
	strbuf_appends(&sb, "[server]\nbanner=");
	for (int i = 0; i < 8192 - 7; i++)
		strbuf_appends(&sb, "y");
	CHECK(config_parse("test.conf", sb.data, sb.len, &err) == NULL);
	CHECK(strstr(err.message, "1 to 400 characters") != NULL);
	strbuf_free(&sb);

	strbuf_init(&sb, 4096);
	strbuf_appends(&sb, "[server]\nlisten =");
	for (int i = 0; i < 65; i++)
		strbuf_appendf(&sb, " 127.0.0.1:%d", 1000 + i);
	CHECK(config_parse("test.conf", sb.data, sb.len, &err) == NULL);
	CHECK(strstr(err.message, "too many items (at most 64)") != NULL);
	strbuf_free(&sb);
}

TEST(config_named_section_limit)
{
	struct config_error err;
	struct strbuf sb;

	strbuf_init(&sb, 1024 * 1024);
	for (int i = 0; i <= 50000; i++)
		CHECK_INT(strbuf_appendf(&sb, "[tls \"a%d\"]\n", i), 0);
	CHECK(config_parse("test.conf", sb.data, sb.len, &err) == NULL);
	CHECK_INT(err.line, 50001);
	CHECK(strstr(err.message, "too many [tls] sections (at most 50000)") != NULL);
	strbuf_free(&sb);
}

TEST(config_lookups)
{
	struct config *cfg;
	struct strbuf sb;
	char name[64];

	strbuf_init(&sb, 1024 * 1024);
	strbuf_appends(&sb, "[local]\ndomains = local.example\nmaildir = /var/mail/%d/%u\n");
	for (int i = 999; i >= 0; i--) {
		strbuf_appendf(&sb, "[domain \"d%d.Example\"]\nhosts = mx%d.example\n", i, i);
		strbuf_appendf(&sb, "[user \"User%d@Local.example\"]\n", i);
	}
	cfg = parse_ok(sb.data);
	strbuf_free(&sb);
	CHECK_INT(cfg->ndomains, 1000);
	for (int i = 0; i < 1000; i++) {
		const struct relay_domain *d;
		const struct user_account *u;

		snprintf(name, sizeof(name), "D%d.EXAMPLE", i);
		d = config_find_domain(cfg, name);
		if (d == NULL) {
			unit_fail(__FILE__, __LINE__, "%s not found", name);
			continue;
		}
		snprintf(name, sizeof(name), "mx%d.example", i);
		CHECK_STR(d->hosts[0].host, name);
		snprintf(name, sizeof(name), "user%d@LOCAL.EXAMPLE", i);
		u = config_find_user(cfg, name);
		CHECK(u != NULL);
	}
	CHECK(config_find_domain(cfg, "d1000.example") == NULL);
	CHECK(config_find_domain(cfg, "example") == NULL);
	CHECK(config_find_domain(cfg, "") == NULL);
	CHECK(config_find_domain(cfg, NULL) == NULL);
	CHECK(config_find_domain(NULL, "d1.example") == NULL);
	CHECK(config_find_user(cfg, "user1@other.example") == NULL);
	CHECK(config_find_user(cfg, "user1") == NULL);
	CHECK(config_find_user(cfg, NULL) == NULL);
	CHECK(config_is_local_domain(cfg, "LOCAL.example"));
	CHECK(!config_is_local_domain(cfg, "d1.example"));
	CHECK(!config_is_local_domain(NULL, "local.example"));
	config_unref(cfg);
}

TEST(config_set_api)
{
	struct config *cfg = config_new();
	struct config_error err;
	char why[256];

	CHECK_INT(config_set(cfg, "limits", "max_recipients", "50", why, sizeof(why)), 0);
	CHECK_INT(cfg->max_recipients, 50);
	CHECK_INT(config_set(cfg, "limits", "max_recipients", "0", why, sizeof(why)), -1);
	CHECK_INT(cfg->max_recipients, 50);
	CHECK_INT(config_set(cfg, "server", "listen", "127.0.0.1:1, 127.0.0.1:1", why, sizeof(why)), -1);
	CHECK_INT(cfg->nlistens, 3);
	CHECK_INT(config_set(cfg, "server", "banner", "one", why, sizeof(why)), 0);
	CHECK_INT(config_set(cfg, "server", "banner", "two", why, sizeof(why)), 0);
	CHECK_STR(cfg->banner, "two");
	CHECK_INT(config_set(cfg, "nosuch", "x", "1", why, sizeof(why)), -1);
	CHECK_STR(why, "unknown section");
	CHECK_INT(config_set(cfg, "server", "nosuch", "1", why, sizeof(why)), -1);
	CHECK_STR(why, "unknown key");
	CHECK_INT(config_set(cfg, "domain", "hosts", "a.example", why, sizeof(why)), -1);
	CHECK(strstr(why, "needs a name") != NULL);
	CHECK_INT(config_set(cfg, "server \"x\"", "banner", "a", why, sizeof(why)), -1);
	CHECK_INT(config_set(cfg, "domain \"x.example\" junk", "hosts", "a", why, sizeof(why)), -1);
	CHECK_INT(config_set(cfg, "domain \"bad_name\"", "hosts", "a.example", why, sizeof(why)), -1);
	CHECK_INT(cfg->ndomains, 0);
	CHECK_INT(config_set(cfg, "domain \"Z.example\"", "hosts", "mx.z.example", why, sizeof(why)), 0);
	CHECK_INT(config_set(cfg, "domain \"a.example\"", "hosts", "mx.a.example", why, sizeof(why)), 0);
	CHECK_INT(config_set(cfg, "domain \"z.EXAMPLE\"", "hosts", "mx2.z.example", why, sizeof(why)), 0);
	CHECK_INT(cfg->ndomains, 2);
	CHECK_INT(config_finish(cfg, &err), 0);
	CHECK_STR(config_find_domain(cfg, "z.example")->hosts[0].host, "mx2.z.example");
	CHECK_STR(config_find_domain(cfg, "A.example")->hosts[0].host, "mx.a.example");
	CHECK_INT(config_set(cfg, "domain \"b.example\"", "hosts", "", why, sizeof(why)), -1);
	CHECK_INT(cfg->ndomains, 2);
	CHECK_INT(config_set(cfg, "tls \"b.example\"", "cert", "/b.pem", why, sizeof(why)), 0);
	CHECK_INT(config_finish(cfg, &err), -1);
	CHECK_STR(err.section, "tls \"b.example\"");
	CHECK_STR(err.key, "key");
	CHECK_INT(err.line, 0);
	config_unref(cfg);
}

TEST(config_error_format_parts)
{
	struct config_error err = { .file = "a.conf", .line = 12, .section = "limits", .key = "max_recipients",
				    .message = "expected an integer" };
	char buf[1200], small[16];

	config_error_format(&err, buf, sizeof(buf));
	CHECK_STR(buf, "a.conf:12: [limits] max_recipients: expected an integer");
	err.key[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	CHECK_STR(buf, "a.conf:12: [limits]: expected an integer");
	err.section[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	CHECK_STR(buf, "a.conf:12: expected an integer");
	err.line = 0;
	config_error_format(&err, buf, sizeof(buf));
	CHECK_STR(buf, "a.conf: expected an integer");
	strcpy(err.key, "k");
	config_error_format(&err, buf, sizeof(buf));
	CHECK_STR(buf, "a.conf: k: expected an integer");
	config_error_format(&err, small, sizeof(small));
	CHECK_STR(small, "a.conf: k: expe");
}

/* Dumping and reading back gives the same configuration. */
TEST(config_dump_round_trip)
{
	struct config *cfg = parse_ok(
		"[server]\nbanner = \" padded \"\nlisten = [::]:25, *:587/submission\n"
		"[relay]\ntrusted_networks = 10.0.0.0/25 10.0.0.128/25 ::1\n"
		"[local]\ndomains = b.example a.example\nmaildir = /m/%d/%u\n"
		"[domain \"z.example\"]\nhosts = [2001:db8::1]:2525 mx.z.example\n"
		"[user \"u@a.example\"]\npassword = $argon2id$v=19$m=8,t=1,p=1$YQ$Yg\nquota = 10M\n"
		"[tls \"*.z.example\"]\ncert = /c\nkey = /k\n"
		"[dns]\nservers = ::1\n");
	struct config_error err;
	struct config *again;
	char *first = NULL, *second = NULL;
	size_t len1 = 0, len2 = 0;
	FILE *f = open_memstream(&first, &len1);

	CHECK_INT(config_dump(cfg, f), 0);
	fclose(f);
	CHECK(strstr(first, "banner = \" padded \"\n") != NULL);
	CHECK(strstr(first, "trusted_networks = 10.0.0.0/24, ::1\n") != NULL);
	CHECK(strstr(first, "listen = [::]:25, 0.0.0.0:587/submission\n") != NULL);
	CHECK(strstr(first, "[domain \"z.example\"]\nhosts = [2001:db8::1]:2525, mx.z.example:25\n") != NULL);
	CHECK(strstr(first, "# group is not set\n") != NULL);
	CHECK(strstr(first, "quota = 10M\n") != NULL);
	again = config_parse("dump", first, len1, &err);
	if (again == NULL) {
		fail_with_error(__FILE__, __LINE__, "dump does not parse", &err);
	} else {
		f = open_memstream(&second, &len2);
		CHECK_INT(config_dump(again, f), 0);
		fclose(f);
		CHECK_STR(second, first);
		config_unref(again);
	}
	free(first);
	free(second);
	config_unref(cfg);
}

TEST(config_load_files)
{
	char path[512];
	struct config_error err;
	struct config *cfg;
	FILE *f;

	snprintf(path, sizeof(path), "%s/missing.conf", unit_tmpdir());
	CHECK(config_load(path, &err) == NULL);
	CHECK_STR(err.file, path);
	CHECK(strstr(err.message, "cannot open") != NULL);
	CHECK(config_load(unit_tmpdir(), &err) == NULL);
	CHECK(strstr(err.message, "not a regular file") != NULL);

	snprintf(path, sizeof(path), "%s/ok.conf", unit_tmpdir());
	f = fopen(path, "w");
	fputs("[limits]\nmax_errors = 3\n[limits]\n", f);
	fclose(f);
	CHECK(config_load(path, &err) == NULL);
	CHECK_STR(err.file, path);
	CHECK_INT(err.line, 3);

	f = fopen(path, "w");
	fputs("[limits]\nmax_errors = 3\n", f);
	fclose(f);
	cfg = config_load(path, &err);
	CHECK(cfg != NULL);
	CHECK_INT(cfg->max_errors, 3);
	CHECK_STR(cfg->path, path);
	CHECK(config_ref(cfg) == cfg);
	CHECK_INT(cfg->refcount, 2);
	config_unref(cfg);
	CHECK_INT(cfg->refcount, 1);
	config_unref(cfg);
	config_unref(NULL);

	snprintf(path, sizeof(path), "%s/big.conf", unit_tmpdir());
	f = fopen(path, "w");
	for (int i = 0; i < 1024 * 1024 / 8 + 1; i++)
		fputs("#234567\n", f);
	fclose(f);
	CHECK(config_load(path, &err) == NULL);
	CHECK(strstr(err.message, "file too large") != NULL);
}

static void check_common(const struct policy_common *c, bool enabled, enum policy_direction dir,
			 enum policy_action action, double score)
{
	CHECK(c->enabled == enabled);
	CHECK_INT(c->direction, dir);
	CHECK_INT(c->action, action);
	CHECK(c->score == score);
	CHECK_INT(c->whitelist.count, 0);
	CHECK_INT(c->nwhitelist_senders, 0);
}

TEST(config_policy_defaults)
{
	struct config *cfg = parse_ok("");

	check_common(&cfg->iplist, true, POLICY_DIR_BOTH, POLICY_ACTION_REJECT, 1.0);
	CHECK_INT(cfg->ip_allow.count, 0);
	CHECK_INT(cfg->ip_deny.count, 0);
	CHECK(cfg->ip_allow_file == NULL && cfg->ip_deny_file == NULL);
	check_common(&cfg->connlimit, true, POLICY_DIR_INBOUND, POLICY_ACTION_DEFER, 1.0);
	CHECK_INT(cfg->max_per_ip, 50);
	CHECK_INT(cfg->conn_rate, 0);
	CHECK_INT(cfg->conn_window, 60);
	CHECK_INT(cfg->conn_ban_step, 60);
	CHECK_INT(cfg->conn_ban_max, 3600);
	check_common(&cfg->pregreet, false, POLICY_DIR_INBOUND, POLICY_ACTION_REJECT, 1.0);
	CHECK_INT(cfg->greet_pause_ms, 0);
	check_common(&cfg->dnsbl, true, POLICY_DIR_INBOUND, POLICY_ACTION_REJECT, 3.0);
	CHECK(cfg->dnsbl_reject_at_rcpt);
	CHECK_INT(cfg->dnsbl_timeout_ms, 5000);
	CHECK_INT(cfg->ndnsbls, 0);
	check_common(&cfg->rhsbl, true, POLICY_DIR_INBOUND, POLICY_ACTION_REJECT, 3.0);
	CHECK_INT(cfg->nrhsbls, 0);
	CHECK_INT(cfg->perimeter_relays.count, 0);
	check_common(&cfg->helo, true, POLICY_DIR_INBOUND, POLICY_ACTION_TAG, 1.5);
	CHECK(cfg->helo_require_fqdn && !cfg->helo_require_resolvable);
	check_common(&cfg->rdns, false, POLICY_DIR_INBOUND, POLICY_ACTION_TAG, 1.5);
	CHECK(cfg->rdns_require_ptr && !cfg->rdns_require_fcrdns);
	check_common(&cfg->sender, true, POLICY_DIR_BOTH, POLICY_ACTION_REJECT, 1.0);
	CHECK_INT(cfg->nsender_allow, 0);
	CHECK_INT(cfg->nsender_deny, 0);
	CHECK(!cfg->sender_reject_blank && !cfg->sender_require_resolvable);
	check_common(&cfg->spf, false, POLICY_DIR_INBOUND, POLICY_ACTION_REJECT, 2.0);
	CHECK_INT(cfg->spf_fail, POLICY_ACTION_REJECT);
	CHECK_INT(cfg->spf_softfail, POLICY_ACTION_TAG);
	CHECK_INT(cfg->spf_temperror, POLICY_ACTION_DEFER);
	CHECK_INT(cfg->spf_permerror, POLICY_ACTION_TAG);
	CHECK(cfg->spf_header);
	check_common(&cfg->recipients, true, POLICY_DIR_INBOUND, POLICY_ACTION_REJECT, 1.0);
	CHECK_STR(cfg->rcpt_validation, "none");
	CHECK_INT(cfg->nrcpt_list, 0);
	CHECK(cfg->rcpt_list_file == NULL);
	CHECK_INT(cfg->callout_cache_ttl, 3600);
	CHECK_INT(cfg->callout_negative_ttl, 600);
	CHECK_INT(cfg->tarpit_after, 5);
	CHECK_INT(cfg->tarpit_delay_ms, 1000);
	CHECK_INT(cfg->max_unknown_rcpts, 20);
	check_common(&cfg->greylist, false, POLICY_DIR_INBOUND, POLICY_ACTION_DEFER, 1.0);
	CHECK_INT(cfg->greylist_delay, 300);
	CHECK_INT(cfg->greylist_window, 4 * 3600);
	CHECK_INT(cfg->greylist_whitelist_ttl, 36 * 86400);
	CHECK_INT(cfg->greylist_ipv4_prefix, 24);
	CHECK_INT(cfg->greylist_ipv6_prefix, 64);
	check_common(&cfg->sender_rate, false, POLICY_DIR_OUTBOUND, POLICY_ACTION_DEFER, 1.0);
	CHECK_INT(cfg->sender_rate_limit, 100);
	CHECK_INT(cfg->sender_rate_window, 3600);
	CHECK_INT(cfg->sender_rate_ban_step, 60);
	CHECK_INT(cfg->sender_rate_ban_max, 86400);
	check_common(&cfg->subject_rate, false, POLICY_DIR_BOTH, POLICY_ACTION_DEFER, 1.0);
	CHECK_INT(cfg->subject_rate_limit, 50);
	CHECK_INT(cfg->subject_rate_window, 3600);
	CHECK_INT(cfg->subject_rate_ban_step, 60);
	CHECK_INT(cfg->subject_rate_ban_max, 86400);
	config_unref(cfg);
}

TEST(config_action_and_direction_values)
{
	static const char *const actions[] = { "reject", "defer", "TAG", "Ignore" };
	char why[256];

	for (int i = 0; i < 4; i++) {
		struct config *cfg = with("helo", "action", actions[i], why, sizeof(why));

		CHECK(cfg != NULL && cfg->helo.action == (enum policy_action)i);
		config_unref(cfg);
	}
	CHECK_VALUE_OK("spf", "softfail", "ignore");
	CHECK_VALUE_BAD("helo", "action", "drop", "expected reject, defer, tag or ignore, got \"drop\"");
	CHECK_VALUE_BAD("spf", "fail", "", "expected reject, defer, tag or ignore");
	expect_error("[spf]\nenabled = yes\nfail = bounce\n", 3, "fail", "got \"bounce\"");

	CHECK_VALUE_OK("greylist", "direction", "inbound");
	CHECK_VALUE_OK("greylist", "direction", "Outbound");
	CHECK_VALUE_OK("greylist", "direction", "both");
	CHECK_VALUE_BAD("greylist", "direction", "in", "expected inbound, outbound or both, got \"in\"");
	CHECK_VALUE_BAD("greylist", "direction", "", "expected inbound, outbound or both");
	expect_error("[sender_rate]\ndirection = sideways\n", 2, "direction", "expected inbound, outbound or both");
}

TEST(config_score_values)
{
	static const struct { const char *text; double value; } good[] = {
		{ "0", 0 }, { "2.5", 2.5 }, { "-3", -3 }, { "100", 100 }, { "-100", -100 },
		{ "0.125", 0.125 }, { "-0.5", -0.5 }, { "007.10", 7.1 },
	};
	char why[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config *cfg = with("helo", "score", good[i].text, why, sizeof(why));

		if (cfg == NULL) {
			unit_fail(__FILE__, __LINE__, "score \"%s\": %s", good[i].text, why);
			continue;
		}
		CHECK(cfg->helo.score == good[i].value);
		config_unref(cfg);
	}
	CHECK_VALUE_BAD("helo", "score", "100.001", "between -100 and 100 with at most 3 decimals, got \"100.001\"");
	CHECK_VALUE_BAD("helo", "score", "101", "between -100 and 100");
	CHECK_VALUE_BAD("helo", "score", "-100.5", "between -100 and 100");
	CHECK_VALUE_BAD("helo", "score", "1.2345", "at most 3 decimals");
	CHECK_VALUE_BAD("helo", "score", "1.", "between -100");
	CHECK_VALUE_BAD("helo", "score", ".5", "between -100");
	CHECK_VALUE_BAD("helo", "score", "+1", "between -100");
	CHECK_VALUE_BAD("helo", "score", "1e1", "between -100");
	CHECK_VALUE_BAD("helo", "score", "1,5", "between -100");
	CHECK_VALUE_BAD("helo", "score", "nan", "between -100");
	CHECK_VALUE_BAD("helo", "score", "", "between -100");
	CHECK_VALUE_BAD("helo", "score", "--1", "between -100");
	CHECK_VALUE_BAD("helo", "score", "99999999999999999999999", "between -100");
	expect_error("[rdns]\n\nscore = high\n", 3, "score", "got \"high\"");
}

TEST(config_duration_ms_values)
{
	static const struct { const char *text; unsigned ms; } good[] = {
		{ "0", 0 }, { "500", 500 }, { "500ms", 500 }, { "2s", 2000 }, { "1m", 60000 }, { "60000ms", 60000 },
	};
	char why[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config *cfg = with("pregreet", "greet_pause", good[i].text, why, sizeof(why));

		if (cfg == NULL) {
			unit_fail(__FILE__, __LINE__, "greet_pause \"%s\": %s", good[i].text, why);
			continue;
		}
		CHECK_INT(cfg->greet_pause_ms, good[i].ms);
		config_unref(cfg);
	}
	CHECK_VALUE_BAD("pregreet", "greet_pause", "61s",
			"expected a duration in milliseconds or with an ms, s or m suffix between 0 and 1m, got \"61s\"");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "60001", "between 0 and 1m");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "1h", "a duration in milliseconds");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "ms", "a duration in milliseconds");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "5 ms", "a duration in milliseconds");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "4294967296", "a duration in milliseconds");
	CHECK_VALUE_BAD("pregreet", "greet_pause", "71583m", "a duration in milliseconds");
	CHECK_VALUE_BAD("dnsbl", "timeout", "99ms", "between 100ms and 1m");
	CHECK_VALUE_OK("dnsbl", "timeout", "100");
	CHECK_VALUE_BAD("recipients", "tarpit_delay", "2m", "between 0 and 1m");
	expect_error("[recipients]\ntarpit_delay = soon\n", 2, "tarpit_delay", "got \"soon\"");
}

TEST(config_dnsbl_match_values)
{
	static const struct { const char *in, *out; } good[] = {
		{ "any", "any" },
		{ "ANY", "any" },
		{ "mask:0x0c", "mask:0x0c" },
		{ "Mask:0XFFFFFFFF", "mask:0xffffffff" },
		{ "codes:127.0.0.2", "codes:127.0.0.2" },
		{ "codes: 127.0.0.2 , 127.0.0.4,127.1.2.3", "codes:127.0.0.2,127.0.0.4,127.1.2.3" },
	};
	char why[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config *cfg = with("dnsbl \"zen.example\"", "match", good[i].in, why, sizeof(why));

		if (cfg == NULL) {
			unit_fail(__FILE__, __LINE__, "match \"%s\": %s", good[i].in, why);
			continue;
		}
		CHECK_STR(cfg->dnsbls[0].match, good[i].out);
		config_unref(cfg);
	}
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "all", "expected any, mask:0xHEX or codes:");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "", "expected any");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "mask:0x123456789", "1 to 8 hex digits");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "mask:0x", "1 to 8 hex digits");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "mask:0x000", "not all zero");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "mask:12", "mask:0x");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "mask:0xg1", "hex digits");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:", "expected codes:127.x.y.z");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:127.0.0.2,", "expected codes:127.x.y.z");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:127.0.0.2 127.0.0.3", "comma between codes");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:128.0.0.2",
			"code \"128.0.0.2\" is not an IPv4 address in 127.0.0.0/8");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:127.0.0.256", "not an IPv4 address");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:127.0.2", "not an IPv4 address");
	CHECK_VALUE_BAD("dnsbl \"zen.example\"", "match", "codes:::1", "not an IPv4 address");
	CHECK_VALUE_BAD("rhsbl \"dbl.example\"", "match",
			"codes:127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,"
			"127.0.0.9,127.0.0.10,127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14,127.0.0.15,127.0.0.16,"
			"127.0.0.17,127.0.0.18,127.0.0.19,127.0.0.20,127.0.0.21,127.0.0.22,127.0.0.23,127.0.0.24,"
			"127.0.0.25,127.0.0.26,127.0.0.27,127.0.0.28,127.0.0.29,127.0.0.30,127.0.0.31,127.0.0.32,"
			"127.0.0.33", "too many codes (at most 32)");
	expect_error("[dnsbl \"zen.example\"]\nmatch = mask:0xzz\n", 2, "match", "hex digits");
}

TEST(config_dnsbl_sections)
{
	struct config_error err;
	struct config *cfg = parse_ok(
		"[dnsbl]\ntimeout = 2s\nreject_at_rcpt = no\n"
		"[dnsbl \"ZEN.Example\"]\nmatch = mask:0x0c\npriority = 10\n"
		"[dnsbl \"b.example\"]\nreply = \"450 4.7.1 Try later, %0 is on %1/%2 (100%%)\"\n"
		"[rhsbl \"dbl.example\"]\n"
		"[rhsbl]\naction = tag\nscore = 2.5\n");

	CHECK_INT(cfg->dnsbl_timeout_ms, 2000);
	CHECK(!cfg->dnsbl_reject_at_rcpt);
	CHECK_INT(cfg->ndnsbls, 2);
	CHECK_STR(cfg->dnsbls[0].zone, "b.example");
	CHECK_STR(cfg->dnsbls[0].match, "any");
	CHECK_STR(cfg->dnsbls[0].reply, "450 4.7.1 Try later, %0 is on %1/%2 (100%%)");
	CHECK_INT(cfg->dnsbls[0].priority, 100);
	CHECK_INT(cfg->dnsbls[0].line, 7);
	CHECK_STR(cfg->dnsbls[1].zone, "zen.example");
	CHECK_STR(cfg->dnsbls[1].match, "mask:0x0c");
	CHECK_STR(cfg->dnsbls[1].reply, "554 5.7.1 Service unavailable; client [%0] blocked using %2");
	CHECK_INT(cfg->dnsbls[1].priority, 10);
	CHECK_INT(cfg->nrhsbls, 1);
	CHECK_STR(cfg->rhsbls[0].zone, "dbl.example");
	CHECK_STR(cfg->rhsbls[0].reply, "554 5.7.1 Sender address rejected: domain listed at %2");
	CHECK_INT(cfg->rhsbl.action, POLICY_ACTION_TAG);
	CHECK(cfg->rhsbl.score == 2.5);
	config_unref(cfg);

	expect_error("[dnsbl \"zen.example\"]\n[dnsbl \"b.example\"]\n[dnsbl \"Zen.Example\"]\n", 3, "",
		     "section appears twice (first at line 1)");
	expect_error("[rhsbl \"bad_zone\"]\n", 1, "", "\"bad_zone\" is not a valid DNS zone name");
	expect_error("[dnsbl \"127.0.0.1\"]\n", 1, "", "not a valid DNS zone name");
	expect_error("[dnsbl \"zen.example\"]\ntimeout = 1s\n", 2, "timeout", "unknown key");
	expect_error("[rhsbl]\nmatch = any\n", 2, "match", "unknown key");
	expect_error("[dnsbl \"a.example\"]\npriority = 10001\n", 2, "priority", "between 0 and 10000");

	CHECK_VALUE_OK("dnsbl \"a.example\"", "reply", "554 5.7.1");
	CHECK_VALUE_OK("rhsbl \"a.example\"", "reply", "421 4.7.0 %2 says no");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "250 2.0.0 fine", "a 4xx or 5xx reply code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 4.7.1 mixed", "same class");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 blocked", "enhanced code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554-5.7.1 blocked", "reply code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1234 blocked", "enhanced code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1blocked", "enhanced code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "55 5.7.1 short", "reply code");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1 client %3", "unknown %-escape");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1 100%", "unknown %-escape");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1 %s", "unknown %-escape");
	CHECK_VALUE_BAD("dnsbl \"a.example\"", "reply", "554 5.7.1 a\r\n250 ok", "control characters");
	expect_error("[dnsbl \"a.example\"]\n\nreply = 554 5.7.1 %x\n", 3, "reply", "unknown %-escape");

	/* config_set creates instances; config_finish sorts them and refuses duplicates. */
	cfg = config_new();
	char why[256];
	CHECK_INT(config_set(cfg, "dnsbl \"z.example\"", "priority", "5", why, sizeof(why)), 0);
	CHECK_INT(config_set(cfg, "dnsbl \"a.example\"", "match", "any", why, sizeof(why)), 0);
	CHECK_INT(config_set(cfg, "dnsbl \"bad_zone\"", "match", "any", why, sizeof(why)), -1);
	CHECK_INT(config_set(cfg, "dnsbl \"a.example\"", "match", "bogus", why, sizeof(why)), -1);
	CHECK_INT(cfg->ndnsbls, 2);
	CHECK_INT(config_finish(cfg, &err), 0);
	CHECK_STR(cfg->dnsbls[0].zone, "a.example");
	CHECK_INT(cfg->dnsbls[1].priority, 5);
	config_unref(cfg);
}

TEST(config_rcpt_validation_values)
{
	char why[256];
	struct config *cfg = with("recipients", "validation", "CallOut", why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK_STR(cfg->rcpt_validation, "callout");
	config_unref(cfg);
	CHECK_VALUE_OK("recipients", "validation", "none");
	CHECK_VALUE_OK("recipients", "validation", "list");
	CHECK_VALUE_OK("recipients", "validation", "ldap");
	CHECK_VALUE_BAD("recipients", "validation", "ldaps", "expected none, list, callout or ldap, got \"ldaps\"");
	CHECK_VALUE_BAD("recipients", "validation", "", "expected none, list, callout or ldap");
	expect_error("[recipients]\nvalidation = lists\n", 2, "validation", "got \"lists\"");
}

TEST(config_string_list_values)
{
	char why[256];
	struct config *cfg = with("sender", "deny", "Spam@Bad.EXAMPLE, @Worse.example other.EXAMPLE a@b.example",
				  why, sizeof(why));

	CHECK(cfg != NULL);
	CHECK_INT(cfg->nsender_deny, 4);
	CHECK_STR(cfg->sender_deny[0], "@other.example");
	CHECK_STR(cfg->sender_deny[1], "@worse.example");
	CHECK_STR(cfg->sender_deny[2], "Spam@bad.example");
	CHECK_STR(cfg->sender_deny[3], "a@b.example");
	config_unref(cfg);
	cfg = with("helo", "whitelist_senders", "", why, sizeof(why));
	CHECK(cfg != NULL && cfg->helo.nwhitelist_senders == 0);
	config_unref(cfg);
	CHECK_VALUE_OK("recipients", "list", "postmaster@a.example @b.example");
	CHECK_VALUE_OK("sender", "allow", "a#b+tag@a.example");
	CHECK_VALUE_BAD("sender", "allow", "@a.example a.EXAMPLE", "\"@a.example\" is listed twice");
	CHECK_VALUE_BAD("sender", "allow", "bad_domain", "\"bad_domain\" is not an address, @domain or domain");
	CHECK_VALUE_BAD("sender", "allow", "@", "not an address, @domain or domain");
	CHECK_VALUE_BAD("sender", "allow", "@a@b.example", "not an address, @domain or domain");
	CHECK_VALUE_BAD("sender", "allow", "a@", "not a valid domain name");
	CHECK_VALUE_BAD("sender", "allow", "a..b@x.example", "bad local part");
	CHECK_VALUE_BAD("sender", "allow", "a@b@c.example", "exactly one @ in \"a@b@c.example\"");
	expect_error("[greylist]\nwhitelist_senders = ok@a.example, x@y@z\n", 2, "whitelist_senders",
		     "exactly one @");
}

TEST(config_policy_networks)
{
	struct config *cfg = parse_ok(
		"[iplist]\nallow = 192.0.2.0/24\ndeny = 198.51.100.7, 2001:db8::/32\n"
		"[perimeter]\nrelays = 10.0.0.1 10.0.0.2\n"
		"[connlimit]\nwhitelist = 127.0.0.1\n");

	CHECK(cidr_list_contains_text(&cfg->ip_allow, "192.0.2.200"));
	CHECK(!cidr_list_contains_text(&cfg->ip_allow, "192.0.3.1"));
	CHECK(cidr_list_contains_text(&cfg->ip_deny, "198.51.100.7"));
	CHECK(cidr_list_contains_text(&cfg->ip_deny, "2001:db8::25"));
	CHECK(cidr_list_contains_text(&cfg->perimeter_relays, "10.0.0.2"));
	CHECK(cidr_list_contains_text(&cfg->connlimit.whitelist, "127.0.0.1"));
	config_unref(cfg);
	expect_error("[iplist]\ndeny = 1.2.3.4 nope\n", 2, "deny", "bad network \"nope\"");
	expect_error("[perimeter]\nrelays = 10.0.0.0/40\n", 2, "relays", "bad network");
	expect_error("[helo]\nwhitelist = x\n", 2, "whitelist", "bad network");
}

TEST(config_policy_cross_checks)
{
	struct config *cfg;

	expect_error("[recipients]\nenabled = yes\nvalidation = list\n", 3, "validation",
		     "validation = list needs a list or a list_file");
	cfg = parse_ok("[recipients]\nvalidation = list\nlist = @a.example\n");
	CHECK_INT(cfg->nrcpt_list, 1);
	CHECK_STR(cfg->rcpt_list[0], "@a.example");
	config_unref(cfg);
	expect_error("[greylist]\ndelay = 5h\n", 2, "delay", "window (14400s) must be longer than delay (18000s)");
	expect_error("[greylist]\ndelay = 10m\nwindow = 10m\n", 3, "window", "must be longer than delay");
	cfg = parse_ok("[greylist]\ndelay = 10m\nwindow = 11m\n");
	config_unref(cfg);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

/* A config text naming files in the test's scratch directory. */
static struct config *parse_with_files(const char *fmt, struct config_error *err)
{
	char text[4096];
	struct config *cfg;

	snprintf(text, sizeof(text), fmt, unit_tmpdir(), unit_tmpdir(), unit_tmpdir());
	cfg = parse(text, err);
	return cfg;
}

TEST(config_list_files)
{
	char allow[512], deny[512], rcpts[512], buf[1200];
	struct config_error err;
	struct config *cfg;

	snprintf(allow, sizeof(allow), "%s/allow.txt", unit_tmpdir());
	snprintf(deny, sizeof(deny), "%s/deny.txt", unit_tmpdir());
	snprintf(rcpts, sizeof(rcpts), "%s/rcpts.txt", unit_tmpdir());
	write_file(allow, "# trusted partners\n\n192.0.2.0/24\n  198.51.100.1   # one host\r\n2001:db8::/48");
	write_file(deny, "203.0.113.0/24\n");
	write_file(rcpts, "Alice@A.Example\n@b.example # catch-all\nc.example\na#b@a.example\nalice@a.example\n");
	cfg = parse_with_files("[iplist]\nallow = 10.0.0.0/8\nallow_file = %s/allow.txt\ndeny_file = %s/deny.txt\n"
			       "[recipients]\nvalidation = list\nlist = bob@a.example, @b.example\n"
			       "list_file = %s/rcpts.txt\n", &err);
	if (cfg == NULL) {
		config_error_format(&err, buf, sizeof(buf));
		unit_fail(__FILE__, __LINE__, "%s", buf);
		return;
	}
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "10.1.1.1"));
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "192.0.2.1"));
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "198.51.100.1"));
	CHECK(!cidr_list_contains_text(&cfg->ip_allow, "198.51.100.2"));
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "2001:db8:0:1::1"));
	CHECK(cidr_list_contains_text(&cfg->ip_deny, "203.0.113.9"));
	CHECK_INT(cfg->ip_allow_written.count, 1);
	/* Sorted, normalized, each once. */
	CHECK_INT(cfg->nrcpt_list, 6);
	CHECK_STR(cfg->rcpt_list[0], "@b.example");
	CHECK_STR(cfg->rcpt_list[1], "@c.example");
	CHECK_STR(cfg->rcpt_list[2], "Alice@a.example");
	CHECK_STR(cfg->rcpt_list[3], "a#b@a.example");
	CHECK_STR(cfg->rcpt_list[4], "alice@a.example");
	CHECK_STR(cfg->rcpt_list[5], "bob@a.example");
	CHECK_INT(cfg->nrcpt_list_written, 2);
	/* Finishing again rebuilds, it does not add the files twice. */
	CHECK_INT(config_finish(cfg, &err), 0);
	CHECK_INT(cfg->nrcpt_list, 6);
	config_unref(cfg);

	/* Errors name the list file's line, and the key's line in the config. */
	write_file(deny, "203.0.113.0/24\n\n# fine so far\n203.0.113.300\n");
	cfg = parse_with_files("[iplist]\n\ndeny_file = %s/deny.txt\n", &err);
	CHECK(cfg == NULL);
	CHECK_INT(err.line, 3);
	CHECK_STR(err.key, "deny_file");
	CHECK_STR(err.section, "iplist");
	CHECK(strstr(err.message, "/deny.txt:4: bad network \"203.0.113.300\"") != NULL);
	write_file(deny, "203.0.113.1 203.0.113.2\n");
	cfg = parse_with_files("[iplist]\ndeny_file = %s/deny.txt\n", &err);
	CHECK(cfg == NULL && strstr(err.message, "/deny.txt:1: one entry per line") != NULL);
	write_file(rcpts, "ok@a.example\nnot an address\n");
	cfg = parse_with_files("[recipients]\nlist_file = %s/rcpts.txt\n", &err);
	CHECK(cfg == NULL && strstr(err.message, "/rcpts.txt:2: one entry per line") != NULL);
	write_file(rcpts, "ok@a.example\nbad_domain\n");
	cfg = parse_with_files("[recipients]\nlist_file = %s/rcpts.txt\n", &err);
	CHECK(cfg == NULL && strstr(err.message, "/rcpts.txt:2: \"bad_domain\" is not an address") != NULL);
	CHECK_STR(err.key, "list_file");
	cfg = parse_with_files("[iplist]\nallow_file = %s/missing.txt\n", &err);
	CHECK(cfg == NULL && strstr(err.message, "cannot open") != NULL && err.line == 2);
	cfg = parse_with_files("[iplist]\nallow_file = %s\n", &err);
	CHECK(cfg == NULL && strstr(err.message, "not a regular file") != NULL);
	{
		char longline[1100];

		memset(longline, '1', sizeof(longline) - 2);
		longline[sizeof(longline) - 2] = '\n';
		longline[sizeof(longline) - 1] = '\0';
		write_file(allow, longline);
		cfg = parse_with_files("[iplist]\nallow_file = %s/allow.txt\n", &err);
		CHECK(cfg == NULL && strstr(err.message, "/allow.txt:1: line too long") != NULL);
	}
	expect_error("[iplist]\nallow_file = lists/allow.txt\n", 2, "allow_file", "absolute path");
}

TEST(config_list_file_large)
{
	char path[512];
	struct config_error err;
	struct config *cfg;
	struct timespec t0, t1;
	FILE *f;
	double secs;

	snprintf(path, sizeof(path), "%s/big-allow.txt", unit_tmpdir());
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	for (int i = 0; i < 100000; i++) {
		if (i % 1000 == 0)
			fprintf(f, "# block %d\n", i / 1000);
		if (i % 2 == 0)
			fprintf(f, "10.%d.%d.%d\n", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
		else
			fprintf(f, "2001:db8:%x:%x::/64\n", i >> 16, i & 0xffff);
	}
	fclose(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cfg = parse_with_files("[iplist]\nallow_file = %s/big-allow.txt\n", &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (cfg == NULL) {
		fail_with_error(__FILE__, __LINE__, "large allow_file", &err);
		return;
	}
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (secs > 2.0)
		unit_fail(__FILE__, __LINE__, "100,000-line allow_file took %.2fs", secs);
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "10.0.0.0"));
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "10.1.134.158"));
	CHECK(!cidr_list_contains_text(&cfg->ip_allow, "10.1.134.159"));
	CHECK(cidr_list_contains_text(&cfg->ip_allow, "2001:db8:1:869f::1"));
	CHECK(!cidr_list_contains_text(&cfg->ip_allow, "2001:db8:1:869e::1"));
	CHECK_INT(cfg->ip_allow_written.count, 0);
	config_unref(cfg);
}

/* Every key of the defence engines survives a dump and a re-read. */
TEST(config_policy_dump_round_trip)
{
	char text[8192], rcpts[512];
	struct config_error err;
	struct config *cfg, *again;
	char *first = NULL, *second = NULL;
	size_t len1 = 0, len2 = 0;
	FILE *f;

	snprintf(rcpts, sizeof(rcpts), "%s/rcpts.txt", unit_tmpdir());
	write_file(rcpts, "carol@a.example\n");
	snprintf(text, sizeof(text),
		 "[iplist]\nenabled = no\ndirection = inbound\nwhitelist = 192.0.2.1\n"
		 "whitelist_senders = a@b.example, c.example\naction = defer\nscore = -2.25\n"
		 "allow = 10.0.0.0/8\ndeny = 2001:db8::/32\nallow_file = %s/rcpts-ip.txt\ndeny_file = %s/rcpts-ip.txt\n"
		 "[connlimit]\nmax_per_ip = 3\nrate = 30\nwindow = 90s\nban_step = 2m\nban_max = 2h\n"
		 "[pregreet]\nenabled = yes\ngreet_pause = 1500ms\n"
		 "[dnsbl]\nreject_at_rcpt = no\ntimeout = 2500\naction = tag\nscore = 4.5\n"
		 "[dnsbl \"zen.example\"]\nmatch = codes:127.0.0.2, 127.0.0.3\nreply = \"554 5.7.1 %%0 listed at %%2 (%%1) \"\n"
		 "priority = 1\n"
		 "[rhsbl \"dbl.example\"]\nmatch = mask:0xFF\n"
		 "[rhsbl]\nenabled = no\n"
		 "[perimeter]\nrelays = 192.0.2.10 192.0.2.11\n"
		 "[helo]\nrequire_fqdn = no\nrequire_resolvable = yes\n"
		 "[rdns]\nenabled = yes\nrequire_ptr = no\nrequire_fcrdns = yes\n"
		 "[sender]\nallow = ok@a.example\ndeny = @spam.example\nreject_blank = yes\nrequire_resolvable = yes\n"
		 "[spf]\nenabled = yes\nfail = tag\nsoftfail = ignore\ntemperror = reject\npermerror = defer\nheader = no\n"
		 "[recipients]\nvalidation = list\nlist = bob@a.example\nlist_file = %s\ncallout_cache = 2h\n"
		 "callout_negative = 0\ntarpit_after = 0\ntarpit_delay = 250ms\nmax_unknown = 0\n"
		 "[greylist]\nenabled = yes\ndelay = 1m\nwindow = 1d\nwhitelist_ttl = 0\nipv4_prefix = 32\nipv6_prefix = 128\n"
		 "[sender_rate]\nenabled = yes\nlimit = 7\nwindow = 10m\nban_step = 0\nban_max = 0\n"
		 "[subject_rate]\nenabled = yes\ndirection = outbound\nlimit = 1000000\nwindow = 7d\nban_step = 1d\n"
		 "ban_max = 30d\n",
		 unit_tmpdir(), unit_tmpdir(), rcpts);
	snprintf(rcpts, sizeof(rcpts), "%s/rcpts-ip.txt", unit_tmpdir());
	write_file(rcpts, "198.51.100.0/24\n");
	cfg = parse_ok(text);
	CHECK(cfg->iplist.score == -2.25);
	CHECK_INT(cfg->dnsbl_timeout_ms, 2500);
	CHECK_INT(cfg->nrcpt_list, 2);
	CHECK(cidr_list_contains_text(&cfg->ip_deny, "198.51.100.1"));
	f = open_memstream(&first, &len1);
	CHECK_INT(config_dump(cfg, f), 0);
	fclose(f);
	CHECK(strstr(first, "[iplist]\nenabled = no\ndirection = inbound\nwhitelist = 192.0.2.1\n"
			    "whitelist_senders = @c.example, a@b.example\naction = defer\nscore = -2.25\n"
			    "allow = 10.0.0.0/8\ndeny = 2001:db8::/32\n") != NULL);
	CHECK(strstr(first, "window = 90s\nban_step = 2m\n") != NULL);
	CHECK(strstr(first, "greet_pause = 1500ms\n") != NULL);
	CHECK(strstr(first, "timeout = 2500ms\naction = tag\nscore = 4.5\n") == NULL);
	CHECK(strstr(first, "score = 4.5\n") != NULL);
	CHECK(strstr(first, "[dnsbl \"zen.example\"]\nmatch = codes:127.0.0.2,127.0.0.3\n"
			    "reply = \"554 5.7.1 %0 listed at %2 (%1) \"\npriority = 1\n") != NULL);
	CHECK(strstr(first, "[rhsbl \"dbl.example\"]\nmatch = mask:0xff\n") != NULL);
	CHECK(strstr(first, "list = bob@a.example\n") != NULL);
	CHECK(strstr(first, "tarpit_delay = 250ms\n") != NULL);
	CHECK(strstr(first, "softfail = ignore\n") != NULL);
	CHECK(strstr(first, "[helo]\nenabled = yes\ndirection = inbound\nwhitelist =\nwhitelist_senders =\n"
			    "action = tag\nscore = 1.5\n") != NULL);
	again = config_parse("dump", first, len1, &err);
	if (again == NULL) {
		fail_with_error(__FILE__, __LINE__, "dump does not parse", &err);
	} else {
		f = open_memstream(&second, &len2);
		CHECK_INT(config_dump(again, f), 0);
		fclose(f);
		CHECK_STR(second, first);
		CHECK_INT(again->nrcpt_list, 2);
		CHECK(cidr_list_contains_text(&again->ip_allow, "198.51.100.1"));
		config_unref(again);
	}
	free(first);
	free(second);
	config_unref(cfg);
}
