/*
 * `postern queue|status|reload`: clients of the running gateway's admin
 * socket (src/admin/admin_socket.c). One request line out, one reply line
 * back, printed for a person or, with --json, for a script.
 */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli_client.h"
#include "core/alloc.h"



static const char cli_queue_usage[] =
	"usage: postern queue [-c FILE] [--socket PATH] [--json] COMMAND\n"
	"\n"
	"commands:\n"
	"  list            every queued message with its recipients\n"
	"  show ID         one message: envelope, delivery state, header block\n"
	"  delete ID       remove a message without delivering or bouncing it\n"
	"  hold ID         keep a message from being delivered\n"
	"  release ID      undo hold\n"
	"  flush [ID]      retry one deferred message (or all) now\n"
	"\n"
	"options:\n"
	"  -c FILE         configuration file (default " POSTERN_DEFAULT_CONFIG ")\n"
	"  --socket PATH   admin socket of the gateway (instead of the config's)\n"
	"  --json          print the gateway's answer as JSON\n";

static const char cli_status_usage[] =
	"usage: postern status [-c FILE] [--socket PATH] [--json]\n"
	"\n"
	"Show the running gateway's counters and queue statistics.\n";

static const char cli_reload_usage[] =
	"usage: postern reload [-c FILE] [--socket PATH] [--json]\n"
	"\n"
	"Reload the configuration file of the running gateway; on an error the\n"
	"gateway keeps its current configuration and the error is printed.\n";


/* Usage errors exit 2, --help exits 0; -1 means carry on. */
static int cli_check_usage(int rc, const struct cli_common_opts *o, const char *usage, bool ok)
{
	if (rc == 0 && o->help) {
		fputs(usage, stdout);
		return 0;
	}
	if (rc < 0 || !ok) {
		fputs(usage, stderr);
		return 2;
	}
	return -1;
}

/* One request to the gateway named by -c/--socket; NULL after printing why. */
static json_t *cli_request(const struct cli_common_opts *o, json_t *req)
{
	char *path = cli_client_socket_path(o->config, o->socket);
	json_t *result = path ? cli_client_request(path, req) : NULL;

	free(path);
	return result;
}

static void cli_print_json(const json_t *result)
{
	json_dumpf(result, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

static void cli_format_time(json_int_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
}

static const char *cli_str(const json_t *o, const char *key, const char *fallback)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : fallback;
}

static long long cli_int(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* Recipient lines: address, state and the last reply. */
static size_t cli_print_rcpts(const json_t *m)
{
	const json_t *rcpts = json_object_get(m, "recipients");
	const json_t *r;
	size_t i, pending = 0;

	json_array_foreach(rcpts, i, r) {
		const char *state = cli_str(r, "state", "?");
		const char *reply = cli_str(r, "last_reply", NULL);

		if (strcmp(state, "pending") == 0)
			pending++;
		printf("    %s  %s%s%s\n", cli_str(r, "addr", "?"), state, reply ? "  " : "", reply ? reply : "");
	}
	return pending;
}

/* mailq-like: a line per message, its recipients indented, a summary line. */
static void cli_print_queue_list(const json_t *list)
{
	const json_t *m;
	size_t i, pending = 0;
	char when[64];

	if (json_array_size(list) > 0)
		printf("%-20s  %10s  %-20s  %s\n", "ID", "SIZE", "ARRIVAL", "SENDER");
	json_array_foreach(list, i, m) {
		const char *sender = cli_str(m, "sender", "");
		const char *last_error = cli_str(m, "last_error", NULL);

		cli_format_time(cli_int(m, "arrival"), when, sizeof(when));
		printf("%-20s  %10lld  %-20s  %s%s%s\n", cli_str(m, "id", "?"), cli_int(m, "size"), when,
		       sender[0] ? sender : "<>",
		       json_is_true(json_object_get(m, "held")) ? "  (held)" : "",
		       cli_int(m, "active") > 0 ? "  (delivering)" : "");
		if (last_error != NULL)
			printf("    (%s)\n", last_error);
		pending += cli_print_rcpts(m);
	}
	printf("%zu messages, %zu recipients pending\n", json_array_size(list), pending);
}

static void cli_print_field(const char *key, const char *value)
{
	printf("%-14s %s\n", key, value ? value : "-");
}

static void cli_print_queue_show(const json_t *m)
{
	char when[64], num[32];
	const char *headers = cli_str(m, "headers", NULL);
	long long next = cli_int(m, "next_attempt");

	cli_print_field("id:", cli_str(m, "id", "?"));
	cli_format_time(cli_int(m, "arrival"), when, sizeof(when));
	cli_print_field("arrival:", when);
	cli_print_field("sender:", cli_str(m, "sender", "")[0] ? cli_str(m, "sender", "") : "<>");
	snprintf(num, sizeof(num), "%lld", cli_int(m, "size"));
	cli_print_field("size:", num);
	cli_print_field("client:", cli_str(m, "client_addr", NULL));
	cli_print_field("helo:", cli_str(m, "client_helo", NULL));
	cli_print_field("auth user:", cli_str(m, "auth_user", NULL));
	cli_print_field("envid:", cli_str(m, "envid", NULL));
	cli_print_field("ret:", cli_str(m, "ret", NULL));
	cli_print_field("body:", cli_str(m, "body", NULL));
	cli_print_field("smtputf8:", json_is_true(json_object_get(m, "smtputf8")) ? "yes" : "no");
	snprintf(num, sizeof(num), "%lld", cli_int(m, "attempts"));
	cli_print_field("attempts:", num);
	if (next > 0)
		cli_format_time(next, when, sizeof(when));
	cli_print_field("next attempt:", next > 0 ? when : "now");
	cli_print_field("held:", json_is_true(json_object_get(m, "held")) ? "yes" : "no");
	snprintf(num, sizeof(num), "%lld", cli_int(m, "active"));
	cli_print_field("active:", num);
	cli_print_field("last error:", cli_str(m, "last_error", NULL));
	printf("recipients:\n");
	cli_print_rcpts(m);
	if (headers != NULL) {
		printf("headers:\n");
		/* the spool keeps CRLF; a terminal wants LF */
		for (const char *p = headers; *p; p++) {
			if (*p != '\r')
				fputc(*p, stdout);
		}
		if (headers[0] != '\0' && headers[strlen(headers) - 1] != '\n')
			fputc('\n', stdout);
	}
}

/* Flatten nested objects into "outer inner" keys so every counter is one aligned line. */
static void cli_collect_status(const json_t *o, const char *prefix, json_t *flat)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v) {
		char *name = prefix ? xasprintf("%s %s", prefix, key) : xstrdup(key);

		for (char *p = name; *p; p++) {
			if (*p == '_')
				*p = ' ';
		}
		if (json_is_object(v))
			cli_collect_status(v, name, flat);
		else
			json_object_set(flat, name, v);
		free(name);
	}
}

