/*
 * TXT look-ups for DKIM keys and DMARC records: a bounded synchronous
 * path for worker threads and the CLI, and a key file for tests.
 *
 * The gateway's resolver lives on the event loop and must not be touched
 * from a worker thread, so each synchronous look-up opens its own c-ares
 * channel on a private event base and gives up at a hard deadline. The
 * cost (one socket per look-up) is small next to the signature checks.
 */
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/dkim.h"
#include "core/alloc.h"
#define LOG_MODULE "dkim"
#include "core/log.h"

#define DKIM_KEYFILE_MAX (4u << 20)

/* c-ares 1.18's library init counter is not thread-safe: creating channels is serialised. */
static pthread_mutex_t dkim_ares_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t dkim_dns_skip_name(const unsigned char *m, size_t len, size_t off)
{
	while (off < len) {
		unsigned char l = m[off];

		if (l == 0)
			return off + 1;
		if ((l & 0xc0) == 0xc0)
			return off + 2 <= len ? off + 2 : 0;
		if (l & 0xc0)
			return 0;
		off += (size_t)l + 1;
	}
	return 0;
}

/* Each TXT record's character-strings joined (RFC 6376 3.6.2.2); too many or too long: malformed. */
static enum dns_status dkim_dns_parse_txt(const unsigned char *m, size_t len, struct dkim_txt *out)
{
	size_t off = 12, qd, an;

	if (len < 12)
		return DNS_MALFORMED;
	qd = (size_t)(m[4] << 8 | m[5]);
	an = (size_t)(m[6] << 8 | m[7]);
	for (size_t i = 0; i < qd; i++) {
		off = dkim_dns_skip_name(m, len, off);
		if (off == 0 || off + 4 > len)
			return DNS_MALFORMED;
		off += 4;
	}
	for (size_t i = 0; i < an; i++) {
		size_t rdlen, n = 0;
		const unsigned char *rd;
		int type;

		off = dkim_dns_skip_name(m, len, off);
		if (off == 0 || off + 10 > len)
			return DNS_MALFORMED;
		type = m[off] << 8 | m[off + 1];
		rdlen = (size_t)(m[off + 8] << 8 | m[off + 9]);
		off += 10;
		if (off + rdlen > len)
			return DNS_MALFORMED;
		rd = m + off;
		off += rdlen;
		if (type != ns_t_txt || out->n == DKIM_TXT_RECORDS)
			continue;
		for (size_t p = 0; p < rdlen;) {
			size_t sl = rd[p++];

			if (p + sl > rdlen || n + sl >= DKIM_TXT_LEN)
				return DNS_MALFORMED;
			memcpy(out->rec[out->n] + n, rd + p, sl);
			n += sl;
			p += sl;
		}
		out->rec[out->n][n] = '\0';
		out->n++;
	}
	return out->n > 0 ? DNS_OK : DNS_NODATA;
}

struct dkim_sync_run {
	struct dkim_txt *out;
	struct dns_request *req;
	bool done;
};

static void dkim_sync_answer(void *arg, enum dns_status st, const unsigned char *answer, size_t len)
{
	struct dkim_sync_run *run = arg;

	run->req = NULL;
	run->done = true;
	run->out->status = st == DNS_OK ? dkim_dns_parse_txt(answer, len, run->out) : st;
	if (run->out->status == DNS_TEMPFAIL)
		snprintf(run->out->error, sizeof(run->out->error), "DNS timeout or server failure");
}

static void dkim_sync_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct dkim_sync_run *run = arg;

	dns_cancel(run->req);
	run->req = NULL;
	run->done = true;
	run->out->status = DNS_TEMPFAIL;
	snprintf(run->out->error, sizeof(run->out->error), "DNS deadline passed");
}

