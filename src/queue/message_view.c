/*
 * The view is a sequence of segments: a stretch of the file up to the next
 * edit, that edit's inserted bytes, the file again after its removed range,
 * and so on. A read walks the (sorted, few) edits once, skipping segments
 * that end before the requested offset and copying from the rest, so a
 * chunked sequential reader pays O(edits) per call and never per byte.
 */
#include "queue/message_view.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/io.h"

/* One read request being served: where the caller's buffer stands. */
struct view_read {
	unsigned char *dst;
	size_t len;            /* bytes wanted in total */
	size_t done;           /* bytes copied so far */
	uint64_t offset;       /* view offset of dst[0] */
	bool short_file;       /* the file ended early: stop, like pread */
};

static size_t view_edit_count(const struct envelope *env)
{
	return env ? env->nedits : 0;
}

/* Edits come from the spool (validated there) or the content stage; re-check what the reads rely on. */
static bool view_edits_fit(const struct envelope *env, uint64_t file_len)
{
	size_t n = view_edit_count(env);
	const struct envelope_edit *last;

	if (n == 0)
		return true;
	last = &env->edits[n - 1];
	return last->offset <= file_len && last->remove <= file_len - last->offset;
}

uint64_t message_view_size(const struct envelope *env, uint64_t file_len)
{
	uint64_t size = file_len;

	for (size_t i = 0; i < view_edit_count(env); i++)
		size = size - env->edits[i].remove + env->edits[i].insert_len;
	return size;
}


/*
 * Serve the part of the request that falls in one segment: seg_len view
 * bytes from view offset seg_start, backed by the file at file_off (when
 * mem is NULL) or by mem. -1 on a read error.
 */
static int view_copy_segment(struct view_read *r, uint64_t seg_start, uint64_t seg_len, int fd,
			     uint64_t file_off, const unsigned char *mem)
{
	uint64_t want = r->offset + r->done, skip;
	size_t take;
	ssize_t got;

	if (r->done == r->len || r->short_file || want >= seg_start + seg_len || want < seg_start)
		return 0;
	skip = want - seg_start;
	take = seg_len - skip < r->len - r->done ? (size_t)(seg_len - skip) : r->len - r->done;
	if (mem != NULL) {
		memcpy(r->dst + r->done, mem + skip, take);
		r->done += take;
		return 0;
	}
	got = io_pread_full(fd, r->dst + r->done, take, file_off + skip);
	if (got < 0)
		return -1;
	r->done += (size_t)got;
	r->short_file = (size_t)got < take;
	return 0;
}

ssize_t message_view_pread(const struct envelope *env, int fd, uint64_t file_len, void *buf,
			   size_t len, uint64_t offset)
{
	struct view_read r = { .dst = buf, .len = len < SSIZE_MAX ? len : SSIZE_MAX, .offset = offset };
	uint64_t vpos = 0, fpos = 0;
	size_t n = view_edit_count(env);

	if (!view_edits_fit(env, file_len)) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i <= n && r.done < r.len && !r.short_file; i++) {
		const struct envelope_edit *e = i < n ? &env->edits[i] : NULL;
		uint64_t fend = e ? e->offset : file_len;

		if (view_copy_segment(&r, vpos, fend - fpos, fd, fpos, NULL) < 0)
			return r.done > 0 ? (ssize_t)r.done : -1;
		vpos += fend - fpos;
		if (e == NULL)
			break;
		view_copy_segment(&r, vpos, e->insert_len, -1, 0, e->insert);
		vpos += e->insert_len;
		fpos = e->offset + e->remove;
	}
	return (ssize_t)r.done;
}

size_t message_header_block_len(const char *buf, size_t len, bool complete)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 1;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 1;
	}
	if (complete)
		return len;
	while (len > 0 && buf[len - 1] != '\n')
		len--;
	return len;
}

ssize_t message_view_headers(const struct envelope *env, int fd, uint64_t file_len, size_t max,
			     char **out)
{
	uint64_t size = message_view_size(env, file_len);
	size_t want = size < max ? (size_t)size : max, got = 0, hlen;
	char *buf = xmalloc(want + 1);

	while (got < want) {
		ssize_t n = message_view_pread(env, fd, file_len, buf + got, want - got, got);

		if (n < 0) {
			int saved = errno;

			free(buf);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	hlen = message_header_block_len(buf, got, got == size);
	buf[hlen] = '\0';
	*out = buf;
	return (ssize_t)hlen;
}
