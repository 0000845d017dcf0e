/*
 * The durable spool.
 *
 * A message is written to incoming/<id> while DATA arrives (through a 64 KiB
 * buffer, so a message costs a handful of write() calls, not one per line).
 * spool_commit appends the envelope and the trailer and hands the open file
 * to the one committer thread. The committer takes every commit pending at
 * that moment as one batch and makes them durable together: one syncfs() on
 * the spool file system (or, without use_syncfs, one fdatasync per file),
 * then renameat incoming/<id> -> queue/<id> for each, then a single fsync of
 * the queue directory. Commits that arrive while a batch is being synced
 * form the next batch: that is the group commit, and what lets thousands of
 * messages per second share a few fsyncs. The finished batch goes back to the
 * event loop through an eventfd; the callbacks run there, in commit order.
 * The loop thread never waits for the disk.
 *
 * File format (queue/<id>):
 *
 *   message bytes                      from offset 0, exactly as received
 *   envelope records                   text, one record per line
 *   trailer                            33 bytes
 *
 * Envelope records are "KEY SP field [SP field...] LF", in this fixed order:
 *   V 1            format version
 *   I id           queue id; must equal the file name
 *   T arrival      seconds since the epoch (decimal, may be negative)
 *   S sender       reverse-path; an empty field is the null sender <>
 *   R ret          enum dsn_ret (decimal)
 *   E envid        DSN ENVID
 *   B body         enum body_type (decimal)
 *   U 0|1          SMTPUTF8
 *   X bits         1 generated bounce, 2 held from the start, 4 junk (store threshold)
 *   C client_addr
 *   H helo
 *   A auth_user
 *   Z size         message bytes; must equal the envelope offset
 *   P addr notify orcpt     one per recipient, in order, at least one
 *   D offset remove insert  zero or more edits (see queue/message_view.h),
 *                           by increasing offset, never overlapping, within
 *                           the message; insert is the inserted bytes, any
 *                           bytes, escaped like a field but with every byte
 *                           >= 0x80 escaped too and %00 allowed; "-" is none
 * String fields are escaped: every byte < 0x21, 0x7f and '%' is written as
 * %XX (upper-case hex), so fields never contain spaces or line ends. A field
 * that is exactly "-" stands for NULL; the string "-" itself is written
 * "%2D". An empty field (nothing between the separators) is the empty string.
 *
 * The trailer is exactly SPOOL_TRAILER_LEN (33) bytes:
 *   "PSTRN1 " <16 lower-case hex digits: envelope offset> " "
 *   <8 lower-case hex digits: zlib crc32 of the envelope records> "\n"
 * It is written last, so a file without a valid trailer was never
 * acknowledged. Recovery checks everything (trailer, offset, crc, every
 * record, id against file name, at least one recipient) and moves a file
 * that fails into corrupt/ with a log line; mail is never silently deleted.
 *
 * Delivery progress lives in state/<id>, an append-only log (one write()
 * per line, O_APPEND, no fsync: losing a line means delivering again, which
 * is allowed; losing mail is not). Lines, later lines overriding earlier:
 *   R index addr state code remote reply     state: pending|delivered|failed
 *   H 0|1                                    operator hold
 * with fields escaped as above. A line whose index or address does not match
 * the envelope is ignored with a warning.
 */
#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#define LOG_MODULE "spool"
#include "core/alloc.h"
#include "core/io.h"
#include "core/log.h"
#include "core/strbuf.h"

#define SPOOL_BUF_SIZE (64 * 1024)
#define SPOOL_TRAILER_LEN 33
#define SPOOL_TRAILER_MAGIC "PSTRN1 "
/* Far above any envelope the SMTP limits allow; bounds what recovery reads. */
#define SPOOL_ENVELOPE_MAX (8 * 1024 * 1024)
/* State log lines; replies are cut so a line always fits. */
#define SPOOL_STATE_LINE_MAX 16384
#define SPOOL_STATE_REPLY_MAX 1024
#define SPOOL_STATE_READ_BUF (64 * 1024)

/* One commit on its way through the committer and back to the loop. */
struct spool_pending {
	struct spool_pending *next;
	spool_commit_cb cb;
	void *arg;
	int fd;
	int error;
	char id[QUEUE_ID_LEN + 1];
};

struct spool_list {
	struct spool_pending *head;
	struct spool_pending *tail;
};

struct spool {
	char *dir;
	int dir_fd;
	int incoming_fd;
	int queue_fd;
	int state_fd;
	bool use_syncfs;
	struct event_base *base;

	pthread_t committer;
	pthread_mutex_t lock;          /* guards everything below */
	pthread_cond_t wake;           /* pending became non-empty, or stopping */
	struct spool_list pending;     /* waiting for the next batch */
	struct spool_list finished;    /* synced, waiting for the loop thread */
	bool stopping;
	struct spool_stats stats;
	uint64_t last_tick;            /* id clock: microseconds, strictly increasing */
	uint32_t instance;             /* 24 random bits: two spools never share ids */

	int efd;                       /* tells the loop that finished is non-empty */
	struct event *done_ev;
};

struct spool_writer {
	struct spool *spool;
	int fd;
	int error;                     /* first write error; sticks */
	uint64_t size;                 /* bytes accepted so far */
	size_t buffered;
	char *buf;                     /* SPOOL_BUF_SIZE bytes */
	char id[QUEUE_ID_LEN + 1];
};

enum spool_load_result { LOAD_OK, LOAD_CORRUPT, LOAD_IOERR };

static const char *const rcpt_state_names[] = { "pending", "delivered", "failed" };

/* ---- small helpers ---------------------------------------------------- */

static void spool_list_push(struct spool_list *l, struct spool_pending *p)
{
	p->next = NULL;
	if (l->tail)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
}

