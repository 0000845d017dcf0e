#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#include "core/alloc.h"
#include "queue/envelope.h"
#include "queue/spool.h"
#include "unit.h"

struct commit_ctx {
	unsigned done;
	unsigned failed;
	int last_error;
};

struct recovered {
	struct envelope **envs;
	size_t n;
};

static void commit_done(void *arg, int error)
{
	struct commit_ctx *c = arg;

	c->done++;
	if (error) {
		c->failed++;
		c->last_error = error;
	}
}

static void collect_env(void *arg, struct envelope *env)
{
	struct recovered *r = arg;

	r->envs = xreallocarray(r->envs, r->n + 1, sizeof(*r->envs));
	r->envs[r->n++] = env;
}

static void recovered_free(struct recovered *r)
{
	for (size_t i = 0; i < r->n; i++)
		envelope_free(r->envs[i]);
	free(r->envs);
	r->envs = NULL;
	r->n = 0;
}

/* Run the loop without blocking forever if a callback never comes. */
static void run_until(struct event_base *base, struct commit_ctx *c, unsigned want)
{
	struct timespec ms = { 0, 1000 * 1000 };

	for (int i = 0; i < 30000 && c->done < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (c->done < want)
			nanosleep(&ms, NULL);
	}
}

static char *spool_dir(void)
{
	return xasprintf("%s/spool", unit_tmpdir());
}

