/*
 * The client side of the running gateway's admin socket
 * (src/admin/admin_socket.c), shared by the subcommands that talk to it:
 * one JSON request line out, one JSON reply line back.
 */
#ifndef POSTERN_CLI_CLIENT_H
#define POSTERN_CLI_CLIENT_H

#include <jansson.h>

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