void dkim_dns_sync_lookup(void *arg, const char *name, struct dkim_txt *out)
{
	const struct dkim_dns_sync *cfg = arg;
	unsigned tmo = cfg->timeout_ms ? cfg->timeout_ms : 2000, tries = cfg->tries ? cfg->tries : 2;
	struct dkim_sync_run run = { out, NULL, false };
	struct timeval deadline = { (tmo * tries + 500) / 1000, (tmo * tries + 500) % 1000 * 1000 };
	struct event_base *base;
	struct dns_resolver *r;
	struct event *timer;
	char err[160];

	memset(out, 0, sizeof(*out));
	out->status = DNS_TEMPFAIL;
	base = event_base_new();
	if (base == NULL) {
		snprintf(out->error, sizeof(out->error), "no event loop for DNS");
		return;
	}
	pthread_mutex_lock(&dkim_ares_lock);
	r = dns_resolver_new(base, cfg->servers, tmo, tries, err, sizeof(err));
	pthread_mutex_unlock(&dkim_ares_lock);
	if (r == NULL) {
		snprintf(out->error, sizeof(out->error), "%s", err);
		event_base_free(base);
		return;
	}
	timer = evtimer_new(base, dkim_sync_deadline, &run);
	if (timer == NULL)
		panic("evtimer_new for a DNS deadline failed");
	evtimer_add(timer, &deadline);
	run.req = dns_query_raw(r, name, ns_t_txt, dkim_sync_answer, &run);
	while (!run.done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	if (!run.done)
		dns_cancel(run.req);
	event_free(timer);
	pthread_mutex_lock(&dkim_ares_lock);
	dns_resolver_free(r);
	pthread_mutex_unlock(&dkim_ares_lock);
	event_base_free(base);
}

struct dkim_keyfile_entry {
	char *name;
	enum dns_status status;
	char *value;
};

struct dkim_keyfile {
	struct dkim_keyfile_entry *e;
	size_t n;
};

static void dkim_keyfile_line(struct dkim_keyfile *kf, char *line)
{
	char *p = line, *name, *val, *end;
	struct dkim_keyfile_entry *e;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#' || *p == ';')
		return;
	name = p;
	while (*p != '\0' && !isspace((unsigned char)*p))
		p++;
	if (*p != '\0')
		*p++ = '\0';
	while (isspace((unsigned char)*p))
		p++;
	val = p;
	end = val + strlen(val);
	while (end > val && isspace((unsigned char)end[-1]))
		*--end = '\0';
	kf->e = xreallocarray(kf->e, kf->n + 1, sizeof(*kf->e));
	e = &kf->e[kf->n++];
	e->name = xstrdup(name);
	e->status = DNS_OK;
	if (strcmp(val, "NXDOMAIN") == 0) {
		e->status = DNS_NXDOMAIN;
		e->value = xstrdup("");
	} else if (end - val >= 4 && strncmp(val, "~~", 2) == 0 && strcmp(end - 2, "~~") == 0) {
		e->status = DNS_TEMPFAIL;
		e->value = xstrndup(val + 2, (size_t)(end - val) - 4);
	} else if (strcmp(val, "\"\"") == 0) {
		e->value = xstrdup("");
	} else {
		e->value = xstrdup(val);
	}
}

struct dkim_keyfile *dkim_keyfile_parse(const char *text, size_t len)
{
	struct dkim_keyfile *kf = xcalloc(1, sizeof(*kf));
	char *copy = xstrndup(text, len), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		dkim_keyfile_line(kf, line);
	free(copy);
	return kf;
}

struct dkim_keyfile *dkim_keyfile_load(const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	struct dkim_keyfile *kf;
	char *buf;
	size_t n;

	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(DKIM_KEYFILE_MAX);
	n = fread(buf, 1, DKIM_KEYFILE_MAX, fp);
	if (ferror(fp) || n == DKIM_KEYFILE_MAX) {
		snprintf(err, errlen, "%s: unreadable or larger than %u bytes", path, DKIM_KEYFILE_MAX);
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	kf = dkim_keyfile_parse(buf, n);
	free(buf);
	return kf;
}

void dkim_keyfile_free(struct dkim_keyfile *kf)
{
	if (kf == NULL)
		return;
	for (size_t i = 0; i < kf->n; i++) {
		free(kf->e[i].name);
		free(kf->e[i].value);
	}
	free(kf->e);
	free(kf);
}

/* Every line for the name is one TXT record; an unlisted name does not exist. */
void dkim_keyfile_lookup(void *arg, const char *name, struct dkim_txt *out)
{
	const struct dkim_keyfile *kf = arg;

	memset(out, 0, sizeof(*out));
	out->status = DNS_NXDOMAIN;
	for (size_t i = 0; i < kf->n; i++) {
		const struct dkim_keyfile_entry *e = &kf->e[i];

		if (strcasecmp(e->name, name) != 0)
			continue;
		if (e->status != DNS_OK) {
			out->status = e->status;
			snprintf(out->error, sizeof(out->error), "%s", e->value);
			return;
		}
		out->status = DNS_OK;
		if (out->n < DKIM_TXT_RECORDS)
			snprintf(out->rec[out->n++], DKIM_TXT_LEN, "%s", e->value);
	}
}
