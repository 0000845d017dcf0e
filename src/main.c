/*
 * postern: one binary, one subcommand per job. `serve` runs the gateway;
 * the others are the operator's tools.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct subcommand subcommands[] = {
	{ "serve", serve_main, "run the gateway (-c FILE, -f foreground)" },
	{ "check-config", cli_check_config, "validate a configuration file" },
	{ "queue", cli_queue, "list|show ID|delete ID|flush [ID]|hold ID|release ID" },
	{ "status", cli_status, "show the running gateway's state" },
	{ "reload", cli_reload, "reload the configuration of the running gateway" },
	{ "bans", cli_bans, "list|unban KEY: the rate limits' bans of the running gateway" },
	{ "quarantine", cli_quarantine, "list|show ID|release ID|delete ID: the quarantined messages" },
	{ "passwd", cli_passwd, "hash a password (argon2id) for a [user] entry" },
	{ "spf", cli_spf, "check SPF for --ip, --helo and --sender" },
	{ "scan", cli_scan, "run messages through the content pipeline ([--json] FILE...)" },
	{ "rules", cli_rules, "content rule files: check|export|overview FILE, import FILE DEST" },
	{ "dkim", cli_dkim, "verify FILE [--dns S | --keys F] | sign --domain D --selector S --key PEM FILE" },
	{ "learn", cli_learn, "teach the Bayesian filter: spam|ham FILE|DIR..., --forget, --stats" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: postern COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(out, "  %-14s %s\n", subcommands[i].name, subcommands[i].help);
	fprintf(out, "\n`postern COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("postern 0.1.0\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "postern: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