static size_t count_files(const char *dir, const char *sub)
{
	char *path = xasprintf("%s/%s", dir, sub);
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	free(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

static bool file_exists(const char *dir, const char *sub, const char *name)
{
	char *path = xasprintf("%s/%s/%s", dir, sub, name);
	bool ok = access(path, F_OK) == 0;

	free(path);
	return ok;
}

/* Message bytes that include what could confuse a parser: NULs, CRLF, a fake trailer. */
static size_t body_size(size_t i)
{
	static const size_t sizes[] = { 0, 1, 100, 4096, 65535, 65536, 65537, 200000, 777 };

	return sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
}

static char *make_body(size_t i, size_t len)
{
	static const char fake[] = "\r\nPSTRN1 0000000000000000 00000000\n";
	char *b = xmalloc(len + 1);

	for (size_t k = 0; k < len; k++)
		b[k] = (char)((k * 31 + i * 7) & 0xff);
	if (len > sizeof(fake))
		memcpy(b + len - sizeof(fake), fake, sizeof(fake) - 1);
	return b;
}

/* An envelope that exercises every field kind, varied by i. */
static struct envelope *make_env(const char *id, size_t i)
{
	struct envelope *env = envelope_new();
	struct envelope_rcpt *r;

	memcpy(env->id, id, QUEUE_ID_LEN + 1);
	env->arrival = (time_t)1700000000 + (time_t)i;
	switch (i % 4) {
	case 0:
		env->sender = xstrdup("");
		break;
	case 1:
		env->sender = xstrdup("usér@exämple.org");
		break;
	case 2:
		env->sender = xstrdup("-");
		break;
	default:
		env->sender = xstrdup("\"odd local%part\"@example.com");
		break;
	}
	env->ret = (enum dsn_ret)(i % 3);
	env->envid = i % 2 ? xasprintf("QQ%zu+2Bx y\t%%", i) : NULL;
	env->body = (enum body_type)(i % 3);
	env->smtputf8 = i % 2;
	env->is_bounce = i % 5 == 0;
	env->client_addr = i % 7 == 0 ? NULL : xstrdup("2001:db8::1");
	env->client_helo = i % 3 == 0 ? xstrdup("") : xstrdup("mail.example.net");
	env->auth_user = i % 2 ? xstrdup("alice") : NULL;
	r = envelope_add_rcpt(env, "bob@example.com");
	r->notify = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE;
	r->orcpt = xstrdup("rfc822;bob@example.com");
	if (i % 2) {
		r = envelope_add_rcpt(env, "用户@例子.广告");
		r->notify = 0;
		r = envelope_add_rcpt(env, "carol+tag@[192.0.2.7]");
		r->notify = DSN_NOTIFY_NEVER;
		r->orcpt = xstrdup("utf-8;carol\\x{20}x");
	}
	return env;
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void check_env_equal(const struct envelope *got, const struct envelope *want)
{
	CHECK_STR(got->id, want->id);
	CHECK_INT(got->arrival, want->arrival);
	CHECK(str_eq(got->sender, want->sender));
	CHECK_INT(got->ret, want->ret);
	CHECK(str_eq(got->envid, want->envid));
	CHECK_INT(got->body, want->body);
	CHECK_INT(got->smtputf8, want->smtputf8);
	CHECK_INT(got->is_bounce, want->is_bounce);
	CHECK(str_eq(got->client_addr, want->client_addr));
	CHECK(str_eq(got->client_helo, want->client_helo));
	CHECK(str_eq(got->auth_user, want->auth_user));
	CHECK_INT(got->nrcpts, want->nrcpts);
	for (size_t k = 0; k < got->nrcpts && k < want->nrcpts; k++) {
		CHECK_STR(got->rcpts[k].addr, want->rcpts[k].addr);
		CHECK(str_eq(got->rcpts[k].orcpt, want->rcpts[k].orcpt));
		CHECK_INT(got->rcpts[k].notify, want->rcpts[k].notify);
		CHECK_INT(got->rcpts[k].state, RCPT_PENDING);
	}
}

static struct spool *open_spool(const char *dir, struct event_base *base, bool syncfs)
{
	char err[256] = "";
	struct spool *s = spool_open(dir, base, syncfs, err, sizeof(err));

	if (s == NULL)
		unit_fail(__FILE__, __LINE__, "spool_open: %s", err);
	return s;
}

/* Write a message in uneven chunks through the buffered writer. */
static struct spool_writer *write_message(struct spool *s, const char *id, const char *body,
					  size_t len)
{
	struct spool_writer *w = spool_writer_new(s, id);
	size_t off = 0, chunk = 1;

	CHECK(w != NULL);
	while (w && off < len) {
		size_t n = len - off < chunk ? len - off : chunk;

		CHECK_INT(spool_writer_write(w, body + off, n), 0);
		off += n;
		chunk = chunk * 3 + 7;
		if (chunk > 100000)
			chunk = 1;
	}
	if (w)
		CHECK_INT(spool_writer_size(w), len);
	return w;
}

static void check_message_bytes(struct spool *s, const char *id, const char *body, size_t len)
{
	uint64_t mlen = 0;
	char *got;
	int fd = -1;

	CHECK_INT(spool_open_message(s, id, &fd, &mlen), 0);
	CHECK_INT(mlen, len);
	if (fd < 0 || mlen != len)
		return;
	got = xmalloc(len + 1);
	CHECK_INT(pread(fd, got, len, 0), (ssize_t)len);
	CHECK(memcmp(got, body, len) == 0);
	free(got);
	close(fd);
}

/*
 * Many commits pending before the loop runs must be synced in fewer
 * batches than commits, and come back byte for byte after a restart.
 */
static void roundtrip(bool syncfs)
{
	enum { N = 120 };
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, syncfs);
	struct envelope *want[N];
	struct commit_ctx c = { 0 };
	struct recovered rec = { 0 };
	struct spool_stats st;
	char id[QUEUE_ID_LEN + 1];

	for (size_t i = 0; i < N; i++) {
		size_t len = body_size(i);
		char *body = make_body(i, len);
		struct spool_writer *w;

		spool_new_id(s, id);
		want[i] = make_env(id, i);
		w = write_message(s, id, body, len);
		spool_commit(s, w, want[i], commit_done, &c);
		free(body);
	}
	CHECK(c.done == 0);
	run_until(base, &c, N);
	CHECK_INT(c.done, N);
	CHECK_INT(c.failed, 0);
	spool_get_stats(s, &st);
	CHECK_INT(st.commits, N);
	CHECK_INT(st.failures, 0);
	CHECK(st.syncs >= 1);
	CHECK(st.syncs < N);
	printf("    %s: %d commits in %llu syncs\n", syncfs ? "syncfs" : "fdatasync", N,
	       (unsigned long long)st.syncs);
	CHECK_INT(count_files(dir, "incoming"), 0);
	CHECK_INT(count_files(dir, "queue"), N);
	spool_close(s);
	event_base_free(base);

	base = event_base_new();
	s = open_spool(dir, base, syncfs);
	CHECK_INT(spool_recover(s, collect_env, &rec), N);
	CHECK_INT(rec.n, N);
	for (size_t i = 0; i < N && i < rec.n; i++) {
		size_t len = body_size(i);
		char *body = make_body(i, len);

		check_env_equal(rec.envs[i], want[i]);
		CHECK_INT(rec.envs[i]->size, len);
		CHECK(!rec.envs[i]->held);
		check_message_bytes(s, rec.envs[i]->id, body, len);
		free(body);
	}
	for (size_t i = 0; i < N; i++)
		envelope_free(want[i]);
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	free(dir);
}

TEST(spool_group_commit_roundtrip_syncfs)
{
	roundtrip(true);
}

TEST(spool_group_commit_roundtrip_fdatasync)
{
	roundtrip(false);
}

/* Commit one small message and wait for it; returns its envelope. */
static struct envelope *commit_one(struct spool *s, struct event_base *base, size_t i)
{
	char id[QUEUE_ID_LEN + 1];
	struct commit_ctx c = { 0 };
	struct envelope *env;
	char *body = make_body(i, 300);

	spool_new_id(s, id);
	env = make_env(id, i);
	spool_commit(s, write_message(s, id, body, 300), env, commit_done, &c);
	run_until(base, &c, 1);
	CHECK_INT(c.done, 1);
	CHECK_INT(c.failed, 0);
	free(body);
	return env;
}

static void write_file(const char *dir, const char *sub, const char *name, const void *data,
		       size_t len)
{
	char *path = xasprintf("%s/%s/%s", dir, sub, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	CHECK_INT(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(path);
}

static char *read_file(const char *dir, const char *sub, const char *name, size_t *len)
{
	char *path = xasprintf("%s/%s/%s", dir, sub, name);
	struct stat sb;
	char *data = NULL;
	int fd = open(path, O_RDONLY);

	*len = 0;
	if (fd >= 0 && fstat(fd, &sb) == 0) {
		data = xmalloc((size_t)sb.st_size + 1);
		*len = (size_t)read(fd, data, (size_t)sb.st_size);
		data[*len] = '\0';
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return data;
}

TEST(spool_abort_and_incoming_leftovers_are_gone)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct recovered rec = { 0 };
	char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1];
	struct spool_writer *w;
	struct envelope *kept;

	spool_new_id(s, id);
	w = write_message(s, id, "hello\r\n", 7);
	CHECK(file_exists(dir, "incoming", id));
	spool_writer_abort(w);
	CHECK(!file_exists(dir, "incoming", id));

	/* the same id cannot be opened twice while a file exists */
	spool_new_id(s, id2);
	w = spool_writer_new(s, id2);
	CHECK(w != NULL);
	CHECK(spool_writer_new(s, id2) == NULL && errno == EEXIST);
	spool_writer_abort(w);
	CHECK(spool_writer_new(s, "../../etc/passwd") == NULL && errno == EINVAL);

	kept = commit_one(s, base, 1);
	/* a crash mid-DATA leaves files in incoming/, even complete-looking ones */
	spool_new_id(s, id);
	write_file(dir, "incoming", id, "partial message", 15);
	write_file(dir, "incoming", "junk", "x", 1);
	spool_close(s);
	event_base_free(base);

	base = event_base_new();
	s = open_spool(dir, base, true);
	CHECK_INT(spool_recover(s, collect_env, &rec), 1);
	CHECK_INT(rec.n, 1);
	if (rec.n == 1)
		check_env_equal(rec.envs[0], kept);
	CHECK_INT(count_files(dir, "incoming"), 0);
	CHECK_INT(count_files(dir, "corrupt"), 0);
	recovered_free(&rec);
	envelope_free(kept);
	spool_close(s);
	event_base_free(base);
	free(dir);
}

/* Rewrite a spool file's envelope and put a valid trailer (crc included) around it. */
static void rewrite_envelope(const char *dir, const char *id, const char *from, const char *to)
{
	size_t len, msglen;
	char *data = read_file(dir, "queue", id, &len);
	char *env, *at, *out, *file;
	unsigned long long off = 0;
	char trailer[64];

	CHECK(data != NULL && len > 33);
	if (data == NULL || len <= 33) {
		free(data);
		return;
	}
	CHECK_INT(sscanf(data + len - 33, "PSTRN1 %16llx", &off), 1);
	msglen = (size_t)off;
	env = xstrndup(data + msglen, len - 33 - msglen);
	at = strstr(env, from);
	CHECK(at != NULL);
	if (at) {
		out = xasprintf("%.*s%s%s", (int)(at - env), env, to, at + strlen(from));
		snprintf(trailer, sizeof(trailer), "PSTRN1 %016llx %08lx\n", off,
			 crc32(0L, (const Bytef *)out, (uInt)strlen(out)));
		CHECK_INT(strlen(trailer), 33);
		file = xmalloc(msglen + strlen(out) + 33);
		memcpy(file, data, msglen);
		memcpy(file + msglen, out, strlen(out));
		memcpy(file + msglen + strlen(out), trailer, 33);
		write_file(dir, "queue", id, file, msglen + strlen(out) + 33);
		free(file);
		free(out);
	}
	free(env);
	free(data);
}

static void flip_byte(const char *dir, const char *id, size_t from_end)
{
	size_t len;
	char *data = read_file(dir, "queue", id, &len);

	CHECK(data != NULL && len > from_end);
	if (data && len > from_end) {
		data[len - from_end] ^= 0x01;
		write_file(dir, "queue", id, data, len);
	}
	free(data);
}

TEST(spool_corrupt_files_are_moved_aside_not_delivered)
{
	enum { N = 6 };
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct envelope *env[N];
	struct recovered rec = { 0 };
	char *path, *copy;
	size_t len;

	for (size_t i = 0; i < N; i++)
		env[i] = commit_one(s, base, i);
	env[0]->rcpts[0].state = RCPT_DELIVERED;
	spool_state_record(s, env[0], 0);
	spool_close(s);
	event_base_free(base);

	/* 0: truncated */
	path = xasprintf("%s/queue/%s", dir, env[0]->id);
	CHECK_INT(truncate(path, 200), 0);
	free(path);
	/* 1: trailer magic damaged */
	flip_byte(dir, env[1]->id, 33);
	/* 2: one envelope byte flipped: crc mismatch */
	flip_byte(dir, env[2]->id, 40);
	/* 3: a record out of range, with a correct crc */
	rewrite_envelope(dir, env[3]->id, "\nU 1\n", "\nU 2\n");
	/* 4: size record disagreeing with the offset, correct crc */
	rewrite_envelope(dir, env[4]->id, "\nZ 300\n", "\nZ 301\n");
	/* a good file under another name: the id record does not match */
	copy = read_file(dir, "queue", env[5]->id, &len);
	write_file(dir, "queue", "00000000000000000000", copy, len);
	free(copy);
	write_file(dir, "queue", "not-an-id", "x", 1);
	write_file(dir, "queue", "00000000000000000001",
		   "abcPSTRN1 ffffffffffffffff 00000000\n", 36);

	base = event_base_new();
	s = open_spool(dir, base, true);
	CHECK_INT(spool_recover(s, collect_env, &rec), 1);
	CHECK_INT(rec.n, 1);
	if (rec.n == 1)
		check_env_equal(rec.envs[0], env[5]);
	CHECK_INT(count_files(dir, "queue"), 1);
	CHECK_INT(count_files(dir, "corrupt"), 9);
	for (size_t i = 0; i < 5; i++)
		CHECK(file_exists(dir, "corrupt", env[i]->id));
	CHECK(file_exists(dir, "corrupt", "not-an-id"));
	CHECK(file_exists(dir, "corrupt", "00000000000000000000"));
	CHECK(file_exists(dir, "corrupt", "00000000000000000001"));
	path = xasprintf("%s.state", env[0]->id);
	CHECK(file_exists(dir, "corrupt", path));
	CHECK(!file_exists(dir, "state", env[0]->id));
	free(path);
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);

	/* a second recovery finds the same single message and moves nothing more */
	base = event_base_new();
	s = open_spool(dir, base, false);
	CHECK_INT(spool_recover(s, collect_env, &rec), 1);
	CHECK_INT(rec.n, 1);
	CHECK_INT(count_files(dir, "corrupt"), 9);
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	for (size_t i = 0; i < N; i++)
		envelope_free(env[i]);
	free(dir);
}

static void append_file(const char *dir, const char *sub, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s/%s", dir, sub, name);
	int fd = open(path, O_WRONLY | O_APPEND);

	CHECK(fd >= 0);
	CHECK_INT(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	free(path);
}

TEST(spool_state_log_is_replayed)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct recovered rec = { 0 };
	struct envelope *env = commit_one(s, base, 1);   /* three recipients */
	struct envelope *other = commit_one(s, base, 2);
	struct envelope_rcpt *r;
	char big[3000];

	CHECK_INT(env->nrcpts, 3);
	r = &env->rcpts[2];
	r->last_code = 451;
	r->last_reply = xstrdup("451 4.3.0 try later");
	r->remote = xstrdup("mx1.example.com[192.0.2.1]");
	spool_state_record(s, env, 2);
	r = &env->rcpts[0];
	r->state = RCPT_DELIVERED;
	r->last_code = 250;
	r->last_reply = xstrdup("250 2.0.0 Ok: queued as 4Xy % \"-\"");
	r->remote = xstrdup("mx1.example.com[192.0.2.1]");
	spool_state_record(s, env, 0);
	r = &env->rcpts[1];
	r->state = RCPT_FAILED;
	r->last_code = 550;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "550 5.1.1 ", 10);
	r->last_reply = xstrdup(big);
	r->remote = NULL;
	spool_state_record(s, env, 1);
	spool_state_hold(s, env->id, true);
	spool_state_hold(s, env->id, false);
	spool_state_hold(s, env->id, true);
	spool_state_hold(s, "nonsense/../x", true);
	/* lines from elsewhere or torn by a crash must not hurt */
	append_file(dir, "state", env->id, "R 7 x@y delivered 250 - -\n");
	append_file(dir, "state", env->id, "R 2 wrong@addr failed 550 - -\n");
	append_file(dir, "state", env->id, "garbage line\n");
	append_file(dir, "state", env->id, "R 2 carol+tag@[192.0.2.7] failed 5");
	/* an orphan state log (remove interrupted) is cleared */
	write_file(dir, "state", "0123456789ABCDEF0123", "H 1\n", 4);
	spool_close(s);
	event_base_free(base);

	base = event_base_new();
	s = open_spool(dir, base, true);
	CHECK_INT(spool_recover(s, collect_env, &rec), 2);
	CHECK_INT(rec.n, 2);
	if (rec.n == 2) {
		struct envelope *got = rec.envs[0];

		CHECK_STR(got->id, env->id);
		CHECK(got->held);
		CHECK_INT(got->rcpts[0].state, RCPT_DELIVERED);
		CHECK_INT(got->rcpts[0].last_code, 250);
		CHECK_STR(got->rcpts[0].last_reply, "250 2.0.0 Ok: queued as 4Xy % \"-\"");
		CHECK_STR(got->rcpts[0].remote, "mx1.example.com[192.0.2.1]");
		CHECK_INT(got->rcpts[1].state, RCPT_FAILED);
		CHECK_INT(got->rcpts[1].last_code, 550);
		CHECK(got->rcpts[1].remote == NULL);
		CHECK(got->rcpts[1].last_reply != NULL &&
		      strlen(got->rcpts[1].last_reply) == 1024 &&
		      strncmp(got->rcpts[1].last_reply, "550 5.1.1 xx", 12) == 0);
		CHECK_INT(got->rcpts[2].state, RCPT_PENDING);
		CHECK_INT(got->rcpts[2].last_code, 451);
		CHECK_STR(got->rcpts[2].last_reply, "451 4.3.0 try later");
		CHECK(!rec.envs[1]->held);
		CHECK_INT(rec.envs[1]->rcpts[0].state, RCPT_PENDING);
	}
	CHECK(!file_exists(dir, "state", "0123456789ABCDEF0123"));
	CHECK(file_exists(dir, "state", env->id));
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	envelope_free(env);
	envelope_free(other);
	free(dir);
}

TEST(spool_remove_deletes_message_and_state)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct recovered rec = { 0 };
	struct envelope *env = commit_one(s, base, 3);
	uint64_t len;
	int fd;

	spool_state_hold(s, env->id, true);
	CHECK(file_exists(dir, "state", env->id));
	CHECK_INT(spool_remove(s, env->id), 0);
	CHECK(!file_exists(dir, "queue", env->id));
	CHECK(!file_exists(dir, "state", env->id));
	CHECK_INT(spool_remove(s, env->id), -1);
	CHECK_INT(errno, ENOENT);
	CHECK_INT(spool_open_message(s, env->id, &fd, &len), -1);
	CHECK_INT(errno, ENOENT);
	CHECK_INT(spool_remove(s, "../queue"), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(spool_recover(s, collect_env, &rec), 0);
	CHECK_INT(rec.n, 0);
	spool_close(s);
	event_base_free(base);
	envelope_free(env);
	free(dir);
}

TEST(spool_ids_unique_and_sorted)
{
	enum { N = 10000 };
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct spool *s2 = NULL;
	char prev[QUEUE_ID_LEN + 1] = "", id[QUEUE_ID_LEN + 1], other[QUEUE_ID_LEN + 1];
	char err[128];

	for (int i = 0; i < N; i++) {
		spool_new_id(s, id);
		CHECK_INT(strlen(id), QUEUE_ID_LEN);
		CHECK(strspn(id, "0123456789ABCDEF") == QUEUE_ID_LEN);
		CHECK(strcmp(prev, id) < 0);
		memcpy(prev, id, sizeof(id));
	}
	/* a second instance on the same directory does not collide */
	s2 = spool_open(dir, base, true, err, sizeof(err));
	CHECK(s2 != NULL);
	spool_new_id(s2, other);
	spool_new_id(s, id);
	CHECK(strcmp(other, id) != 0);
	spool_close(s2);
	spool_close(s);
	event_base_free(base);
	free(dir);
}

TEST(spool_write_message_is_durable_and_recovered)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, false);
	struct recovered rec = { 0 };
	struct envelope *env;
	static const char bounce[] = "From: MAILER-DAEMON\r\nSubject: failure\r\n\r\nsorry\r\n";
	char id[QUEUE_ID_LEN + 1];

	spool_new_id(s, id);
	env = envelope_new();
	memcpy(env->id, id, sizeof(id));
	env->arrival = time(NULL);
	env->sender = xstrdup("");
	env->is_bounce = true;
	envelope_add_rcpt(env, "sender@example.org");
	CHECK_INT(spool_write_message(s, env, bounce, sizeof(bounce) - 1), 0);
	CHECK(file_exists(dir, "queue", id));
	CHECK_INT(count_files(dir, "incoming"), 0);
	/* the same id again: refused, the existing message untouched */
	CHECK_INT(spool_write_message(s, env, "x", 1), -1);
	check_message_bytes(s, id, bounce, sizeof(bounce) - 1);
	spool_close(s);
	event_base_free(base);

	base = event_base_new();
	s = open_spool(dir, base, false);
	CHECK_INT(spool_recover(s, collect_env, &rec), 1);
	CHECK_INT(rec.n, 1);
	if (rec.n == 1) {
		check_env_equal(rec.envs[0], env);
		CHECK_INT(rec.envs[0]->size, sizeof(bounce) - 1);
		CHECK(rec.envs[0]->is_bounce);
		CHECK_STR(rec.envs[0]->sender, "");
	}
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	envelope_free(env);
	free(dir);
}

