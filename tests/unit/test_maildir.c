#include "unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/envelope.h"
#include "queue/maildir.h"

#define MESSAGE "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
#define DELIVERED "Delivered-To: bob@example.net\r\n"

TEST(maildir_expand_substitutes)
{
	char out[256];

	CHECK_INT(maildir_expand("/var/mail/%d/%u", "Bob@Example.COM", out, sizeof(out)), 0);
	CHECK_STR(out, "/var/mail/example.com/Bob");
	CHECK_INT(maildir_expand("/m/%u@%d/100%%/Maildir", "a.b+c@d.org", out, sizeof(out)), 0);
	CHECK_STR(out, "/m/a.b+c@d.org/100%/Maildir");
	CHECK_INT(maildir_expand("/srv/mail/static", "x@y", out, sizeof(out)), 0);
	CHECK_STR(out, "/srv/mail/static");
	/* an address with several '@': the domain follows the last one */
	CHECK_INT(maildir_expand("/m/%d/%u", "\"a@b\"@c.example", out, sizeof(out)), 0);
	CHECK_STR(out, "/m/c.example/\"a@b\"");
}

TEST(maildir_expand_refuses_unsafe)
{
	char out[64];

	CHECK_INT(maildir_expand("/var/mail/%d/%u", "../etc@example.com", out, sizeof(out)), -1);
	CHECK_STR(out, "");
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a..b@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a/b@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a@exa/mple.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a@..", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", ".@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a@", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "no-at-sign", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a\nb@example.com", out, sizeof(out)), -1);
	/* relative result, unknown escape, trailing % */
	CHECK_INT(maildir_expand("mail/%d/%u", "a@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("%u", "a@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/m/%x", "a@example.com", out, sizeof(out)), -1);
	CHECK_INT(maildir_expand("/m/%", "a@example.com", out, sizeof(out)), -1);
	/* does not fit */
	CHECK_INT(maildir_expand("/var/mail/%d/%u", "a-rather-long-local-part@an-even-longer-domain-name.example",
				 out, sizeof(out)), -1);
	CHECK_STR(out, "");
}

static int write_message(const char *body, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/spooled", unit_tmpdir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, body, len) != (ssize_t)len)
		return -1;
	return fd;
}

/* Names of the entries of dir (not . and ..); returns how many. */
static int list_dir(const char *dir, char names[][256], int max)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = calloc(1, 65536);

	*len = f ? fread(buf, 1, 65535, f) : 0;
	if (f)
		fclose(f);
	return buf;
}

TEST(maildir_deliver_writes_exact_bytes)
{
	char dir[512], sub[600], names[4][256], path[1024], err[256] = "";
	struct stat st;
	size_t len;
	char *data;
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	CHECK(fd >= 0);
	snprintf(dir, sizeof(dir), "%s/mail/example.net/bob", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)),
		  MAILDIR_OK);
	CHECK_STR(err, "");
	const char *subs[] = { "tmp", "new", "cur" };
	for (int i = 0; i < 3; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		CHECK_INT(stat(sub, &st), 0);
		CHECK(S_ISDIR(st.st_mode));
		CHECK_INT(st.st_mode & 0777, 0700);
	}
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	CHECK_INT(list_dir(sub, names, 4), 0);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 4), 1);

	/* <sec>.M<usec>P<pid>Q<n>.<host>,S=<size> */
	char suffix[64];
	snprintf(suffix, sizeof(suffix), ",S=%zu", strlen(DELIVERED MESSAGE));
	CHECK(strstr(names[0], suffix) != NULL);
	CHECK(strstr(names[0], ".M") != NULL);
	char pid[32];
	snprintf(pid, sizeof(pid), "P%ldQ", (long)getpid());
	CHECK(strstr(names[0], pid) != NULL);

	snprintf(path, sizeof(path), "%s/%s", sub, names[0]);
	data = read_file(path, &len);
	CHECK_INT(len, strlen(DELIVERED MESSAGE));
	CHECK(memcmp(data, DELIVERED MESSAGE, len) == 0);
	free(data);
	close(fd);
}

TEST(maildir_deliver_twice_gives_unique_names)
{
	char dir[512], sub[600], names[4][256];
	char err[256];
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)), MAILDIR_OK);
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)), MAILDIR_OK);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 4), 2);
	CHECK(strcmp(names[0], names[1]) != 0);
	close(fd);
}

