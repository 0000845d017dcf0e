/*
 * Local delivery into a Maildir (https://cr.yp.to/proto/maildir.html):
 * the message is complete and on disk in tmp/ before it appears in new/,
 * so a reader never sees half a message and a crash leaves only tmp/
 * debris. Sizes are kept in the file name (Maildir++ ",S=") so the quota
 * check needs no stat() per message.
 */
#define LOG_MODULE "maildir"
#include "queue/maildir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "queue/message_view.h"

#define MAILDIR_COPY_CHUNK (64 * 1024)

/*
 * The "Q<counter>" of unique names. Maildir names must be unique per
 * process even within one microsecond, across worker threads, so this
 * one counter is process-wide by definition.
 */
static atomic_ulong maildir_deliveries;

/* Whether a local part or domain may become one path component. */
static bool maildir_part_is_safe(const char *s, size_t len)
{
	if (len == 0 || (len == 1 && s[0] == '.'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
		if (s[i] == '.' && i + 1 < len && s[i + 1] == '.')
			return false;
	}
	return true;
}

static int maildir_append(char *out, size_t outlen, size_t *pos, const char *s, size_t len, bool lower)
{
	if (len >= outlen - *pos)
		return -1;
	for (size_t i = 0; i < len; i++)
		out[(*pos)++] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
	out[*pos] = '\0';
	return 0;
}

int maildir_expand(const char *tmpl, const char *address, char *out, size_t outlen)
{
	const char *at = strrchr(address, '@');
	const char *local = address, *domain;
	size_t local_len, domain_len, pos = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (at == NULL)
		return -1;
	local_len = (size_t)(at - address);
	domain = at + 1;
	domain_len = strlen(domain);
	if (!maildir_part_is_safe(local, local_len) || !maildir_part_is_safe(domain, domain_len))
		return -1;
	for (const char *p = tmpl; *p; p++) {
		int rc;

		if (*p != '%') {
			rc = maildir_append(out, outlen, &pos, p, 1, false);
		} else if (p[1] == 'd') {
			rc = maildir_append(out, outlen, &pos, domain, domain_len, true);
			p++;
		} else if (p[1] == 'u') {
			rc = maildir_append(out, outlen, &pos, local, local_len, false);
			p++;
		} else if (p[1] == '%') {
			rc = maildir_append(out, outlen, &pos, "%", 1, false);
			p++;
		} else {
			rc = -1;
		}
		if (rc < 0) {
			out[0] = '\0';
			return -1;
		}
	}
	if (out[0] != '/') {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

static enum maildir_result maildir_fail(enum maildir_result res, char *err, size_t errlen,
					const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Fill err with the enhanced status code and text the queue turns into
 * its reply (it adds 552 or 451): 5.x.x for what retrying cannot fix,
 * 4.x.x for everything worth a retry. The text may reach the sender in
 * a bounce, so it names no paths; the log has them.
 */
static enum maildir_result maildir_fail(enum maildir_result res, char *err, size_t errlen,
					const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return res;
}

/* mkdir -p with mode 0700 for what it creates; an existing non-directory fails. */
static int maildir_mkdirs(const char *path)
{
	char *copy = xstrdup(path);
	struct stat st;
	int rc = 0;

	for (char *p = copy + 1; rc == 0; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) < 0 && errno != EEXIST)
			rc = -1;
		if (last)
			break;
		*p = '/';
	}
	if (rc == 0 && stat(path, &st) < 0)
		rc = -1;
	if (rc == 0 && !S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		rc = -1;
	}
	free(copy);
	return rc;
}

/* Bytes held by one maildir subfolder: ",S=" sizes, stat() for names without one. */
static int maildir_folder_usage(const char *dir, const char *sub, uint64_t *total)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (snprintf(path, sizeof(path), "%s/%s", dir, sub) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		const char *s = strstr(de->d_name, ",S=");
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		if (s != NULL && s[3] >= '0' && s[3] <= '9') {
			*total += strtoull(s + 3, NULL, 10);
		} else if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
			*total += (uint64_t)st.st_size;
		}
	}
	closedir(d);
	return 0;
}