TEST(spool_commit_failure_reports_error_and_leaves_nothing)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct commit_ctx c = { 0 };
	struct spool_stats st;
	char id[QUEUE_ID_LEN + 1];
	struct envelope *env;
	char *huge = xmalloc(9 * 1024 * 1024);

	memset(huge, 'a', 9 * 1024 * 1024 - 1);
	huge[9 * 1024 * 1024 - 1] = '\0';
	spool_new_id(s, id);
	env = make_env(id, 0);
	envelope_add_rcpt(env, huge);
	spool_commit(s, write_message(s, id, "body\r\n", 6), env, commit_done, &c);
	CHECK_INT(c.done, 0);          /* never called from inside spool_commit */
	run_until(base, &c, 1);
	CHECK_INT(c.done, 1);
	CHECK_INT(c.failed, 1);
	CHECK_INT(c.last_error, EFBIG);
	CHECK(!file_exists(dir, "incoming", id));
	CHECK(!file_exists(dir, "queue", id));
	spool_get_stats(s, &st);
	CHECK_INT(st.failures, 1);
	envelope_free(env);

	/* envelopes recovery would reject are refused, not acknowledged */
	spool_new_id(s, id);
	env = envelope_new();
	memcpy(env->id, id, sizeof(id));
	env->sender = xstrdup("a@b");
	c.done = 0;
	spool_commit(s, write_message(s, id, "x", 1), env, commit_done, &c);
	run_until(base, &c, 1);
	CHECK_INT(c.done, 1);
	CHECK_INT(c.last_error, EINVAL);
	envelope_add_rcpt(env, "");
	CHECK_INT(spool_write_message(s, env, "x", 1), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(count_files(dir, "incoming"), 0);
	CHECK_INT(count_files(dir, "queue"), 0);
	spool_close(s);
	event_base_free(base);
	envelope_free(env);
	free(huge);
	free(dir);
}

