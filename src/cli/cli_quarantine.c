/*
 * `postern quarantine list|show|release|delete`: the quarantined messages
 * of the running gateway, through the admin socket's quarantine.*
 * commands (see queue/quarantine.h).
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli_client.h"
#include "core/alloc.h"

struct quarantine_opts {
	struct cli_common_opts c;        /* -c, --socket, --json, the words */
	const char *sender;
	const char *rcpt;
	const char *category;
	const char *since;
	const char *state;
	long long limit;
};

static const char quarantine_usage[] =
	"usage: postern quarantine [-c FILE] [--socket PATH] [--json] COMMAND\n"
	"\n"
	"commands:\n"
	"  list            quarantined messages, newest first\n"
	"  show ID         one message: envelope, verdict, header block\n"
	"  release ID      deliver the message to its original recipients\n"
	"  delete ID       remove the message\n"
	"\n"
	"list filters:\n"
	"  --sender TEXT   sender address contains TEXT (case-insensitive)\n"
	"  --rcpt TEXT     a recipient address contains TEXT\n"
	"  --since WHEN    arrived since WHEN: a duration back from now (30m, 2h, 7d)\n"
	"                  or a UTC date and time (2024-05-01, 2024-05-01T14:30)\n"
	"  --category C    quarantined for category C (spam, virus, rule, ...)\n"
	"  --state S       held (default), released, deleted, expired, or all\n"
	"  --all           the same as --state all\n"
	"  --limit N       at most N messages (default 10000)\n"
	"\n"
	"options:\n"
	"  -c FILE         configuration file (default " POSTERN_DEFAULT_CONFIG ")\n"
	"  --socket PATH   admin socket of the gateway (instead of the config's)\n"
	"  --json          print the gateway's answer as JSON\n";

/* The value after option argv[*i], or NULL when it is missing. */
/* The filters of `list`, as a cli_option_fn. */
static int quarantine_option(void *arg, int argc, char **argv, int *i)
{
	static const struct {
		const char *name;
		size_t offset;
	} valued[] = {
		{ "--sender", offsetof(struct quarantine_opts, sender) },
		{ "--rcpt", offsetof(struct quarantine_opts, rcpt) },
		{ "--category", offsetof(struct quarantine_opts, category) },
		{ "--since", offsetof(struct quarantine_opts, since) },
		{ "--state", offsetof(struct quarantine_opts, state) },
	};
	struct quarantine_opts *o = arg;
	const char *a = argv[*i], *v;
	char *end;

	for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
		if (strcmp(a, valued[k].name) == 0) {
			if ((v = cli_option_value(argc, argv, i)) == NULL)
				return -1;
			*(const char **)((char *)o + valued[k].offset) = v;
			return 1;
		}
	}
	if (strcmp(a, "--all") == 0) {
		o->state = "all";
		return 1;
	}
	if (strcmp(a, "--limit") != 0)
		return 0;
	if ((v = cli_option_value(argc, argv, i)) == NULL)
		return -1;
	errno = 0;
	o->limit = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || o->limit < 1) {
		fprintf(stderr, "postern: --limit wants a positive number, not '%s'\n", v);
		return -1;
	}
	return 1;
}

static int quarantine_parse(int argc, char **argv, struct quarantine_opts *o)
{
	memset(o, 0, sizeof(*o));
	return cli_parse_options(argc, argv, &o->c, 2, quarantine_option, o);
}

/* "30m", "2h", "7d", "90s" or "90": seconds; -1 when it is not a duration. */
static long long quarantine_duration(const char *s)
{
	char *end;
	long long n;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || n > 100LL * 365 * 86400)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		return n;
	if (strcmp(end, "m") == 0)
		return n * 60;
	if (strcmp(end, "h") == 0)
		return n * 3600;
	if (strcmp(end, "d") == 0)
		return n * 86400;
	if (strcmp(end, "w") == 0)
		return n * 7 * 86400;
	return -1;
}

/* --since: a duration back from now, or a date and time in UTC; -1 when neither. */
static long long quarantine_since(const char *s)
{
	static const char *const formats[] = {
		"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
	};
	long long d = quarantine_duration(s);

	if (d >= 0)
		return (long long)time(NULL) - d;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(s, formats[i], &tm);
		if (end != NULL && *end == '\0') {
			time_t t = timegm(&tm);

			return t == (time_t)-1 ? -1 : (long long)t;
		}
	}
	return -1;
}

static const char *quarantine_str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/*
 * Text from mail (subject, addresses, reasons, headers) made safe for a
 * terminal: control bytes, escape sequences included, become '?'; with
 * multiline, line ends and tabs stay. Cut to fit buf.
 */
static const char *quarantine_clean(const char *s, bool multiline, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool kept = c >= 0x20 && c != 0x7f;

		buf[i] = kept || (multiline && (c == '\r' || c == '\n' || c == '\t')) ? s[i] : '?';
	}
	buf[i] = '\0';
	return buf;
}

static void quarantine_format_time(const json_t *o, const char *key, char *buf, size_t len)
{
	time_t t = (time_t)json_integer_value(json_object_get(o, key));
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
}

