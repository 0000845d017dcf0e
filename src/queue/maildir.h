/*
 * Local delivery into a Maildir: write tmp/<unique>, fsync, rename into
 * new/, fsync the directory. Blocking: called from the worker pool.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

enum maildir_result {
	MAILDIR_OK = 0,
	MAILDIR_TEMPFAIL = -1,   /* I/O error, disk full: retry later */
	MAILDIR_PERMFAIL = -2,   /* over quota, bad path */
};

/* Expand "%d" (domain) and "%u" (local part) of a template; -1 if unsafe (.., /). */
int maildir_expand(const char *tmpl, const char *address, char *out, size_t outlen);
/*
 * Deliver the message of fd as edited by env (queue/message_view.h: len is
 * the message length in the file, env NULL means no edits), prefixed with a
 * "Delivered-To:" header, into dir (created with tmp/new/cur if missing).
 * A junk envelope (env->junk) goes to the Maildir++ folder dir/.Junk.
 * quota_bytes (0: unlimited) counts the inbox and the Junk folder. On failure err holds an enhanced status
 * code and text without the SMTP code ("5.2.2 mailbox full", "4.3.0 ...").
 */
enum maildir_result maildir_deliver(const char *dir, const char *delivered_to,
				    const struct envelope *env, int fd, uint64_t len,
				    uint64_t quota_bytes, char *err, size_t errlen);

#endif