/* Callbacks of commits still in flight at close are delivered by spool_close. */
TEST(spool_close_finishes_pending_commits)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, false);
	struct commit_ctx c = { 0 };
	struct envelope *env[20];
	char id[QUEUE_ID_LEN + 1];

	for (size_t i = 0; i < 20; i++) {
		spool_new_id(s, id);
		env[i] = make_env(id, i);
		spool_commit(s, write_message(s, id, "m\r\n", 3), env[i], commit_done, &c);
	}
	spool_close(s);
	CHECK_INT(c.done, 20);
	CHECK_INT(c.failed, 0);
	CHECK_INT(count_files(dir, "queue"), 20);
	event_base_free(base);
	for (size_t i = 0; i < 20; i++)
		envelope_free(env[i]);
	free(dir);
}

TEST(envelope_rcpts_grow_and_free)
{
	struct envelope *env = envelope_new();

	CHECK(env->sender == NULL && env->nrcpts == 0 && env->rcpts == NULL && !env->held);
	for (int i = 0; i < 100; i++) {
		char addr[32];
		struct envelope_rcpt *r;

		snprintf(addr, sizeof(addr), "u%d@d%d.example", i, i % 7);
		r = envelope_add_rcpt(env, addr);
		CHECK(r == &env->rcpts[i]);
		CHECK_STR(r->addr, addr);
		CHECK(r->orcpt == NULL && r->last_reply == NULL && r->remote == NULL);
		CHECK_INT(r->state, RCPT_PENDING);
		CHECK_INT(r->notify, 0);
		if (i % 2)
			r->orcpt = xstrdup("rfc822;x@y");
	}
	CHECK_INT(env->nrcpts, 100);
	CHECK_STR(env->rcpts[0].addr, "u0@d0.example");
	CHECK_STR(env->rcpts[99].addr, "u99@d1.example");
	env->sender = xstrdup("a@b");
	env->envid = xstrdup("e");
	env->client_addr = xstrdup("192.0.2.1");
	env->client_helo = xstrdup("h");
	env->auth_user = xstrdup("u");
	env->rcpts[5].last_reply = xstrdup("250 ok");
	env->rcpts[5].remote = xstrdup("mx");
	envelope_free(env);
	envelope_free(NULL);
}