/* A line per message: id, arrival, state, category, score, sender, subject. */
static void quarantine_print_list(const json_t *list)
{
	const json_t *m;
	size_t i;

	if (json_array_size(list) > 0)
		printf("%-20s  %-20s  %-8s  %-8s  %6s  %-30s  %s\n", "ID", "ARRIVED", "STATE", "CATEGORY",
		       "SCORE", "FROM", "SUBJECT");
	json_array_foreach(list, i, m) {
		const char *sender = quarantine_str(m, "sender");
		char when[32], from[61], subject[81], category[33];

		quarantine_format_time(m, "arrival", when, sizeof(when));
		printf("%-20s  %-20s  %-8s  %-8s  %6.1f  %-30s  %s\n", quarantine_str(m, "id"), when,
		       quarantine_str(m, "state"),
		       quarantine_clean(quarantine_str(m, "category"), false, category, sizeof(category)),
		       json_real_value(json_object_get(m, "score")),
		       quarantine_clean(sender[0] ? sender : "<>", false, from, sizeof(from)),
		       quarantine_clean(quarantine_str(m, "subject"), false, subject, sizeof(subject)));
	}
	printf("%zu message%s\n", json_array_size(list), json_array_size(list) == 1 ? "" : "s");
}

static void quarantine_print_show(const json_t *m)
{
	const json_t *r;
	const char *headers = json_string_value(json_object_get(m, "headers"));
	char when[32], changed[32], buf[2048];
	size_t i;

	quarantine_format_time(m, "arrival", when, sizeof(when));
	quarantine_format_time(m, "changed", changed, sizeof(changed));
	printf("id:         %s\n", quarantine_str(m, "id"));
	printf("state:      %s (since %s)%s\n", quarantine_str(m, "state"), changed,
	       json_is_true(json_object_get(m, "queued")) ? "" : ", no longer in the queue");
	printf("arrived:    %s\n", when);
	printf("client:     %s\n", quarantine_clean(quarantine_str(m, "client_addr"), false, buf, sizeof(buf)));
	printf("from:       <%s>\n", quarantine_clean(quarantine_str(m, "sender"), false, buf, sizeof(buf)));
	json_array_foreach(json_object_get(m, "recipients"), i, r) {
		const char *addr = json_string_value(r);

		printf("to:         <%s>\n", quarantine_clean(addr ? addr : "", false, buf, sizeof(buf)));
	}
	printf("subject:    %s\n", quarantine_clean(quarantine_str(m, "subject"), false, buf, sizeof(buf)));
	printf("size:       %lld\n", (long long)json_integer_value(json_object_get(m, "size")));
	printf("category:   %s\n", quarantine_clean(quarantine_str(m, "category"), false, buf, sizeof(buf)));
	printf("score:      %.1f (SCL %lld)\n", json_real_value(json_object_get(m, "score")),
	       (long long)json_integer_value(json_object_get(m, "scl")));
	printf("reasons:    %s\n", quarantine_clean(quarantine_str(m, "reasons"), false, buf, sizeof(buf)));
	if (headers != NULL) {
		size_t hlen = strlen(headers) + 1;
		char *h = xmalloc(hlen);

		printf("\n%s", quarantine_clean(headers, true, h, hlen));
		free(h);
	}
}

/* The admin request for the command; NULL after printing why. */
static json_t *quarantine_request(const struct quarantine_opts *o)
{
	const char *cmd = o->c.words[0];
	json_t *req;

	if (strcmp(cmd, "list") == 0) {
		long long since = 0;

		if (o->since != NULL && (since = quarantine_since(o->since)) < 0) {
			fprintf(stderr, "postern: --since wants a duration (2h, 7d) or a date (2024-05-01[T14:30]), not '%s'\n",
				o->since);
			return NULL;
		}
		req = json_pack("{s:s}", "cmd", "quarantine.list");
		if (o->sender)
			json_object_set_new(req, "sender", json_string(o->sender));
		if (o->rcpt)
			json_object_set_new(req, "rcpt", json_string(o->rcpt));
		if (o->category)
			json_object_set_new(req, "category", json_string(o->category));
		if (o->state)
			json_object_set_new(req, "state", json_string(o->state));
		if (since > 0)
			json_object_set_new(req, "since", json_integer(since));
		if (o->limit > 0)
			json_object_set_new(req, "limit", json_integer(o->limit));
		return req;
	}
	return json_pack("{s:s+, s:s}", "cmd", "quarantine.", cmd, "id", o->c.words[1]);
}

/* The words make a command: list, or show/release/delete with an id. */
static bool quarantine_valid_command(const struct quarantine_opts *o)
{
	static const char *const with_id[] = { "show", "release", "delete" };

	if (o->c.nwords == 1)
		return strcmp(o->c.words[0], "list") == 0;
	for (size_t i = 0; o->c.nwords == 2 && i < sizeof(with_id) / sizeof(with_id[0]); i++) {
		if (strcmp(o->c.words[0], with_id[i]) == 0)
			return true;
	}
	return false;
}

int cli_quarantine(int argc, char **argv)
{
	struct quarantine_opts o;
	int rc = quarantine_parse(argc, argv, &o);
	json_t *req, *result = NULL;
	char *path;

	if (rc == 0 && o.c.help) {
		fputs(quarantine_usage, stdout);
		return 0;
	}
	if (rc < 0 || !quarantine_valid_command(&o)) {
		fputs(quarantine_usage, stderr);
		return 2;
	}
	if ((req = quarantine_request(&o)) == NULL)
		return 2;
	if ((path = cli_client_socket_path(o.c.config, o.c.socket)) != NULL)
		result = cli_client_request(path, req);
	json_decref(req);
	free(path);
	if (result == NULL)
		return 1;
	if (o.c.json) {
		json_dumpf(result, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
		fputc('\n', stdout);
	} else if (strcmp(o.c.words[0], "list") == 0) {
		quarantine_print_list(result);
	} else if (strcmp(o.c.words[0], "show") == 0) {
		quarantine_print_show(result);
	} else {
		printf("%s: %s\n", o.c.words[1], quarantine_str(result, "state"));
	}
	json_decref(result);
	return 0;
}