/* The host name as maildir names want it: "/" and ":" would break the name. */
static void maildir_hostname(char *buf, size_t len)
{
	char host[256];
	size_t pos = 0;

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && pos + 5 < len; p++) {
		if (*p == '/' || *p == ':')
			pos += (size_t)snprintf(buf + pos, len - pos, "\\%03o", (unsigned char)*p);
		else
			buf[pos++] = *p;
	}
	buf[pos] = '\0';
}

static int maildir_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copy the view of src (file_len message bytes, env's edits); a short source is an error (EIO). */
static int maildir_copy(int dst, const struct envelope *env, int src, uint64_t file_len)
{
	char *buf = xmalloc(MAILDIR_COPY_CHUNK);
	uint64_t off = 0, len = message_view_size(env, file_len);
	int rc = 0;

	while (off < len && rc == 0) {
		size_t want = len - off < MAILDIR_COPY_CHUNK ? (size_t)(len - off) : MAILDIR_COPY_CHUNK;
		ssize_t n = message_view_pread(env, src, file_len, buf, want, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			rc = -1;
		} else if (maildir_write_all(dst, buf, (size_t)n) < 0) {
			rc = -1;
		} else {
			off += (uint64_t)n;
		}
	}
	free(buf);
	return rc;
}

static int maildir_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Move the finished file into new/: link() refuses to replace anything; rename where links are not supported. */
static int maildir_publish(const char *tmp_path, const char *new_path)
{
	if (link(tmp_path, new_path) == 0) {
		unlink(tmp_path);
		return 0;
	}
	if (errno == EPERM || errno == ENOTSUP || errno == ENOSYS || errno == EXDEV)
		return rename(tmp_path, new_path);
	return -1;
}

/* Write the tmp file completely and durably; the caller unlinks it on failure. */
static int maildir_write_tmp(const char *tmp_path, const char *header, size_t header_len,
			     const struct envelope *env, int fd, uint64_t len)
{
	int out = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int saved;

	if (out < 0)
		return -1;
	if (maildir_write_all(out, header, header_len) < 0 || maildir_copy(out, env, fd, len) < 0 ||
	    fsync(out) < 0) {
		saved = errno;
		close(out);
		errno = saved;
		return -1;
	}
	return close(out);
}

static bool maildir_address_is_clean(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

/*
 * Where the message goes inside the user's Maildir: the inbox, or the
 * Maildir++ Junk folder (".Junk", marked with a maildirfolder file as
 * Dovecot and Courier expect) for mail at the store threshold.
 */
static int maildir_target(const char *dir, const struct envelope *env, char *out, size_t outlen)
{
	char marker[PATH_MAX];
	int fd;

	if (env == NULL || !env->junk)
		return snprintf(out, outlen, "%s", dir) >= (int)outlen ? -1 : 0;
	if (snprintf(out, outlen, "%s/.Junk", dir) >= (int)outlen ||
	    snprintf(marker, sizeof(marker), "%s/maildirfolder", out) >= (int)sizeof(marker))
		return -1;
	if (maildir_mkdirs(out) < 0)
		return -1;
	fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	return 0;
}

/* The quota counts the inbox and the Junk folder together. */
static int maildir_usage(const char *dir, uint64_t *used)
{
	char junk[PATH_MAX];

	if (maildir_folder_usage(dir, "new", used) < 0 || maildir_folder_usage(dir, "cur", used) < 0)
		return -1;
	if (snprintf(junk, sizeof(junk), "%s/.Junk", dir) >= (int)sizeof(junk))
		return 0;
	if ((maildir_folder_usage(junk, "new", used) < 0 || maildir_folder_usage(junk, "cur", used) < 0) &&
	    errno != ENOENT)
		return -1;
	return 0;
}

enum maildir_result maildir_deliver(const char *user_dir, const char *delivered_to,
				    const struct envelope *env, int fd, uint64_t len,
				    uint64_t quota_bytes, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	char host[512], name[768], tmp_path[PATH_MAX], new_path[PATH_MAX], new_dir[PATH_MAX];
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	char *header;
	size_t header_len;
	uint64_t size, used = 0;
	struct timeval tv;

	if (user_dir[0] != '/' || !maildir_address_is_clean(delivered_to))
		return maildir_fail(MAILDIR_PERMFAIL, err, errlen, "5.3.5 bad maildir path or address");
	if (maildir_target(user_dir, env, dir, sizeof(dir)) < 0) {
		int saved = errno;

		log_warn("cannot create the Junk folder of %s: %s", user_dir, strerror(saved));
		return maildir_fail(MAILDIR_TEMPFAIL, err, errlen, "4.3.0 cannot create the mailbox: %s",
				    strerror(saved));
	}
	header = xasprintf("Delivered-To: %s\r\n", delivered_to);
	header_len = strlen(header);
	size = message_view_size(env, len) + header_len;
	for (size_t i = 0; i < 3; i++) {
		char sub[PATH_MAX];

		if (snprintf(sub, sizeof(sub), "%s/%s", dir, subdirs[i]) >= (int)sizeof(sub)) {
			free(header);
			return maildir_fail(MAILDIR_PERMFAIL, err, errlen, "5.3.5 maildir path too long");
		}
		if (maildir_mkdirs(sub) < 0) {
			int saved = errno;

			log_warn("cannot create %s: %s", sub, strerror(saved));
			free(header);
			return maildir_fail(MAILDIR_TEMPFAIL, err, errlen, "4.3.0 cannot create the mailbox: %s",
					    strerror(saved));
		}
	}
	if (quota_bytes > 0) {
		if (maildir_usage(user_dir, &used) < 0) {
			int saved = errno;

			log_warn("cannot measure %s: %s", dir, strerror(saved));
			free(header);
			return maildir_fail(MAILDIR_TEMPFAIL, err, errlen, "4.3.0 cannot read the mailbox: %s",
					    strerror(saved));
		}
		if (used + size > quota_bytes) {
			free(header);
			return maildir_fail(MAILDIR_PERMFAIL, err, errlen, "5.2.2 mailbox full");
		}
	}
	gettimeofday(&tv, NULL);
	maildir_hostname(host, sizeof(host));
	snprintf(name, sizeof(name), "%lld.M%ldP%ldQ%lu.%s,S=%" PRIu64, (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)getpid(), atomic_fetch_add(&maildir_deliveries, 1) + 1, host,
		 size);
	if (snprintf(tmp_path, sizeof(tmp_path), "%s/tmp/%s", dir, name) >= (int)sizeof(tmp_path) ||
	    snprintf(new_path, sizeof(new_path), "%s/new/%s", dir, name) >= (int)sizeof(new_path)) {
		free(header);
		return maildir_fail(MAILDIR_PERMFAIL, err, errlen, "5.3.5 maildir path too long");
	}
	snprintf(new_dir, sizeof(new_dir), "%s/new", dir);
	if (maildir_write_tmp(tmp_path, header, header_len, env, fd, len) < 0 ||
	    maildir_publish(tmp_path, new_path) < 0) {
		int saved = errno;

		log_warn("cannot write %s: %s", tmp_path, strerror(saved));
		unlink(tmp_path);
		free(header);
		return maildir_fail(MAILDIR_TEMPFAIL, err, errlen, "4.3.0 mailbox write error: %s",
				    strerror(saved));
	}
	free(header);
	if (maildir_fsync_dir(new_dir) < 0) {
		int saved = errno;

		log_warn("cannot sync %s: %s", new_dir, strerror(saved));
		unlink(new_path);
		return maildir_fail(MAILDIR_TEMPFAIL, err, errlen, "4.3.0 mailbox write error: %s",
				    strerror(saved));
	}
	log_debug("delivered to=%s maildir=%s file=%s size=%" PRIu64, delivered_to, dir, name, size);
	return MAILDIR_OK;
}