TEST(envelope_address_domain)
{
	CHECK_STR(address_domain("user@example.com"), "example.com");
	CHECK_STR(address_domain("\"a@b\"@example.org"), "example.org");
	CHECK_STR(address_domain("postmaster"), "");
	CHECK_STR(address_domain(""), "");
	CHECK_STR(address_domain("user@"), "");
	CHECK_STR(address_domain("用户@例子.广告"), "例子.广告");
}

/* Edits whose inserted bytes hold everything the record escaping must survive. */
static void add_tricky_edits(struct envelope *env)
{
	static const unsigned char hdr[] = "X-Postern-Status: spam\r\nX-Reason: =?UTF-8?B?w6k=?= \xc3\xa9\xff\x80 %41 -\r\n";
	static const unsigned char nul[] = { 'a', 0, 'b', '\n', ' ' };

	CHECK_INT(envelope_add_edit(env, 200, 0, "-", 1), 0);
	CHECK_INT(envelope_add_edit(env, 0, 0, hdr, sizeof(hdr) - 1), 0);
	CHECK_INT(envelope_add_edit(env, 50, 10, nul, sizeof(nul)), 0);
	CHECK_INT(envelope_add_edit(env, 290, 10, NULL, 0), 0);
	CHECK_INT(env->nedits, 4);
}