/* Ids reach us from the admin API too: only a well-formed id may become a path. */
static bool spool_id_valid(const char *id)
{
	size_t i;

	for (i = 0; i < QUEUE_ID_LEN; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F')))
			return false;
	}
	return id[i] == '\0';
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A short read means the file changed under us: report it as EIO. */
static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = io_pread_full(fd, buf, len, (uint64_t)off);

	if (n < 0)
		return -1;
	if ((size_t)n < len) {
		errno = EIO;
		return -1;
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* ---- field encoding --------------------------------------------------- */

static bool field_byte_escaped(unsigned char c)
{
	return c < 0x21 || c == 0x7f || c == '%';
}

/* Append one escaped field (see the top comment); runs of plain bytes are copied at once. */
static int field_append(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0;
	char esc[3] = { '%' };

	if (s == NULL)
		return strbuf_append(sb, "-", 1);
	if (strcmp(s, "-") == 0)
		return strbuf_append(sb, "%2D", 3);
	for (;; p++) {
		if (*p != '\0' && !field_byte_escaped(*p)) {
			run++;
			continue;
		}
		if (run && strbuf_append(sb, p - run, run) < 0)
			return -1;
		run = 0;
		if (*p == '\0')
			return 0;
		esc[1] = hex[*p >> 4];
		esc[2] = hex[*p & 0xf];
		if (strbuf_append(sb, esc, sizeof(esc)) < 0)
			return -1;
	}
}

/* Decode a field; *out is NULL for "-". Rejects bad escapes, %00 and raw bytes that need escaping. */
static int field_decode(const char *tok, size_t len, char **out)
{
	char *s, *q;
	int hi, lo;

	*out = NULL;
	if (len == 1 && tok[0] == '-')
		return 0;
	s = q = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tok[i];

		if (c == '%') {
			if (i + 2 >= len)
				goto bad;
			hi = hexval(tok[i + 1]);
			lo = hexval(tok[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			*q++ = (char)(hi << 4 | lo);
			i += 2;
		} else if (field_byte_escaped(c)) {
			goto bad;
		} else {
			*q++ = (char)c;
		}
	}
	*q = '\0';
	*out = s;
	return 0;
bad:
	free(s);
	return -1;
}

static int parse_u64(const char *tok, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20 || (len > 1 && tok[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (tok[i] < '0' || tok[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(tok[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(tok[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_time(const char *tok, size_t len, time_t *out)
{
	uint64_t v;
	bool neg = len > 0 && tok[0] == '-';

	if (parse_u64(tok + neg, len - neg, INT64_MAX, &v) < 0)
		return -1;
	*out = neg ? -(time_t)v : (time_t)v;
	return 0;
}

/* ---- tokens ----------------------------------------------------------- */

struct token {
	const char *p;
	size_t len;
};

/*
 * Split "K f1 f2..." into its key and fields. Returns the number of fields,
 * or -1 when the line is not "one key byte, one space, fields" or has more
 * than max fields.
 */
static int line_split(const char *line, size_t len, char *key, struct token *f, int max)
{
	const char *p, *end = line + len, *sp;
	int n = 0;

	if (len < 2 || line[1] != ' ')
		return -1;
	*key = line[0];
	for (p = line + 2;; p = sp + 1) {
		if (n == max)
			return -1;
		sp = memchr(p, ' ', (size_t)(end - p));
		f[n].p = p;
		f[n].len = (size_t)((sp ? sp : end) - p);
		n++;
		if (sp == NULL)
			return n;
	}
}

/* ---- envelope records ------------------------------------------------- */

/* An edit's inserted bytes: binary-safe, so any byte may be escaped, even NUL. */
static int edit_bytes_append(struct strbuf *sb, const unsigned char *p, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[3] = { '%' };
	size_t run = 0;
	int r = 0;

	if (len == 0 || (len == 1 && p[0] == '-'))
		return strbuf_append(sb, len ? "%2D" : "-", len ? 3 : 1);
	for (size_t i = 0; i < len; i++) {
		if (!field_byte_escaped(p[i]) && p[i] < 0x80) {
			run++;
			continue;
		}
		if (run)
			r |= strbuf_append(sb, p + i - run, run);
		run = 0;
		esc[1] = hex[p[i] >> 4];
		esc[2] = hex[p[i] & 0xf];
		r |= strbuf_append(sb, esc, sizeof(esc));
	}
	if (run)
		r |= strbuf_append(sb, p + len - run, run);
	return r ? -1 : 0;
}

/* Decode an edit's insert field into a fresh buffer (NULL for "-"); -1 if malformed. */
static int edit_bytes_decode(const char *tok, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *s, *q;
	int hi, lo;

	*out = NULL;
	*outlen = 0;
	if (len == 1 && tok[0] == '-')
		return 0;
	if (len == 0)
		return -1;
	s = q = xmalloc(len);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tok[i];

		if (c == '%') {
			if (i + 2 >= len || (hi = hexval(tok[i + 1])) < 0 || (lo = hexval(tok[i + 2])) < 0)
				goto bad;
			*q++ = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (field_byte_escaped(c) || c >= 0x80) {
			goto bad;
		} else {
			*q++ = c;
		}
	}
	*out = s;
	*outlen = (size_t)(q - s);
	return 0;
bad:
	free(s);
	return -1;
}

static int envelope_format(struct strbuf *sb, const struct envelope *env, uint64_t size)
{
	int r = 0;

	r |= strbuf_appendf(sb, "V 1\nI %s\nT %lld\nS ", env->id, (long long)env->arrival);
	r |= field_append(sb, env->sender);
	r |= strbuf_appendf(sb, "\nR %d\nE ", (int)env->ret);
	r |= field_append(sb, env->envid);
	/*
	 * X: bit 0 a bounce of ours, bit 1 held from the start (quarantine,
	 * durable with the commit), bit 2 junk for local delivery.
	 */
	r |= strbuf_appendf(sb, "\nB %d\nU %d\nX %d\nC ", (int)env->body, env->smtputf8 ? 1 : 0,
			    (env->is_bounce ? 1 : 0) | (env->held ? 2 : 0) | (env->junk ? 4 : 0));
	r |= field_append(sb, env->client_addr);
	r |= strbuf_appends(sb, "\nH ");
	r |= field_append(sb, env->client_helo);
	r |= strbuf_appends(sb, "\nA ");
	r |= field_append(sb, env->auth_user);
	r |= strbuf_appendf(sb, "\nZ %" PRIu64 "\n", size);
	for (size_t i = 0; i < env->nrcpts; i++) {
		r |= strbuf_appends(sb, "P ");
		r |= field_append(sb, env->rcpts[i].addr);
		r |= strbuf_appendf(sb, " %u ", env->rcpts[i].notify);
		r |= field_append(sb, env->rcpts[i].orcpt);
		r |= strbuf_appends(sb, "\n");
	}
	for (size_t i = 0; i < env->nedits; i++) {
		const struct envelope_edit *e = &env->edits[i];

		r |= strbuf_appendf(sb, "D %" PRIu64 " %" PRIu64 " ", e->offset, e->remove);
		r |= edit_bytes_append(sb, e->insert, e->insert_len);
		r |= strbuf_appends(sb, "\n");
	}
	return r ? -1 : 0;
}

/*
 * Refuse (EINVAL) an envelope that recovery would reject: writing it would
 * acknowledge mail that could never be delivered. A caller bug, but failing
 * the commit (a 4xx) is kinder than taking the gateway down.
 */
static int envelope_check_writable(const struct envelope *env, const char *id, uint64_t size)
{
	const struct envelope_edit *last = env->nedits ? &env->edits[env->nedits - 1] : NULL;
	const char *why = NULL;

	if (strcmp(env->id, id) != 0)
		why = "envelope id does not match the spool file";
	else if (env->sender == NULL)
		why = "no sender (\"\" is the null sender)";
	else if (env->nrcpts == 0)
		why = "no recipients";
	for (size_t i = 0; why == NULL && i < env->nrcpts; i++) {
		if (env->rcpts[i].addr == NULL || env->rcpts[i].addr[0] == '\0')
			why = "a recipient without address";
	}
	/* edits are sorted and disjoint (envelope_add_edit), so the last one reaches furthest */
	if (why == NULL && last != NULL && (last->offset > size || last->remove > size - last->offset))
		why = "an edit beyond the end of the message";
	if (why == NULL)
		return 0;
	log_error("refusing to spool %s: %s", id, why);
	return EINVAL;
}

/* One header record: the single field of key `want`. */
static int record_take(const char *line, size_t len, char want, struct token *field)
{
	char key;

	if (line_split(line, len, &key, field, 1) != 1 || key != want)
		return -1;
	return 0;
}

static int record_u64(const char *line, size_t len, char want, uint64_t max, uint64_t *out)
{
	struct token f;

	if (record_take(line, len, want, &f) < 0)
		return -1;
	return parse_u64(f.p, f.len, max, out);
}

static int record_string(const char *line, size_t len, char want, bool nullable, char **out)
{
	struct token f;

	if (record_take(line, len, want, &f) < 0 || field_decode(f.p, f.len, out) < 0)
		return -1;
	if (*out == NULL && !nullable)
		return -1;
	return 0;
}

/* Parse header record number `index` (in the order of the top comment). */
static int envelope_parse_header(struct envelope *env, int index, const char *line, size_t len)
{
	static const char keys[] = "VITSREBUXCHAZ";
	char *id = NULL;
	struct token f;
	uint64_t v;
	int r;

	switch (keys[index]) {
	case 'V':
		return record_u64(line, len, 'V', 1, &v) < 0 || v != 1 ? -1 : 0;
	case 'I':
		if (record_string(line, len, 'I', false, &id) < 0)
			return -1;
		r = strlen(id) == QUEUE_ID_LEN && strcmp(id, env->id) == 0 ? 0 : -1;
		free(id);
		return r;
	case 'T':
		if (record_take(line, len, 'T', &f) < 0)
			return -1;
		return parse_time(f.p, f.len, &env->arrival);
	case 'S':
		return record_string(line, len, 'S', false, &env->sender);
	case 'R':
		if (record_u64(line, len, 'R', DSN_RET_HDRS, &v) < 0)
			return -1;
		env->ret = (enum dsn_ret)v;
		return 0;
	case 'E':
		return record_string(line, len, 'E', true, &env->envid);
	case 'B':
		if (record_u64(line, len, 'B', BODY_BINARYMIME, &v) < 0)
			return -1;
		env->body = (enum body_type)v;
		return 0;
	case 'U':
		if (record_u64(line, len, 'U', 1, &v) < 0)
			return -1;
		env->smtputf8 = v;
		return 0;
	case 'X':
		if (record_u64(line, len, 'X', 7, &v) < 0)
			return -1;
		env->is_bounce = (v & 1) != 0;
		env->held = (v & 2) != 0;
		env->junk = (v & 4) != 0;
		return 0;
	case 'C':
		return record_string(line, len, 'C', true, &env->client_addr);
	case 'H':
		return record_string(line, len, 'H', true, &env->client_helo);
	case 'A':
		return record_string(line, len, 'A', true, &env->auth_user);
	case 'Z':
		return record_u64(line, len, 'Z', UINT64_MAX, &env->size);
	default:
		panic("envelope header record %d", index);
	}
}

static int envelope_parse_rcpt(struct envelope *env, const char *line, size_t len)
{
	struct envelope_rcpt *r;
	struct token f[3];
	char key, *addr, *orcpt;
	uint64_t notify;

	if (line_split(line, len, &key, f, 3) != 3 || key != 'P')
		return -1;
	if (parse_u64(f[1].p, f[1].len, 15, &notify) < 0)
		return -1;
	if (field_decode(f[0].p, f[0].len, &addr) < 0)
		return -1;
	if (addr == NULL || addr[0] == '\0' || field_decode(f[2].p, f[2].len, &orcpt) < 0) {
		free(addr);
		return -1;
	}
	r = envelope_add_rcpt(env, addr);
	free(addr);
	r->notify = (unsigned)notify;
	r->orcpt = orcpt;
	return 0;
}

/*
 * "D offset remove insert", after the recipients: increasing offsets (the
 * previous edit's offset is the lower bound), within the size record, and
 * accepted by envelope_add_edit, which refuses overlaps and no-op edits
 * are never written.
 */
static int envelope_parse_edit(struct envelope *env, const char *line, size_t len)
{
	struct token f[3];
	uint64_t offset, remove;
	unsigned char *insert;
	size_t insert_len;
	char key;
	int r;

	if (line_split(line, len, &key, f, 3) != 3 || key != 'D')
		return -1;
	if (parse_u64(f[0].p, f[0].len, env->size, &offset) < 0 ||
	    parse_u64(f[1].p, f[1].len, env->size - offset, &remove) < 0)
		return -1;
	if (env->nedits > 0 && offset <= env->edits[env->nedits - 1].offset)
		return -1;
	if ((remove == 0 && f[2].len == 1 && f[2].p[0] == '-') ||
	    edit_bytes_decode(f[2].p, f[2].len, &insert, &insert_len) < 0)
		return -1;
	r = envelope_add_edit(env, offset, remove, insert, insert_len);
	free(insert);
	return r;
}

/* One record after the header records: recipients first, then edits. */
static int envelope_parse_tail(struct envelope *env, const char *line, size_t len,
			       bool *in_edits, const char **why)
{
	if (len > 0 && line[0] == 'D')
		*in_edits = true;
	if (!*in_edits) {
		*why = "bad recipient record";
		return envelope_parse_rcpt(env, line, len);
	}
	*why = "bad edit record";
	return envelope_parse_edit(env, line, len);
}

/* text is the envelope region, NUL-terminated, id the file name. */
static struct envelope *envelope_parse(const char *text, size_t len, const char *id,
				       const char **why)
{
	struct envelope *env = envelope_new();
	const char *line = text, *end = text + len, *nl;
	bool in_edits = false;
	int index = 0;

	memcpy(env->id, id, QUEUE_ID_LEN + 1);
	if (len == 0 || text[len - 1] != '\n' || memchr(text, '\0', len) != NULL) {
		*why = "envelope is not text lines";
		goto bad;
	}
	for (; line < end; line = nl + 1, index++) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (index < 13) {
			if (envelope_parse_header(env, index, line, (size_t)(nl - line)) < 0) {
				*why = "bad envelope header record";
				goto bad;
			}
		} else if (envelope_parse_tail(env, line, (size_t)(nl - line), &in_edits, why) < 0) {
			goto bad;
		}
	}
	if (env->nrcpts == 0) {
		*why = index < 13 ? "envelope records missing" : "no recipients";
		goto bad;
	}
	return env;
bad:
	envelope_free(env);
	return NULL;
}

/* ---- trailer ---------------------------------------------------------- */

static void trailer_format(char out[SPOOL_TRAILER_LEN + 1], uint64_t offset, uint32_t crc)
{
	snprintf(out, SPOOL_TRAILER_LEN + 1, SPOOL_TRAILER_MAGIC "%016" PRIx64 " %08" PRIx32 "\n",
		 offset, crc);
}

static int hex_lower(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		int d = hexval(p[i]);

		if (d < 0 || (p[i] >= 'A' && p[i] <= 'F'))
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

static int trailer_parse(const char *t, uint64_t *offset, uint32_t *crc)
{
	const size_t magic = sizeof(SPOOL_TRAILER_MAGIC) - 1;
	uint64_t c;

	if (memcmp(t, SPOOL_TRAILER_MAGIC, magic) != 0 || t[magic + 16] != ' ' ||
	    t[SPOOL_TRAILER_LEN - 1] != '\n')
		return -1;
	if (hex_lower(t + magic, 16, offset) < 0 || hex_lower(t + magic + 17, 8, &c) < 0)
		return -1;
	*crc = (uint32_t)c;
	return 0;
}

/* Read and check the trailer of an open spool file: the message length. */
static enum spool_load_result trailer_read(int fd, uint64_t *file_size, uint64_t *offset,
					   uint32_t *crc, const char **why)
{
	char t[SPOOL_TRAILER_LEN];
	struct stat st;

	if (fstat(fd, &st) < 0)
		return LOAD_IOERR;
	if (!S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		return LOAD_CORRUPT;
	}
	if (st.st_size < SPOOL_TRAILER_LEN) {
		*why = "truncated (no trailer)";
		return LOAD_CORRUPT;
	}
	if (pread_all(fd, t, sizeof(t), st.st_size - SPOOL_TRAILER_LEN) < 0)
		return LOAD_IOERR;
	if (trailer_parse(t, offset, crc) < 0) {
		*why = "bad trailer";
		return LOAD_CORRUPT;
	}
	*file_size = (uint64_t)st.st_size;
	if (*offset > *file_size - SPOOL_TRAILER_LEN) {
		*why = "envelope offset beyond end of file";
		return LOAD_CORRUPT;
	}
	return LOAD_OK;
}

/* ---- writer ----------------------------------------------------------- */

struct spool_writer *spool_writer_new(struct spool *spool, const char *id)
{
	struct spool_writer *w;
	int fd;

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return NULL;
	}
	fd = openat(spool->incoming_fd, id, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	w = xcalloc(1, sizeof(*w));
	w->spool = spool;
	w->fd = fd;
	w->buf = xmalloc(SPOOL_BUF_SIZE);
	memcpy(w->id, id, QUEUE_ID_LEN + 1);
	return w;
}

static int spool_writer_flush(struct spool_writer *w)
{
	if (w->error) {
		errno = w->error;
		return -1;
	}
	if (w->buffered && write_all(w->fd, w->buf, w->buffered) < 0) {
		w->error = errno;
		return -1;
	}
	w->buffered = 0;
	return 0;
}

int spool_writer_write(struct spool_writer *w, const void *buf, size_t len)
{
	if (w->error) {
		errno = w->error;
		return -1;
	}
	if (len == 0)
		return 0;
	if (len > SPOOL_BUF_SIZE - w->buffered) {
		if (spool_writer_flush(w) < 0)
			return -1;
		if (len >= SPOOL_BUF_SIZE) {
			if (write_all(w->fd, buf, len) < 0) {
				w->error = errno;
				return -1;
			}
			w->size += len;
			return 0;
		}
	}
	memcpy(w->buf + w->buffered, buf, len);
	w->buffered += len;
	w->size += len;
	return 0;
}

uint64_t spool_writer_size(const struct spool_writer *w)
{
	return w->size;
}

int spool_writer_open_read(struct spool_writer *w)
{
	if (spool_writer_flush(w) < 0)
		return -1;
	return openat(w->spool->incoming_fd, w->id, O_RDONLY | O_CLOEXEC);
}

static void spool_writer_free(struct spool_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	free(w);
}

void spool_writer_abort(struct spool_writer *w)
{
	if (unlinkat(w->spool->incoming_fd, w->id, 0) < 0)
		log_warn("cannot remove incoming/%s: %s", w->id, strerror(errno));
	spool_writer_free(w);
}

/*
 * Append envelope and trailer and flush: the file is complete on return
 * (0) or the errno of what failed is returned.
 */
static int spool_writer_finish(struct spool_writer *w, const struct envelope *env)
{
	char trailer[SPOOL_TRAILER_LEN + 1];
	struct strbuf sb;
	uint64_t offset = w->size;
	uint32_t crc;
	int error = envelope_check_writable(env, w->id, offset);

	if (error)
		return error;
	strbuf_init(&sb, SPOOL_ENVELOPE_MAX);
	if (envelope_format(&sb, env, offset) < 0) {
		log_error("envelope of %s exceeds %d bytes", w->id, SPOOL_ENVELOPE_MAX);
		error = EFBIG;
		goto out;
	}
	crc = (uint32_t)crc32(0L, (const Bytef *)sb.data, (uInt)sb.len);
	trailer_format(trailer, offset, crc);
	if (spool_writer_write(w, sb.data, sb.len) < 0 ||
	    spool_writer_write(w, trailer, SPOOL_TRAILER_LEN) < 0 || spool_writer_flush(w) < 0)
		error = errno;
out:
	strbuf_free(&sb);
	return error;
}

/*
 * incoming/<id> -> queue/<id>, refusing (EEXIST) to replace a queued
 * message. File systems without RENAME_NOREPLACE get link + unlink, which
 * gives the same guarantee.
 */
static int spool_move_to_queue(struct spool *spool, const char *id)
{
	if (renameat2(spool->incoming_fd, id, spool->queue_fd, id, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	if (linkat(spool->incoming_fd, id, spool->queue_fd, id, 0) < 0)
		return -1;
	if (unlinkat(spool->incoming_fd, id, 0) < 0)
		log_warn("cannot remove incoming/%s after linking it: %s", id, strerror(errno));
	return 0;
}

/* ---- the committer ---------------------------------------------------- */

/* Wake the loop; EAGAIN means the counter is already set, which is as good. */
static void spool_notify_loop(struct spool *spool)
{
	uint64_t one = 1;

	while (write(spool->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Hand a list of finished commits (linked through next) to the loop thread. */
static void spool_finish_batch(struct spool *spool, struct spool_pending *batch, bool synced)
{
	struct spool_pending *p, *next;
	bool was_empty;

	pthread_mutex_lock(&spool->lock);
	was_empty = spool->finished.head == NULL;
	for (p = batch; p; p = next) {
		next = p->next;
		if (p->error)
			spool->stats.failures++;
		spool_list_push(&spool->finished, p);
	}
	if (synced)
		spool->stats.syncs++;
	if (was_empty)
		spool_notify_loop(spool);
	pthread_mutex_unlock(&spool->lock);
}

/* A failed commit leaves nothing behind: the client gets a 4xx and retries. */
static void commit_fail(struct spool *spool, struct spool_pending *p, int dir_fd, int error)
{
	p->error = error;
	if (unlinkat(dir_fd, p->id, 0) < 0 && errno != ENOENT)
		log_error("cannot remove %s/%s after failed commit: %s",
			  dir_fd == spool->queue_fd ? "queue" : "incoming", p->id, strerror(errno));
}

/*
 * Make one batch durable: data first (one syncfs, or fdatasync per file),
 * then the renames into queue/, then one fsync of queue/ for all of them.
 */
static void spool_sync_batch(struct spool *spool, struct spool_pending *batch)
{
	struct spool_pending *p;
	int error = 0;
	size_t renamed = 0;

	if (spool->use_syncfs && syncfs(spool->dir_fd) < 0) {
		error = errno;
		log_error("syncfs(%s) failed: %s", spool->dir, strerror(error));
	}
	for (p = batch; p; p = p->next) {
		if (!spool->use_syncfs && fdatasync(p->fd) < 0) {
			p->error = errno;
			log_error("fdatasync(incoming/%s) failed: %s", p->id, strerror(errno));
		} else if (error) {
			p->error = error;
		}
		close(p->fd);
		p->fd = -1;
		if (p->error == 0 && spool_move_to_queue(spool, p->id) < 0) {
			p->error = errno;
			log_error("rename incoming/%s to queue/ failed: %s", p->id, strerror(errno));
		}
		if (p->error)
			commit_fail(spool, p, spool->incoming_fd, p->error);
		else
			renamed++;
	}
	if (renamed && fsync(spool->queue_fd) < 0) {
		error = errno;
		log_error("fsync(%s/queue) failed: %s", spool->dir, strerror(error));
		for (p = batch; p; p = p->next) {
			if (p->error == 0)
				commit_fail(spool, p, spool->queue_fd, error);
		}
	}
}

static void *spool_committer(void *arg)
{
	struct spool *spool = arg;
	struct spool_pending *batch;

	pthread_mutex_lock(&spool->lock);
	for (;;) {
		while (spool->pending.head == NULL && !spool->stopping)
			pthread_cond_wait(&spool->wake, &spool->lock);
		if (spool->pending.head == NULL)
			break;
		batch = spool->pending.head;
		spool->pending.head = spool->pending.tail = NULL;
		pthread_mutex_unlock(&spool->lock);

		spool_sync_batch(spool, batch);
		spool_finish_batch(spool, batch, true);

		pthread_mutex_lock(&spool->lock);
	}
	pthread_mutex_unlock(&spool->lock);
	return NULL;
}

static void spool_run_callbacks(struct spool_pending *p)
{
	struct spool_pending *next;

	for (; p; p = next) {
		next = p->next;
		p->cb(p->arg, p->error);
		free(p);
	}
}

static void spool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *spool = arg;
	struct spool_pending *done;
	uint64_t count;

	while (read(spool->efd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&spool->lock);
	done = spool->finished.head;
	spool->finished.head = spool->finished.tail = NULL;
	pthread_mutex_unlock(&spool->lock);
	spool_run_callbacks(done);
}

void spool_commit(struct spool *spool, struct spool_writer *w, const struct envelope *env,
		  spool_commit_cb cb, void *arg)
{
	struct spool_pending *p = xcalloc(1, sizeof(*p));

	p->cb = cb;
	p->arg = arg;
	p->fd = -1;
	memcpy(p->id, w->id, QUEUE_ID_LEN + 1);
	p->error = spool_writer_finish(w, env);
	free(w->buf);
	w->buf = NULL;
	if (p->error) {
		log_error("cannot write incoming/%s: %s", w->id, strerror(p->error));
		spool_writer_abort(w);
		spool_finish_batch(spool, p, false);
		return;
	}
	p->fd = w->fd;
	w->fd = -1;
	spool_writer_free(w);

	pthread_mutex_lock(&spool->lock);
	spool->stats.commits++;
	spool_list_push(&spool->pending, p);
	pthread_cond_signal(&spool->wake);
	pthread_mutex_unlock(&spool->lock);
}

void spool_get_stats(struct spool *spool, struct spool_stats *st)
{
	pthread_mutex_lock(&spool->lock);
	*st = spool->stats;
	pthread_mutex_unlock(&spool->lock);
}

/* ---- open / close ----------------------------------------------------- */

static int spool_open_subdir(struct spool *spool, const char *name, char *err, size_t errlen)
{
	int fd;

	if (mkdirat(spool->dir_fd, name, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s/%s: %s", spool->dir, name, strerror(errno));
		return -1;
	}
	fd = openat(spool->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		snprintf(err, errlen, "open %s/%s: %s", spool->dir, name, strerror(errno));
	return fd;
}

static uint32_t spool_random_instance(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r = (uint32_t)getpid() * 2654435761u ^ (uint32_t)ts.tv_nsec;
	}
	return r & 0xffffff;
}

static void spool_close_fds(struct spool *spool)
{
	int *fds[] = { &spool->state_fd, &spool->queue_fd, &spool->incoming_fd, &spool->dir_fd,
		       &spool->efd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

struct spool *spool_open(const char *dir, struct event_base *base, bool use_syncfs,
			 char *err, size_t errlen)
{
	struct spool *spool = xcalloc(1, sizeof(*spool));
	int rc;

	spool->dir = xstrdup(dir);
	spool->base = base;
	spool->use_syncfs = use_syncfs;
	spool->dir_fd = spool->incoming_fd = spool->queue_fd = spool->state_fd = spool->efd = -1;
	spool->instance = spool_random_instance();
	pthread_mutex_init(&spool->lock, NULL);
	pthread_cond_init(&spool->wake, NULL);

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		goto err;
	}
	spool->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (spool->dir_fd < 0) {
		snprintf(err, errlen, "open %s: %s", dir, strerror(errno));
		goto err;
	}
	if ((spool->incoming_fd = spool_open_subdir(spool, "incoming", err, errlen)) < 0 ||
	    (spool->queue_fd = spool_open_subdir(spool, "queue", err, errlen)) < 0 ||
	    (spool->state_fd = spool_open_subdir(spool, "state", err, errlen)) < 0)
		goto err;
	/* A freshly created queue/ must itself survive a crash. */
	if (fsync(spool->dir_fd) < 0) {
		snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
		goto err;
	}
	spool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (spool->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto err;
	}
	spool->done_ev = event_new(base, spool->efd, EV_READ | EV_PERSIST, spool_done_cb, spool);
	if (spool->done_ev == NULL || event_add(spool->done_ev, NULL) < 0) {
		snprintf(err, errlen, "cannot watch the spool eventfd");
		goto err;
	}
	rc = pthread_create(&spool->committer, NULL, spool_committer, spool);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the committer thread: %s", strerror(rc));
		goto err;
	}
	return spool;
err:
	if (spool->done_ev)
		event_free(spool->done_ev);
	spool_close_fds(spool);
	pthread_cond_destroy(&spool->wake);
	pthread_mutex_destroy(&spool->lock);
	free(spool->dir);
	free(spool);
	return NULL;
}

void spool_close(struct spool *spool)
{
	if (spool == NULL)
		return;
	pthread_mutex_lock(&spool->lock);
	spool->stopping = true;
	pthread_cond_signal(&spool->wake);
	pthread_mutex_unlock(&spool->lock);
	pthread_join(spool->committer, NULL);
	/* The committer finished every pending commit; deliver their outcome now. */
	spool_run_callbacks(spool->finished.head);
	spool->finished.head = spool->finished.tail = NULL;
	event_free(spool->done_ev);
	spool_close_fds(spool);
	pthread_cond_destroy(&spool->wake);
	pthread_mutex_destroy(&spool->lock);
	free(spool->dir);
	free(spool);
}

/*
 * Microseconds since the epoch (14 hex digits last until the year 4253),
 * bumped by one when the clock has not advanced, then 6 hex digits that
 * tell spool instances apart. Ids of one spool are strictly increasing.
 */
void spool_new_id(struct spool *spool, char id[QUEUE_ID_LEN + 1])
{
	struct timespec ts;
	uint64_t tick;

	clock_gettime(CLOCK_REALTIME, &ts);
	tick = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	pthread_mutex_lock(&spool->lock);
	if (tick <= spool->last_tick)
		tick = spool->last_tick + 1;
	spool->last_tick = tick;
	pthread_mutex_unlock(&spool->lock);
	snprintf(id, QUEUE_ID_LEN + 1, "%014" PRIX64 "%06" PRIX32,
		 tick & UINT64_C(0xffffffffffffff), spool->instance);
}

/* ---- synchronous write (bounces) -------------------------------------- */

int spool_write_message(struct spool *spool, const struct envelope *env,
			const void *data, size_t len)
{
	struct spool_writer *w = spool_writer_new(spool, env->id);
	int error;

	if (w == NULL) {
		log_error("cannot create incoming/%s: %s", env->id, strerror(errno));
		return -1;
	}
	if (spool_writer_write(w, data, len) < 0)
		error = errno;
	else
		error = spool_writer_finish(w, env);
	if (error == 0 && fdatasync(w->fd) < 0)
		error = errno;
	if (error == 0 && spool_move_to_queue(spool, w->id) < 0)
		error = errno;
	if (error) {
		log_error("cannot spool %s: %s", w->id, strerror(error));
		spool_writer_abort(w);
		errno = error;
		return -1;
	}
	if (fsync(spool->queue_fd) < 0) {
		error = errno;
		log_error("fsync(%s/queue) failed: %s", spool->dir, strerror(error));
		unlinkat(spool->queue_fd, w->id, 0);
		spool_writer_free(w);
		errno = error;
		return -1;
	}
	spool_writer_free(w);
	return 0;
}

/* ---- reading ---------------------------------------------------------- */

int spool_open_message(struct spool *spool, const char *id, int *fd, uint64_t *len)
{
	enum spool_load_result r;
	const char *why = NULL;
	uint64_t size, offset;
	uint32_t crc;
	int f, saved;

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	f = openat(spool->queue_fd, id, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	r = trailer_read(f, &size, &offset, &crc, &why);
	if (r != LOAD_OK) {
		saved = r == LOAD_IOERR ? errno : EBADMSG;
		if (why)
			log_error("queue/%s: %s", id, why);
		close(f);
		errno = saved;
		return -1;
	}
	*fd = f;
	*len = offset;
	return 0;
}

int spool_remove(struct spool *spool, const char *id)
{
	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (unlinkat(spool->queue_fd, id, 0) < 0)
		return -1;
	if (unlinkat(spool->state_fd, id, 0) < 0 && errno != ENOENT)
		log_warn("cannot remove state/%s: %s", id, strerror(errno));
	return 0;
}

/* ---- state log -------------------------------------------------------- */

static void state_append(struct spool *spool, const char *id, const char *line, size_t len)
{
	int fd = openat(spool->state_fd, id, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0) {
		log_warn("cannot open state/%s: %s", id, strerror(errno));
		return;
	}
	if (write_all(fd, line, len) < 0)
		log_warn("cannot append to state/%s: %s", id, strerror(errno));
	close(fd);
}

void spool_state_record(struct spool *spool, const struct envelope *env, size_t rcpt_index)
{
	const struct envelope_rcpt *r;
	struct strbuf sb;
	char *reply = NULL;
	int rc = 0;

	if (rcpt_index >= env->nrcpts)
		panic("state record for recipient %zu of %zu in %s", rcpt_index, env->nrcpts, env->id);
	if (!spool_id_valid(env->id))
		panic("state record for invalid id '%s'", env->id);
	r = &env->rcpts[rcpt_index];
	if ((unsigned)r->state > RCPT_FAILED)
		panic("recipient state %d in %s", (int)r->state, env->id);
	if (r->last_reply)
		reply = xstrndup(r->last_reply, SPOOL_STATE_REPLY_MAX);
	strbuf_init(&sb, SPOOL_STATE_LINE_MAX);
	rc |= strbuf_appendf(&sb, "R %zu ", rcpt_index);
	rc |= field_append(&sb, r->addr);
	rc |= strbuf_appendf(&sb, " %s %d ", rcpt_state_names[r->state],
			     r->last_code >= 0 && r->last_code <= 999 ? r->last_code : 0);
	rc |= field_append(&sb, r->remote);
	rc |= strbuf_appends(&sb, " ");
	rc |= field_append(&sb, reply);
	rc |= strbuf_appends(&sb, "\n");
	if (rc)
		log_warn("state record for %s recipient %zu too long, not written", env->id, rcpt_index);
	else
		state_append(spool, env->id, sb.data, sb.len);
	strbuf_free(&sb);
	free(reply);
}

void spool_state_hold(struct spool *spool, const char *id, bool held)
{
	if (!spool_id_valid(id)) {
		log_warn("hold for invalid id '%s' ignored", id);
		return;
	}
	state_append(spool, id, held ? "H 1\n" : "H 0\n", 4);
}

static int state_apply_rcpt(struct envelope *env, const struct token *f)
{
	struct envelope_rcpt *r;
	char *addr = NULL, *remote = NULL, *reply = NULL;
	uint64_t index, code;
	size_t state;

	if (parse_u64(f[0].p, f[0].len, SIZE_MAX, &index) < 0 || index >= env->nrcpts)
		return -1;
	for (state = 0; state < 3; state++) {
		if (strlen(rcpt_state_names[state]) == f[2].len &&
		    memcmp(rcpt_state_names[state], f[2].p, f[2].len) == 0)
			break;
	}
	if (state == 3 || parse_u64(f[3].p, f[3].len, 999, &code) < 0)
		return -1;
	if (field_decode(f[1].p, f[1].len, &addr) < 0 || addr == NULL ||
	    field_decode(f[4].p, f[4].len, &remote) < 0 ||
	    field_decode(f[5].p, f[5].len, &reply) < 0)
		goto bad;
	r = &env->rcpts[index];
	if (strcmp(addr, r->addr) != 0)
		goto bad;
	r->state = (enum rcpt_state)state;
	r->last_code = (int)code;
	free(r->remote);
	r->remote = remote;
	free(r->last_reply);
	r->last_reply = reply;
	free(addr);
	return 0;
bad:
	free(addr);
	free(remote);
	free(reply);
	return -1;
}

static int state_apply_line(struct envelope *env, const char *line, size_t len)
{
	struct token f[6];
	char key = 0;
	int n = line_split(line, len, &key, f, 6);

	if (key == 'R' && n == 6)
		return state_apply_rcpt(env, f);
	if (key == 'H' && n == 1 && f[0].len == 1 && (f[0].p[0] == '0' || f[0].p[0] == '1')) {
		env->held = f[0].p[0] == '1';
		return 0;
	}
	return -1;
}

/*
 * Replay state/<id> onto a recovered envelope. Read in fixed-size chunks so
 * a long-lived message's log costs bounded memory; an unterminated last line
 * (a crash mid-append) is ignored, as are lines that do not fit the buffer.
 */
static void state_apply(struct spool *spool, struct envelope *env)
{
	char *buf, *line, *nl;
	size_t have = 0, bad = 0;
	bool skipping = false;
	ssize_t n;
	int fd = openat(spool->state_fd, env->id, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("cannot read state/%s: %s", env->id, strerror(errno));
		return;
	}
	buf = xmalloc(SPOOL_STATE_READ_BUF);
	for (;;) {
		n = read(fd, buf + have, SPOOL_STATE_READ_BUF - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_warn("cannot read state/%s: %s", env->id, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		line = buf;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
			if (!skipping && state_apply_line(env, line, (size_t)(nl - line)) < 0)
				bad++;
			skipping = false;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == SPOOL_STATE_READ_BUF) {
			bad++;
			skipping = true;
			have = 0;
		}
	}
	if (bad)
		log_warn("state/%s: %zu unusable line(s) ignored", env->id, bad);
	free(buf);
	close(fd);
}

/* ---- recovery --------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The entries of a spool subdirectory, sorted; NULL with errno on failure. */
static char **dir_list(int dir_fd, size_t *count)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d;
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return NULL;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	if (errno != 0) {
		int saved = errno;

		closedir(d);
		names_free(names, n);
		errno = saved;
		return NULL;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	*count = n;
	return names ? names : xcalloc(1, sizeof(*names));
}

/*
 * Move queue/<name> or state/<name> into corrupt/ without replacing an
 * earlier casualty of the same name (a ".N" suffix is added instead).
 */
static int spool_move_aside(struct spool *spool, int from_fd, const char *name,
			    const char *suffix, char *path, size_t pathlen)
{
	for (int n = 0; n < 100; n++) {
		if (n == 0)
			snprintf(path, pathlen, "corrupt/%s%s", name, suffix);
		else
			snprintf(path, pathlen, "corrupt/%s%s.%d", name, suffix, n);
		if (renameat2(from_fd, name, spool->dir_fd, path, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EINVAL)
			return renameat(from_fd, name, spool->dir_fd, path);
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* Never delete what might be mail: move it where an operator will look. */
static void spool_quarantine(struct spool *spool, const char *name, const char *why)
{
	char path[NAME_MAX + 32];

	if (mkdirat(spool->dir_fd, "corrupt", 0700) < 0 && errno != EEXIST) {
		log_error("queue/%s is corrupt (%s) and mkdir corrupt/ failed: %s; left in place",
			  name, why, strerror(errno));
		return;
	}
	if (spool_move_aside(spool, spool->queue_fd, name, "", path, sizeof(path)) < 0) {
		log_error("queue/%s is corrupt (%s) and cannot be moved: %s; left in place",
			  name, why, strerror(errno));
		return;
	}
	log_error("queue/%s is corrupt (%s): moved to %s/%s", name, why, spool->dir, path);
	if (spool_move_aside(spool, spool->state_fd, name, ".state", path, sizeof(path)) < 0 &&
	    errno != ENOENT)
		log_warn("cannot move state/%s to corrupt/: %s", name, strerror(errno));
}

static enum spool_load_result spool_load(struct spool *spool, const char *name,
					 struct envelope **out, const char **why)
{
	enum spool_load_result r;
	uint64_t size, offset, envlen;
	uint32_t crc;
	char *text = NULL;
	int fd, saved;

	if (!spool_id_valid(name)) {
		*why = "not a queue id";
		return LOAD_CORRUPT;
	}
	fd = openat(spool->queue_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return LOAD_IOERR;
	r = trailer_read(fd, &size, &offset, &crc, why);
	if (r != LOAD_OK)
		goto out;
	envlen = size - SPOOL_TRAILER_LEN - offset;
	if (envlen > SPOOL_ENVELOPE_MAX) {
		*why = "envelope too large";
		r = LOAD_CORRUPT;
		goto out;
	}
	text = xmalloc(envlen + 1);
	if (pread_all(fd, text, envlen, (off_t)offset) < 0) {
		r = LOAD_IOERR;
		goto out;
	}
	text[envlen] = '\0';
	if ((uint32_t)crc32(0L, (const Bytef *)text, (uInt)envlen) != crc) {
		*why = "envelope checksum mismatch";
		r = LOAD_CORRUPT;
		goto out;
	}
	*out = envelope_parse(text, envlen, name, why);
	if (*out == NULL) {
		r = LOAD_CORRUPT;
	} else if ((*out)->size != offset) {
		*why = "size record does not match envelope offset";
		envelope_free(*out);
		*out = NULL;
		r = LOAD_CORRUPT;
	}
out:
	saved = errno;
	free(text);
	close(fd);
	errno = saved;
	return r;
}

/* Everything in incoming/ was never acknowledged: the client will retry. */
static void spool_clear_incoming(struct spool *spool)
{
	size_t n = 0, removed = 0;
	char **names = dir_list(spool->incoming_fd, &n);

	if (names == NULL) {
		log_error("cannot list %s/incoming: %s", spool->dir, strerror(errno));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (unlinkat(spool->incoming_fd, names[i], 0) < 0)
			log_warn("cannot remove incoming/%s: %s", names[i], strerror(errno));
		else
			removed++;
	}
	if (removed)
		log_info("removed %zu unacknowledged file(s) from incoming/", removed);
	names_free(names, n);
}

/* A state log whose message is gone: spool_remove was interrupted. */
static void spool_clear_orphan_states(struct spool *spool, char **queued, size_t nqueued)
{
	size_t n = 0;
	char **names = dir_list(spool->state_fd, &n);

	if (names == NULL) {
		log_error("cannot list %s/state: %s", spool->dir, strerror(errno));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (bsearch(&names[i], queued, nqueued, sizeof(*queued), name_cmp) != NULL)
			continue;
		if (unlinkat(spool->state_fd, names[i], 0) < 0)
			log_warn("cannot remove orphan state/%s: %s", names[i], strerror(errno));
	}
	names_free(names, n);
}

int spool_recover(struct spool *spool, void (*cb)(void *arg, struct envelope *env), void *arg)
{
	struct envelope *env;
	const char *why;
	size_t n = 0, loaded = 0;
	char **names;

	spool_clear_incoming(spool);
	names = dir_list(spool->queue_fd, &n);
	if (names == NULL) {
		log_error("cannot list %s/queue: %s", spool->dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		env = NULL;
		why = NULL;
		switch (spool_load(spool, names[i], &env, &why)) {
		case LOAD_OK:
			state_apply(spool, env);
			loaded++;
			cb(arg, env);
			break;
		case LOAD_CORRUPT:
			spool_quarantine(spool, names[i], why);
			break;
		case LOAD_IOERR:
			log_error("cannot read queue/%s: %s; skipped", names[i], strerror(errno));
			break;
		}
	}
	spool_clear_orphan_states(spool, names, n);
	log_info("recovered %zu message(s) from %s", loaded, spool->dir);
	names_free(names, n);
	return loaded > INT_MAX ? INT_MAX : (int)loaded;
}
