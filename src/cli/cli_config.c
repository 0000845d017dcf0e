/*
 * postern check-config: validate a configuration file the way the gateway
 * would load it, and show the effective values (defaults included).
 */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"

static void check_config_usage(FILE *out)
{
	fprintf(out,
		"usage: postern check-config [-c] [FILE] [--dump]\n"
		"\n"
		"Check FILE (default %s) and print \"FILE: configuration OK\",\n"
		"or the first error as FILE:LINE: [section] key: why.\n"
		"\n"
		"  --dump   print every key with its effective value, grouped by section\n",
		POSTERN_DEFAULT_CONFIG);
}

int cli_check_config(int argc, char **argv)
{
	const char *path = NULL;
	struct config_error err;
	struct config *cfg;
	char message[1024];
	bool dump = false;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			check_config_usage(stdout);
			return 0;
		}
		if (strcmp(arg, "--dump") == 0) {
			dump = true;
			continue;
		}
		if (strcmp(arg, "-c") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "postern check-config: -c needs a FILE\n");
				check_config_usage(stderr);
				return 2;
			}
			arg = argv[++i];
		} else if (arg[0] == '-') {
			fprintf(stderr, "postern check-config: unknown option '%s'\n", arg);
			check_config_usage(stderr);
			return 2;
		}
		if (path != NULL) {
			fprintf(stderr, "postern check-config: one configuration file at a time\n");
			check_config_usage(stderr);
			return 2;
		}
		path = arg;
	}
	if (path == NULL)
		path = POSTERN_DEFAULT_CONFIG;
	if ((cfg = config_load(path, &err)) == NULL) {
		config_error_format(&err, message, sizeof(message));
		fprintf(stderr, "%s\n", message);
		return 1;
	}
	if (dump) {
		printf("# effective configuration of %s\n\n", path);
		if (config_dump(cfg, stdout) < 0) {
			fprintf(stderr, "postern check-config: cannot write the dump\n");
			status = 1;
		}
	} else {
		printf("%s: configuration OK\n", path);
	}
	config_unref(cfg);
	return status;
}