static void check_edits_equal(const struct envelope *got, const struct envelope *want)
{
	CHECK_INT(got->nedits, want->nedits);
	for (size_t k = 0; k < got->nedits && k < want->nedits; k++) {
		const struct envelope_edit *g = &got->edits[k], *w = &want->edits[k];

		CHECK_INT(g->offset, w->offset);
		CHECK_INT(g->remove, w->remove);
		CHECK_INT(g->insert_len, w->insert_len);
		if (g->insert_len == w->insert_len && w->insert_len > 0)
			CHECK(memcmp(g->insert, w->insert, w->insert_len) == 0);
		CHECK((g->insert == NULL) == (g->insert_len == 0));
	}
}

TEST(spool_edits_roundtrip)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct commit_ctx c = { 0 };
	struct recovered rec = { 0 };
	struct envelope *env[2];
	char id[QUEUE_ID_LEN + 1];
	char *body = make_body(1, 300);

	spool_new_id(s, id);
	env[0] = make_env(id, 1);
	add_tricky_edits(env[0]);
	spool_commit(s, write_message(s, id, body, 300), env[0], commit_done, &c);
	run_until(base, &c, 1);
	CHECK_INT(c.failed, 0);
	spool_new_id(s, id);
	env[1] = make_env(id, 2);
	add_tricky_edits(env[1]);
	CHECK_INT(spool_write_message(s, env[1], body, 300), 0);
	spool_close(s);
	event_base_free(base);

	base = event_base_new();
	s = open_spool(dir, base, true);
	CHECK_INT(spool_recover(s, collect_env, &rec), 2);
	for (size_t i = 0; i < 2 && i < rec.n; i++) {
		check_env_equal(rec.envs[i], env[i]);
		check_edits_equal(rec.envs[i], env[i]);
		check_message_bytes(s, rec.envs[i]->id, body, 300);
	}
	CHECK_INT(count_files(dir, "corrupt"), 0);
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	envelope_free(env[0]);
	envelope_free(env[1]);
	free(body);
	free(dir);
}

