/*
 * `postern bans list [--json] | unban KEY`: the rate/ban tables of the
 * running gateway (connection rate per IP, sender rate, subject rate),
 * through the admin socket's bans.list and bans.unban commands.
 */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli_client.h"


static const char bans_usage[] =
	"usage: postern bans [-c FILE] [--socket PATH] [--json] COMMAND\n"
	"\n"
	"commands:\n"
	"  list            every key of the rate tables: attempts, limit, running ban\n"
	"  unban KEY       lift KEY's ban and forget its attempts (e.g. ip:192.0.2.1)\n"
	"\n"
	"options:\n"
	"  -c FILE         configuration file (default " POSTERN_DEFAULT_CONFIG ")\n"
	"  --socket PATH   admin socket of the gateway (instead of the config's)\n"
	"  --json          print the gateway's answer as JSON\n";


static long long bans_int(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* A line per key, in the gateway's order (per table, most recently seen first). */
static void bans_print_list(const json_t *list)
{
	size_t i, banned = 0;
	const json_t *b;

	if (json_array_size(list) > 0)
		printf("%-40s  %-12s  %11s  %8s  %s\n", "KEY", "KIND", "COUNT/LIMIT", "WINDOW", "BAN LEFT");
	json_array_foreach(list, i, b) {
		const char *key = json_string_value(json_object_get(b, "key"));
		const char *kind = json_string_value(json_object_get(b, "kind"));
		char count[48], left[32];

		snprintf(count, sizeof(count), "%lld/%lld", bans_int(b, "count"), bans_int(b, "limit"));
		if (bans_int(b, "ban_left") > 0) {
			snprintf(left, sizeof(left), "%llds", bans_int(b, "ban_left"));
			banned++;
		} else {
			snprintf(left, sizeof(left), "-");
		}
		printf("%-40s  %-12s  %11s  %7llds  %s\n", key ? key : "?", kind ? kind : "?", count,
		       bans_int(b, "window"), left);
	}
	printf("%zu keys, %zu banned\n", json_array_size(list), banned);
}

int cli_bans(int argc, char **argv)
{
	struct cli_common_opts o;
	int rc = cli_parse_options(argc, argv, &o, 2, NULL, NULL);
	bool list = o.nwords == 1 && strcmp(o.words[0], "list") == 0;
	bool unban = o.nwords == 2 && strcmp(o.words[0], "unban") == 0;
	json_t *req, *result = NULL;
	char *path;

	if (rc == 0 && o.help) {
		fputs(bans_usage, stdout);
		return 0;
	}
	if (rc < 0 || (!list && !unban)) {
		fputs(bans_usage, stderr);
		return 2;
	}
	if (list)
		req = json_pack("{s:s}", "cmd", "bans.list");
	else
		req = json_pack("{s:s, s:s}", "cmd", "bans.unban", "key", o.words[1]);
	if ((path = cli_client_socket_path(o.config, o.socket)) != NULL)
		result = cli_client_request(path, req);
	json_decref(req);
	free(path);
	if (result == NULL)
		return 1;
	if (o.json) {
		json_dumpf(result, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
		fputc('\n', stdout);
	} else if (list) {
		bans_print_list(result);
	} else {
		printf("%s: unbanned\n", o.words[1]);
	}
	json_decref(result);
	return 0;
}
