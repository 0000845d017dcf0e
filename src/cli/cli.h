/*
 * The subcommands of the postern binary. Each returns the process exit
 * status: 0 success, 1 failure the operator must look at, 2 usage error.
 */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#include <stddef.h>
#include <stdint.h>

#define POSTERN_DEFAULT_CONFIG "/etc/postern/postern.conf"

/*
 * src/cli/cli_file.c: all of a message file ("-": standard input), at
 * most max bytes, as a NUL-terminated buffer the caller frees; NULL with
 * the reason (the system's, or "larger than N bytes") in why.
 */
char *cli_read_file(const char *path, uint64_t max, size_t *len, char *why, size_t whylen);

/* src/serve.c: run the gateway. */
int serve_main(int argc, char **argv);
/* src/cli/cli_config.c: validate a config file, print precise errors. */
int cli_check_config(int argc, char **argv);
/* src/cli/cli_passwd.c: read a password, print its argon2id hash. */
int cli_passwd(int argc, char **argv);
/* src/cli/cli_admin.c: clients of the admin socket. */
int cli_queue(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_reload(int argc, char **argv);
/* src/cli/cli_bans.c: list and lift the rate limits' bans of the running gateway. */
int cli_bans(int argc, char **argv);
/* src/cli/cli_quarantine.c: list, show, release and delete quarantined messages. */
int cli_quarantine(int argc, char **argv);
/* src/cli/cli_spf.c: run one SPF check and show its result. */
int cli_spf(int argc, char **argv);
/* src/cli/cli_scan.c: run raw messages through the content pipeline offline. */
int cli_scan(int argc, char **argv);
/* src/cli/cli_rules.c: check, export, overview and import content rule files. */
int cli_rules(int argc, char **argv);
/* src/cli/cli_dkim.c: verify DKIM (and DMARC) of a message file, or sign one. */
int cli_dkim(int argc, char **argv);
/* src/cli/cli_learn.c: teach the Bayesian filter spam and ham, forget, stats, expire. */
int cli_learn(int argc, char **argv);

#endif