/* Edit records are validated like every other record: a bad one sends the file to corrupt/. */
TEST(spool_bad_edit_records_are_corrupt)
{
	static const char *const bad[] = {
		"\nD 10 0 abc\nD 10 0 def\n",          /* same offset twice */
		"\nD 10 5 abc\nD 12 0 def\n",          /* inside a removed range */
		"\nD 20 0 abc\nD 10 0 def\n",          /* not increasing */
		"\nD 301 0 abc\n",                     /* beyond the message */
		"\nD 290 11 -\n",                      /* removal beyond the message */
		"\nD 10 0 -\n",                        /* changes nothing */
		"\nD 10 0 a%G0\n",                     /* bad escape */
		"\nD 10 0 \xc3\xa9\n",                 /* raw byte that must be escaped */
		"\nD 10 0 \n",                         /* empty field */
		"\nD 10 0 a b\n",                      /* too many fields */
		"\nD 10 abc\n",                        /* too few */
		"\nD 10 0 abc\nP x@y 0 -\n",           /* a recipient after the edits */
	};
	enum { N = sizeof(bad) / sizeof(bad[0]) };
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct envelope *env[N + 1];
	struct recovered rec = { 0 };
	char *from;

	for (size_t i = 0; i <= N; i++) {
		char id[QUEUE_ID_LEN + 1];
		struct commit_ctx c = { 0 };
		char *body = make_body(i, 300);

		spool_new_id(s, id);
		env[i] = make_env(id, 0);
		CHECK_INT(envelope_add_edit(env[i], 100, 0, "Q", 1), 0);
		spool_commit(s, write_message(s, id, body, 300), env[i], commit_done, &c);
		run_until(base, &c, 1);
		CHECK_INT(c.failed, 0);
		free(body);
	}
	spool_close(s);
	event_base_free(base);
	for (size_t i = 0; i < N; i++) {
		from = xasprintf("\nD 100 0 Q\n");
		rewrite_envelope(dir, env[i]->id, from, bad[i]);
		free(from);
	}

	base = event_base_new();
	s = open_spool(dir, base, true);
	CHECK_INT(spool_recover(s, collect_env, &rec), 1);
	if (rec.n == 1)
		check_edits_equal(rec.envs[0], env[N]);
	CHECK_INT(count_files(dir, "corrupt"), N);
	recovered_free(&rec);
	spool_close(s);
	event_base_free(base);
	for (size_t i = 0; i <= N; i++)
		envelope_free(env[i]);
	free(dir);
}

