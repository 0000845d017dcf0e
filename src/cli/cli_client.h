/*
 * The client side of the running gateway's admin socket
 * (src/admin/admin_socket.c), shared by the subcommands that talk to it:
 * one JSON request line out, one JSON reply line back.
 */
#ifndef POSTERN_CLI_CLIENT_H
#define POSTERN_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>

#define CLI_MAX_WORDS 4

/* What every command that talks to the gateway takes, and its command words. */
struct cli_common_opts {
	const char *config;      /* -c/--config FILE */
	const char *socket;      /* --socket PATH: overrides the config */
	bool json;               /* --json */
	bool help;               /* -h/--help */
	const char *words[CLI_MAX_WORDS];
	int nwords;
};

/*
 * A command's own options: 1 when argv[*i] was one of them (*i moved past
 * its value), 0 when it is not, -1 on a bad or missing value (said why).
 */
typedef int (*cli_option_fn)(void *arg, int argc, char **argv, int *i);

/*
 * Parse argv[1..] into o: the common options and at most max_words words,
 * in any order; own (may be NULL) is asked about every other option
 * first. -1 on a usage error (an unknown option is named on stderr).
 */
int cli_parse_options(int argc, char **argv, struct cli_common_opts *o, int max_words, cli_option_fn own,
		      void *arg);
/* The value after argv[*i] (advancing *i), or NULL after saying it is missing. */
const char *cli_option_value(int argc, char **argv, int *i);

/*
 * The admin socket to talk to: socket_path (--socket) when set, else the
 * [server] admin_socket of config_path (POSTERN_DEFAULT_CONFIG when NULL).
 * Returns a string the caller frees, or NULL after printing why.
 */
char *cli_client_socket_path(const char *config_path, const char *socket_path);

/*
 * Send req to the gateway at socket_path and wait up to 30 seconds for the
 * reply. Returns the "result" of an ok reply (new reference; JSON null when
 * the reply has none), or NULL after printing the connection error or the
 * gateway's error.
 */
json_t *cli_client_request(const char *socket_path, json_t *req);

#endif