static void cli_print_status(const json_t *result)
{
	json_t *flat = json_object();
	const char *key;
	json_t *v;
	int width = 0;

	cli_collect_status(result, NULL, flat);
	json_object_foreach(flat, key, v) {
		if ((int)strlen(key) > width)
			width = (int)strlen(key);
	}
	json_object_foreach(flat, key, v) {
		printf("%s:%*s ", key, width - (int)strlen(key), "");
		if (json_is_integer(v))
			printf("%lld\n", (long long)json_integer_value(v));
		else if (json_is_string(v))
			printf("%s\n", json_string_value(v));
		else if (json_is_boolean(v))
			printf("%s\n", json_is_true(v) ? "yes" : "no");
		else
			printf("-\n");
	}
	json_decref(flat);
}

/* What `queue WORD` asks of the gateway and how many words it takes. */
static const struct {
	const char *word;
	const char *cmd;
	int min_args, max_args;      /* words after the sub-command */
	const char *done;            /* human output for actions */
} cli_queue_commands[] = {
	{ "list", "queue.list", 0, 0, NULL },
	{ "show", "queue.show", 1, 1, NULL },
	{ "delete", "queue.delete", 1, 1, "deleted" },
	{ "hold", "queue.hold", 1, 1, "held" },
	{ "release", "queue.release", 1, 1, "released" },
	{ "flush", "queue.flush", 0, 1, "flushed" },
};

int cli_queue(int argc, char **argv)
{
	struct cli_common_opts o;
	int rc = cli_parse_options(argc, argv, &o, CLI_MAX_WORDS, NULL, NULL), usage, nwords;
	json_t *req, *result;
	size_t i, n = sizeof(cli_queue_commands) / sizeof(cli_queue_commands[0]);

	for (i = 0; rc == 0 && o.nwords > 0 && i < n; i++) {
		if (strcmp(o.words[0], cli_queue_commands[i].word) == 0)
			break;
	}
	nwords = o.nwords - 1;
	usage = cli_check_usage(rc, &o, cli_queue_usage,
				o.nwords > 0 && i < n && nwords >= cli_queue_commands[i].min_args &&
				nwords <= cli_queue_commands[i].max_args);
	if (usage >= 0)
		return usage;
	req = json_pack("{s:s}", "cmd", cli_queue_commands[i].cmd);
	if (nwords == 1)
		json_object_set_new(req, "id", json_string(o.words[1]));
	result = cli_request(&o, req);
	json_decref(req);
	if (result == NULL)
		return 1;
	if (o.json)
		cli_print_json(result);
	else if (strcmp(cli_queue_commands[i].word, "list") == 0)
		cli_print_queue_list(result);
	else if (strcmp(cli_queue_commands[i].word, "show") == 0)
		cli_print_queue_show(result);
	else if (nwords == 1)
		printf("%s: %s\n", o.words[1], cli_queue_commands[i].done);
	else
		printf("all deferred messages flushed\n");
	json_decref(result);
	return 0;
}

int cli_status(int argc, char **argv)
{
	struct cli_common_opts o;
	int rc = cli_parse_options(argc, argv, &o, CLI_MAX_WORDS, NULL, NULL);
	int usage = cli_check_usage(rc, &o, cli_status_usage, o.nwords == 0);
	json_t *req, *result;

	if (usage >= 0)
		return usage;
	req = json_pack("{s:s}", "cmd", "status");
	result = cli_request(&o, req);
	json_decref(req);
	if (result == NULL)
		return 1;
	if (o.json)
		cli_print_json(result);
	else
		cli_print_status(result);
	json_decref(result);
	return 0;
}

int cli_reload(int argc, char **argv)
{
	struct cli_common_opts o;
	int rc = cli_parse_options(argc, argv, &o, CLI_MAX_WORDS, NULL, NULL);
	int usage = cli_check_usage(rc, &o, cli_reload_usage, o.nwords == 0);
	json_t *req, *result;

	if (usage >= 0)
		return usage;
	req = json_pack("{s:s}", "cmd", "reload");
	result = cli_request(&o, req);
	json_decref(req);
	if (result == NULL)
		return 1;
	if (o.json)
		cli_print_json(result);
	else
		printf("configuration reloaded from %s\n", cli_str(result, "config", "the config file"));
	json_decref(result);
	return 0;
}