TEST(spool_refuses_edits_beyond_the_message)
{
	struct event_base *base = event_base_new();
	char *dir = spool_dir();
	struct spool *s = open_spool(dir, base, true);
	struct commit_ctx c = { 0 };
	char id[QUEUE_ID_LEN + 1];
	struct envelope *env;

	spool_new_id(s, id);
	env = make_env(id, 0);
	CHECK_INT(envelope_add_edit(env, 4, 3, "x", 1), 0);
	spool_commit(s, write_message(s, id, "body\r\n", 6), env, commit_done, &c);
	run_until(base, &c, 1);
	CHECK_INT(c.done, 1);
	CHECK_INT(c.last_error, EINVAL);
	CHECK_INT(count_files(dir, "queue"), 0);
	spool_close(s);
	event_base_free(base);
	envelope_free(env);
	free(dir);
}

TEST(envelope_edits_stay_sorted_and_disjoint)
{
	struct envelope *env = envelope_new();

	CHECK_INT(envelope_add_edit(env, 50, 10, "a", 1), 0);
	CHECK_INT(envelope_add_edit(env, 10, 0, "b", 1), 0);
	CHECK_INT(envelope_add_edit(env, 60, 0, "c", 1), 0);     /* right after a removal */
	CHECK_INT(envelope_add_edit(env, 40, 10, NULL, 0), 0);   /* ends where the next starts */
	CHECK_INT(envelope_add_edit(env, 5, 0, NULL, 0), 0);     /* a no-op is not stored */
	CHECK_INT(env->nedits, 4);
	CHECK_INT(env->edits[0].offset, 10);
	CHECK_INT(env->edits[1].offset, 40);
	CHECK_INT(env->edits[2].offset, 50);
	CHECK_INT(env->edits[3].offset, 60);
	CHECK_INT(envelope_add_edit(env, 10, 0, "x", 1), -1);    /* same offset */
	CHECK_INT(envelope_add_edit(env, 55, 0, "x", 1), -1);    /* inside a removal */
	CHECK_INT(envelope_add_edit(env, 35, 6, "x", 1), -1);    /* runs into the next */
	CHECK_INT(envelope_add_edit(env, 0, 11, "x", 1), -1);    /* covers an insertion point */
	CHECK_INT(envelope_add_edit(env, UINT64_MAX, 1, "x", 1), -1);
	CHECK_INT(envelope_add_edit(env, 100, 0, "x", ENVELOPE_EDIT_INSERT_MAX + 1), -1);
	CHECK(!envelope_edit_fits(env, 45, 0, 1));
	CHECK(envelope_edit_fits(env, 70, 0, 1));
	for (uint64_t k = 0; env->nedits < ENVELOPE_EDITS_MAX; k++)
		CHECK_INT(envelope_add_edit(env, 1000 + k, 0, "y", 1), 0);
	CHECK_INT(envelope_add_edit(env, 5000, 0, "z", 1), -1);
	CHECK_INT(env->nedits, ENVELOPE_EDITS_MAX);
	envelope_free(env);
}
