/*
 * The edited view of a queued message: the spool file's message bytes
 * with the envelope's edits (env->edits) applied on the fly. Marks added
 * by the content stage live only in the envelope, so the spool file stays
 * exactly as received; everything that hands a queued message on
 * (delivery, Maildir, bounces, the admin socket) reads it through here.
 *
 * file_len is the message length in the spool file (spool_open_message's
 * len). env may be NULL, meaning no edits: the view is then the file.
 */
#ifndef POSTERN_MESSAGE_VIEW_H
#define POSTERN_MESSAGE_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue/envelope.h"

/* Bytes in the view: file_len, minus what edits remove, plus what they insert. */
uint64_t message_view_size(const struct envelope *env, uint64_t file_len);
/*
 * Like pread(2) on the view: up to len bytes from view offset `offset`,
 * 0 at the end, -1 with errno on a read error or EINVAL when an edit
 * reaches past file_len. Retries EINTR; a file shorter than file_len
 * gives a short count, as pread would.
 */
ssize_t message_view_pread(const struct envelope *env, int fd, uint64_t file_len, void *buf,
			   size_t len, uint64_t offset);
/*
 * The header block of the view, at most max bytes: up to and including
 * the line end before the empty line, or, without an empty line, the whole
 * view if it fits, else its complete lines. A fresh NUL-terminated buffer
 * in *out (caller frees); its length, or -1 with errno.
 */
ssize_t message_view_headers(const struct envelope *env, int fd, uint64_t file_len, size_t max,
			     char **out);

/*
 * Where the header block ends in buf: after the line before the first empty
 * line (CRLF or LF). Without one, the whole buffer when complete (buf holds
 * the whole message), else up to its last whole line.
 */
size_t message_header_block_len(const char *buf, size_t len, bool complete);

#endif
