/*
 * The admin socket: a local unix socket speaking one JSON object per line.
 * Request {"cmd":"queue.list", ...}; reply {"ok":true,"result":...} or
 * {"ok":false,"error":"..."}. The CLI subcommands are its clients.
 */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include <stddef.h>

struct postern;
struct admin_server;

struct admin_server *admin_server_new(struct postern *pt, const char *path, char *err, size_t errlen);
void admin_server_free(struct admin_server *a);

#endif
