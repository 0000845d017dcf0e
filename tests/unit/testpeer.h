/*
 * Real peers for unit tests: start a helper program (the test DNS server,
 * an SMTP sink), wait until it is ready, stop it. A peer dies with the test
 * process that started it, so a crashing test leaves nothing behind.
 */
#ifndef POSTERN_TESTPEER_H
#define POSTERN_TESTPEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A TCP port on 127.0.0.1 that was free a moment ago (UDP too). */
unsigned testpeer_free_port(void);
/*
 * Start argv[0] (a path); when ready_line is not NULL wait until the peer
 * prints that line on stdout, else until 127.0.0.1:port accepts connections.
 * -1 when it does not get ready within 10 seconds.
 */
pid_t testpeer_start(char *const argv[], const char *ready_line, unsigned port);
/* SIGTERM and reap. */
void testpeer_stop(pid_t pid);
/* Write text to <unit_tmpdir()>/name; the full path goes to path. */
bool testpeer_write_file(const char *name, const char *text, char *path, size_t pathlen);
/*
 * Find tests/tools/<name> of the source tree: $POSTERN_SRCDIR, the current
 * directory or its parent, the tree this file was compiled from (meson
 * runs tests in the build directory), or beside the test binary's directory.
 */
bool testpeer_tool(const char *name, char *path, size_t pathlen);
/* tests/tools/dnsd.py with this zone on a free port; -1 on failure. */
pid_t testpeer_dnsd(const char *zone, unsigned *port);

#endif