TEST(maildir_deliver_large_message)
{
	size_t n = 300 * 1024 + 17;
	char *big = malloc(n);
	char dir[512], sub[600], names[2][256], path[1024], err[256];
	struct stat st;
	int fd;

	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	fd = write_message(big, n);
	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, n, 0, err, sizeof(err)), MAILDIR_OK);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 2), 1);
	snprintf(path, sizeof(path), "%s/%s", sub, names[0]);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_size, n + strlen(DELIVERED));
	free(big);
	close(fd);
}

TEST(maildir_quota_refuses_when_full)
{
	char dir[512], sub[600], names[4][256], err[256] = "";
	size_t size = strlen(DELIVERED MESSAGE);
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	/* room for exactly two messages */
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 2 * size, err, sizeof(err)), MAILDIR_OK);
	/* a message read by the user (moved to cur/) still counts */
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 4), 1);
	char from[1024], to[1024];
	snprintf(from, sizeof(from), "%s/new/%s", dir, names[0]);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", dir, names[0]);
	CHECK_INT(rename(from, to), 0);
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 2 * size, err, sizeof(err)), MAILDIR_OK);
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 2 * size, err, sizeof(err)),
		  MAILDIR_PERMFAIL);
	CHECK_STR(err, "5.2.2 mailbox full");
	CHECK_INT(list_dir(sub, names, 4), 1);
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	CHECK_INT(list_dir(sub, names, 4), 0);
	/* unlimited */
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)), MAILDIR_OK);
	close(fd);
}

TEST(maildir_short_source_is_tempfail_and_cleans_up)
{
	char dir[512], sub[600], names[4][256], err[256] = "";
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE) + 100, 0, err, sizeof(err)),
		  MAILDIR_TEMPFAIL);
	CHECK(strncmp(err, "4.3.0 ", 6) == 0);
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	CHECK_INT(list_dir(sub, names, 4), 0);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 4), 0);
	/* an unreadable source */
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, -1, 10, 0, err, sizeof(err)), MAILDIR_TEMPFAIL);
	CHECK_INT(list_dir(sub, names, 4), 0);
	close(fd);
}

TEST(maildir_bad_path_or_address)
{
	char dir[512], err[256];
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	CHECK_INT(maildir_deliver("relative/Maildir", "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)),
		  MAILDIR_PERMFAIL);
	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net\r\nX-Evil: 1", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)),
		  MAILDIR_PERMFAIL);
	/* a file where a directory should be */
	char file[600];
	snprintf(file, sizeof(file), "%s/plain", unit_tmpdir());
	close(open(file, O_WRONLY | O_CREAT, 0600));
	snprintf(dir, sizeof(dir), "%s/plain/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", NULL, fd, strlen(MESSAGE), 0, err, sizeof(err)),
		  MAILDIR_TEMPFAIL);
	CHECK(strncmp(err, "4.3.0 cannot create the mailbox", 31) == 0);
	close(fd);
}

/* The envelope's edits (marks) reach the mailbox; the size in the name counts them. */
TEST(maildir_deliver_applies_edits)
{
	static const char marked[] = "From: alice@example.org\r\nX-Postern-Status: spam\r\n"
				     "Subject: [SPAM] hi\r\n\r\nhello\r\n";
	char dir[512], sub[600], names[4][256], path[1024], suffix[64], err[256] = "";
	struct envelope *env = envelope_new();
	size_t len;
	char *data;
	int fd = write_message(MESSAGE, strlen(MESSAGE));

	CHECK(fd >= 0);
	CHECK_INT(envelope_add_edit(env, 25, 0, "X-Postern-Status: spam\r\n", 24), 0);
	CHECK_INT(envelope_add_edit(env, 34, 0, "[SPAM] ", 7), 0);
	snprintf(dir, sizeof(dir), "%s/Maildir", unit_tmpdir());
	CHECK_INT(maildir_deliver(dir, "bob@example.net", env, fd, strlen(MESSAGE), 0, err, sizeof(err)),
		  MAILDIR_OK);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK_INT(list_dir(sub, names, 4), 1);
	snprintf(suffix, sizeof(suffix), ",S=%zu", strlen(DELIVERED) + strlen(marked));
	CHECK(strstr(names[0], suffix) != NULL);
	snprintf(path, sizeof(path), "%s/%s", sub, names[0]);
	data = read_file(path, &len);
	CHECK_INT(len, strlen(DELIVERED) + strlen(marked));
	CHECK(memcmp(data, DELIVERED, strlen(DELIVERED)) == 0);
	CHECK(memcmp(data + strlen(DELIVERED), marked, strlen(marked)) == 0);
	free(data);
	envelope_free(env);
	close(fd);
}
