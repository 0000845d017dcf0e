/*
 * Cleaning is all or nothing: every infected part is located, every note
 * built and every edit checked against the envelope before the first one
 * is added. A message we are not sure about is never delivered half
 * cleaned; the caller quarantines it instead.
 *
 * The walker is deliberately stricter than GMime: wherever the two could
 * read a message differently (odd header lines, nested boundaries that
 * prefix each other, missing delimiters) it gives up, and what it finds
 * is then checked against GMime's parse part by part.
 */
#include "content/clean.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "content/marks.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define LOG_MODULE "clean"
#include "core/log.h"

#define CLEAN_MAX_DEPTH MIME_MAX_DEPTH_DEFAULT
#define CLEAN_MAX_PARTS MIME_MAX_PARTS_DEFAULT
#define CLEAN_FIELD_MAX 4096           /* an unfolded Content-Type we accept */
#define CLEAN_CTE_MAX 64
#define CLEAN_BOUNDARY_MAX 998         /* RFC 2046 says 70; GMime takes longer ones */
#define CLEAN_NAME_MAX 200             /* bytes of a name written into a note */
#define CLEAN_TARGETS_MAX ENVELOPE_EDITS_MAX
#define CLEAN_VIRUSES_MAX 256          /* virus names of one removed part, joined */
#define CLEAN_HEADERS_MAX ((CLEAN_TARGETS_MAX + 1) * (MARKS_VALUE_MAX + 64)) /* + extra_headers */

/* The fields of one header block the walker needs. */
struct clean_header {
	char ct[CLEAN_FIELD_MAX];
	size_t ct_len;
	bool has_ct;
	char cte[CLEAN_CTE_MAX];
	size_t cte_len;
	bool has_cte;
	size_t body;                   /* first byte after the empty line */
};

/* A parsed Content-Type. */
struct clean_ctype {
	char type[CLEAN_TOKEN_MAX];
	char subtype[CLEAN_TOKEN_MAX];
	char boundary[CLEAN_BOUNDARY_MAX + 1];
	bool has_boundary;
};

/* One walk: the message and the parts found so far. */
struct clean_walker {
	const unsigned char *raw;
	size_t len;
	struct clean_walk *w;
	size_t cap;
	const char *bounds[CLEAN_MAX_DEPTH + 2];   /* boundaries of the enclosing multiparts */
	size_t nbounds;
};

/* A delimiter line of a multipart. */
struct clean_delim {
	size_t start;                  /* first byte of the line */
	size_t next;                   /* first byte after its line end */
	bool close;                    /* "--boundary--" */
};

/* One part to replace, and why. */
struct clean_target {
	int part;                      /* index in the walk */
	int infected;                  /* index in r->mime of the first infected part inside it */
	char viruses[CLEAN_VIRUSES_MAX];
};

static bool clean_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Offset just past the line starting at pos, or limit when it has no line end before it. */
static size_t clean_line_next(const unsigned char *raw, size_t pos, size_t limit)
{
	const unsigned char *nl = memchr(raw + pos, '\n', limit - pos);

	return nl ? (size_t)(nl - raw) + 1 : limit;
}

/* Length of the line at pos without its line end. */
static size_t clean_line_len(const unsigned char *raw, size_t pos, size_t next)
{
	size_t n = next - pos;

	if (n > 0 && raw[pos + n - 1] == '\n')
		n--;
	if (n > 0 && raw[pos + n - 1] == '\r')
		n--;
	return n;
}

/* Append a (part of a) field value to a bounded buffer; false when it does not fit. */
static bool clean_field_append(char *buf, size_t *len, size_t cap, const unsigned char *s, size_t n)
{
	if (n >= cap - *len)
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
	return true;
}

/* RFC 5322 field name, with the obsolete blanks before the colon. */
static bool clean_field_name(const unsigned char *line, size_t n, size_t *name_len, size_t *colon)
{
	const unsigned char *c = memchr(line, ':', n);
	size_t len;

	if (c == NULL)
		return false;
	*colon = (size_t)(c - line);
	len = *colon;
	while (len > 0 && clean_is_wsp(line[len - 1]))
		len--;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (line[i] < 0x21 || line[i] > 0x7e)
			return false;
	}
	*name_len = len;
	return true;
}

/*
 * The header block at start: fields and folded lines up to an empty line
 * before limit. Content-Type and Content-Transfer-Encoding are kept; a
 * line that is not a field, a repeated one of those two, or a block
 * without its empty line makes the part unsure.
 */
static int clean_parse_header(const unsigned char *raw, size_t start, size_t limit,
			      struct clean_header *h)
{
	char *cur = NULL;
	size_t *cur_len = NULL, cur_cap = 0, pos, next, n, name_len, colon;

	memset(h, 0, sizeof(*h));
	for (pos = start; pos < limit; pos = next) {
		next = clean_line_next(raw, pos, limit);
		if (raw[next - 1] != '\n')
			return -1;
		n = clean_line_len(raw, pos, next);
		if (n == 0) {
			h->body = next;
			return 0;
		}
		if (clean_is_wsp(raw[pos])) {
			if (pos == start)
				return -1;
			if (cur != NULL && !clean_field_append(cur, cur_len, cur_cap, raw + pos, n))
				return -1;
			continue;
		}
		if (!clean_field_name(raw + pos, n, &name_len, &colon))
			return -1;
		cur = NULL;
		if (name_len == 12 && strncasecmp((const char *)raw + pos, "content-type", 12) == 0) {
			if (h->has_ct)
				return -1;
			h->has_ct = true;
			cur = h->ct, cur_len = &h->ct_len, cur_cap = sizeof(h->ct);
		} else if (name_len == 25 &&
			   strncasecmp((const char *)raw + pos, "content-transfer-encoding", 25) == 0) {
			if (h->has_cte)
				return -1;
			h->has_cte = true;
			cur = h->cte, cur_len = &h->cte_len, cur_cap = sizeof(h->cte);
		}
		if (cur != NULL && !clean_field_append(cur, cur_len, cur_cap, raw + pos + colon + 1,
						       n - colon - 1))
			return -1;
	}
	return -1;
}

/* RFC 2045 token character: no blanks, controls or tspecials (comments included). */
static bool clean_is_token(char c)
{
	return (unsigned char)c > 0x20 && (unsigned char)c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static const char *clean_skip_wsp(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A token into out (lower-cased when asked); NULL when empty or too long. */
static const char *clean_token(const char *p, char *out, size_t cap, bool lower)
{
	size_t n = 0;

	while (clean_is_token(*p)) {
		if (n + 1 >= cap)
			return NULL;
		out[n++] = lower && *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
		p++;
	}
	out[n] = '\0';
	return n > 0 ? p : NULL;
}

/* A quoted-string's content into out; NULL when unterminated or too long. */
static const char *clean_quoted(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	for (p++; *p != '"'; p++) {
		if (*p == '\\')
			p++;
		if (*p == '\0' || n + 1 >= cap)
			return NULL;
		out[n++] = *p;
	}
	out[n] = '\0';
	return p + 1;
}

/*
 * An unquoted value up to the next ';' or blank: senders write
 * boundary=----=_NextPart_... without quotes and GMime takes it whole.
 */
static const char *clean_bare_value(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	while (*p != '\0' && *p != ';' && *p != '"' && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f) {
		if (n + 1 >= cap)
			return NULL;
		out[n++] = *p++;
	}
	out[n] = '\0';
	return n > 0 ? p : NULL;
}

/*
 * type "/" subtype *(";" attribute "=" value). Comments, RFC 2231
 * boundaries and repeated boundaries are refused: GMime may read them
 * differently, and the boundary decides where every part ends.
 */
static int clean_parse_ctype(const char *v, struct clean_ctype *ct)
{
	char name[CLEAN_TOKEN_MAX], value[CLEAN_BOUNDARY_MAX + 1];
	const char *p = clean_skip_wsp(v);

	memset(ct, 0, sizeof(*ct));
	if ((p = clean_token(p, ct->type, sizeof(ct->type), true)) == NULL)
		return -1;
	p = clean_skip_wsp(p);
	if (*p++ != '/')
		return -1;
	p = clean_skip_wsp(p);
	if ((p = clean_token(p, ct->subtype, sizeof(ct->subtype), true)) == NULL)
		return -1;
	for (;;) {
		p = clean_skip_wsp(p);
		if (*p == '\0')
			return 0;
		if (*p++ != ';')
			return -1;
		p = clean_skip_wsp(p);
		if (*p == '\0')
			return 0;
		if ((p = clean_token(p, name, sizeof(name), true)) == NULL)
			return -1;
		p = clean_skip_wsp(p);
		if (*p++ != '=')
			return -1;
		p = clean_skip_wsp(p);
		p = *p == '"' ? clean_quoted(p, value, sizeof(value))
			      : clean_bare_value(p, value, sizeof(value));
		if (p == NULL || strncmp(name, "boundary*", 9) == 0)
			return -1;
		if (strcmp(name, "boundary") == 0) {
			if (ct->has_boundary || value[0] == '\0')
				return -1;
			ct->has_boundary = true;
			memcpy(ct->boundary, value, strlen(value) + 1);
		}
	}
}

/* Whether one of a and b starts with the other: a line could then delimit both. */
static bool clean_boundaries_clash(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	return strncmp(a, b, la < lb ? la : lb) == 0;
}

/* "--boundary" or "--boundary--", then nothing but blanks. */
static bool clean_is_delim(const unsigned char *line, size_t n, const char *boundary, bool *close)
{
	size_t bl = strlen(boundary), p = 2 + bl;

	if (n < p || line[0] != '-' || line[1] != '-' || memcmp(line + 2, boundary, bl) != 0)
		return false;
	*close = n >= p + 2 && line[p] == '-' && line[p + 1] == '-';
	if (*close)
		p += 2;
	while (p < n && clean_is_wsp(line[p]))
		p++;
	return p == n;
}

/* The next delimiter line of boundary at or after pos (a line start); false when none. */
static bool clean_find_delim(const struct clean_walker *wk, size_t pos, size_t limit,
			     const char *boundary, struct clean_delim *d)
{
	size_t next;

	for (; pos < limit; pos = next) {
		next = clean_line_next(wk->raw, pos, limit);
		if (clean_is_delim(wk->raw + pos, clean_line_len(wk->raw, pos, next), boundary, &d->close)) {
			d->start = pos;
			d->next = next;
			return true;
		}
	}
	return false;
}

static int clean_add_part(struct clean_walker *wk, int parent, const struct clean_ctype *ct,
			  size_t start, size_t body, size_t end, bool in_multipart)
{
	struct clean_walk *w = wk->w;
	struct clean_part *p;

	if (w->nparts >= CLEAN_MAX_PARTS)
		return -1;
	if (w->nparts == wk->cap) {
		wk->cap = wk->cap ? wk->cap * 2 : 8;
		w->parts = xreallocarray(w->parts, wk->cap, sizeof(*w->parts));
	}
	p = &w->parts[w->nparts];
	p->parent = parent;
	memcpy(p->type, ct->type, sizeof(p->type));
	memcpy(p->subtype, ct->subtype, sizeof(p->subtype));
	p->start = start;
	p->body = body < end ? body : end;
	p->end = end;
	p->in_multipart = in_multipart;
	return (int)w->nparts++;
}

static int clean_walk_entity(struct clean_walker *wk, size_t start, size_t end, size_t limit,
			     int parent, unsigned depth, bool digest_child, bool in_multipart);

/*
 * The children of a multipart: between its first delimiter and its
 * closing one. The line end before a delimiter belongs to the delimiter
 * (RFC 2046), so a child ends just before it.
 */
static int clean_walk_multipart(struct clean_walker *wk, int idx, const struct clean_ctype *ct,
				size_t body, size_t limit, unsigned depth)
{
	bool digest = strcmp(ct->subtype, "digest") == 0;
	struct clean_delim d, next;
	size_t end;

	for (size_t i = 0; i < wk->nbounds; i++) {
		if (clean_boundaries_clash(wk->bounds[i], ct->boundary))
			return -1;
	}
	if (!clean_find_delim(wk, body, limit, ct->boundary, &d) || d.close)
		return -1;
	wk->bounds[wk->nbounds++] = ct->boundary;
	do {
		if (!clean_find_delim(wk, d.next, limit, ct->boundary, &next))
			return -1;
		end = next.start;
		if (end > d.next && wk->raw[end - 1] == '\n')
			end--;
		if (end > d.next && wk->raw[end - 1] == '\r')
			end--;
		if (clean_walk_entity(wk, d.next, end, next.start, idx, depth + 1, digest, true) < 0)
			return -1;
		d = next;
	} while (!d.close);
	wk->nbounds--;
	return 0;
}

/*
 * GMime reads a Content-Type it cannot parse as application/octet-stream:
 * a leaf, whatever it says. Should GMime see more in it, the types will
 * not agree and nothing is cleaned.
 */
static void clean_unknown_ctype(struct clean_ctype *ct)
{
	memset(ct, 0, sizeof(*ct));
	snprintf(ct->type, sizeof(ct->type), "application");
	snprintf(ct->subtype, sizeof(ct->subtype), "octet-stream");
}

static bool clean_is_message_type(const struct clean_ctype *ct)
{
	return strcmp(ct->type, "message") == 0 &&
	       (strcmp(ct->subtype, "rfc822") == 0 || strcmp(ct->subtype, "news") == 0 ||
		strcmp(ct->subtype, "global") == 0);
}

/* An encoded message/rfc822 is not parsed as a message by everyone: refuse it. */
static bool clean_cte_is_identity(const struct clean_header *h)
{
	char v[CLEAN_CTE_MAX];
	const char *p = clean_skip_wsp(h->cte);

	if (!h->has_cte)
		return true;
	if (clean_token(p, v, sizeof(v), true) == NULL || *clean_skip_wsp(p + strlen(v)) != '\0')
		return false;
	return strcmp(v, "7bit") == 0 || strcmp(v, "8bit") == 0 || strcmp(v, "binary") == 0;
}

/*
 * One entity: its header block at start (which may run up to limit, the
 * next delimiter line), its body up to end. Recursion is bounded by
 * CLEAN_MAX_DEPTH.
 */
static int clean_walk_entity(struct clean_walker *wk, size_t start, size_t end, size_t limit,
			     int parent, unsigned depth, bool digest_child, bool in_multipart)
{
	struct clean_header h;
	struct clean_ctype ct;
	int idx;

	if (depth > CLEAN_MAX_DEPTH || clean_parse_header(wk->raw, start, limit, &h) < 0)
		return -1;
	if (h.has_ct) {
		if (clean_parse_ctype(h.ct, &ct) < 0)
			clean_unknown_ctype(&ct);
	} else {
		memset(&ct, 0, sizeof(ct));
		snprintf(ct.type, sizeof(ct.type), "%s", digest_child ? "message" : "text");
		snprintf(ct.subtype, sizeof(ct.subtype), "%s", digest_child ? "rfc822" : "plain");
	}
	if ((idx = clean_add_part(wk, parent, &ct, start, h.body, end, in_multipart)) < 0)
		return -1;
	if (strcmp(ct.type, "multipart") == 0) {
		if (!ct.has_boundary)
			return -1;
		return clean_walk_multipart(wk, idx, &ct, h.body, limit, depth);
	}
	if (clean_is_message_type(&ct)) {
		if (!clean_cte_is_identity(&h) || h.body > end)
			return -1;
		return clean_walk_entity(wk, h.body, end, limit, idx, depth + 1, false, false);
	}
	return 0;
}

int clean_walk_parts(const unsigned char *raw, size_t len, struct clean_walk *w)
{
	struct clean_walker wk = { .raw = raw, .len = len, .w = w };

	size_t start = 0;

	memset(w, 0, sizeof(*w));
	if (len >= 5 && memcmp(raw, "From ", 5) == 0)
		start = clean_line_next(raw, 0, len);   /* an mbox separator, which GMime skips too */
	if (clean_walk_entity(&wk, start, len, len, -1, 0, false, false) < 0) {
		clean_walk_free(w);
		return -1;
	}
	return 0;
}

void clean_walk_free(struct clean_walk *w)
{
	free(w->parts);
	w->parts = NULL;
	w->nparts = 0;
}

/*
 * mime.c's array is the walk's, with the files it found uuencoded inside
 * text parts added after their text part. to_walk maps a mime index to
 * the walk's (a uuencoded file to its text part); false when the two
 * disagree on any part's type or parent.
 */
static bool clean_map_parts(const struct mime_message *m, const struct clean_walk *w, int *to_walk)
{
	size_t k = 0;

	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *mp = &m->parts[i];

		if (mp->from_uuencode) {
			if (mp->parent < 0 || (size_t)mp->parent >= i)
				return false;
			to_walk[i] = to_walk[mp->parent];
			continue;
		}
		if (k >= w->nparts || mp->type == NULL || mp->subtype == NULL ||
		    strcmp(mp->type, w->parts[k].type) != 0 ||
		    strcmp(mp->subtype, w->parts[k].subtype) != 0 ||
		    (mp->parent < 0 ? w->parts[k].parent != -1
				    : w->parts[k].parent != to_walk[mp->parent]))
			return false;
		to_walk[i] = (int)k++;
	}
	return k == w->nparts;
}

/* The signature name from a VIRUS_FOUND reason, "<name> in <part>". */
static void clean_virus_name(const char *reason, char *out, size_t outlen)
{
	const char *in = strstr(reason, " in ");
	size_t n = in != NULL ? (size_t)(in - reason) : strlen(reason);

	snprintf(out, outlen, "%.*s", (int)n, reason);
}

/* The part the walk replaces for an infected one: the nearest child of a multipart. */
static int clean_replaced_part(const struct clean_walk *w, int k)
{
	while (k >= 0 && !w->parts[k].in_multipart)
		k = w->parts[k].parent;
	return k;
}

static void clean_add_virus(struct clean_target *t, const char *virus)
{
	size_t n = strlen(t->viruses), take;

	if (strstr(t->viruses, virus) != NULL)
		return;
	if (n > 0 && n + 2 < sizeof(t->viruses)) {
		memcpy(t->viruses + n, ", ", 2);
		n += 2;
	}
	take = strnlen(virus, sizeof(t->viruses) - 1 - n);
	memmove(t->viruses + n, virus, take);
	t->viruses[n + take] = '\0';
}

/* Another target whose range holds target a's (parts nest or are disjoint), or n. */
static size_t clean_enclosing_target(const struct clean_walk *w, const struct clean_target *t,
				     size_t n, size_t a)
{
	const struct clean_part *pa = &w->parts[t[a].part];

	for (size_t b = 0; b < n; b++) {
		const struct clean_part *pb = &w->parts[t[b].part];

		if (b != a && pa->start >= pb->start && pa->end <= pb->end)
			return b;
	}
	return n;
}

/*
 * The parts to replace, one per removed part, merged when several
 * viruses lead to the same part or to parts inside one another.
 */
static int clean_collect_targets(const struct content_result *r, const struct clean_walk *w,
				 const int *to_walk, struct clean_target *t, size_t *nt,
				 char *why, size_t whylen)
{
	char virus[ENGINE_REASON_MAX];
	size_t n = 0, j;

	for (size_t i = 0; i < r->results.count; i++) {
		const struct engine_result *res = &r->results.items[i];
		int k;

		if (res->action != CONTENT_CLEAN)
			continue;
		if (res->part_index < 0 || (size_t)res->part_index >= r->mime->nparts) {
			snprintf(why, whylen, "the virus is in the message as a whole");
			return -1;
		}
		if ((k = clean_replaced_part(w, to_walk[res->part_index])) < 0) {
			snprintf(why, whylen, "the infected part is the message itself");
			return -1;
		}
		for (j = 0; j < n && t[j].part != k; j++)
			;
		if (j == n) {
			if (n == CLEAN_TARGETS_MAX) {
				snprintf(why, whylen, "too many infected parts");
				return -1;
			}
			memset(&t[n], 0, sizeof(t[n]));
			t[n].part = k;
			t[n].infected = res->part_index;
			n++;
		}
		clean_virus_name(res->reason, virus, sizeof(virus));
		clean_add_virus(&t[j], virus);
	}
	for (size_t a = 0; a < n;) {
		if ((j = clean_enclosing_target(w, t, n, a)) < n) {
			clean_add_virus(&t[j], t[a].viruses);
			t[a] = t[--n];
		} else {
			a++;
		}
	}
	if (n == 0) {
		snprintf(why, whylen, "no part to clean");
		return -1;
	}
	*nt = n;
	return 0;
}

/* What a note calls the removed part: its file name, the infected file's, or its type. */
static void clean_part_label(const struct content_result *r, const struct clean_walk *w,
			     const int *to_walk, const struct clean_target *t, char *out, size_t outlen)
{
	const struct mime_message *m = r->mime;
	const char *name = m->parts[t->infected].filename;

	for (size_t i = 0; i < m->nparts; i++) {
		if (to_walk[i] == t->part && !m->parts[i].from_uuencode) {
			if (m->parts[i].filename != NULL && m->parts[i].filename[0] != '\0')
				name = m->parts[i].filename;
			break;
		}
	}
	if (name != NULL && name[0] != '\0')
		snprintf(out, outlen, "%s", name);
	else
		snprintf(out, outlen, "%.60s/%.60s", w->parts[t->part].type, w->parts[t->part].subtype);
}

/* The note is us-ascii: anything else, and every control character, becomes '?'. */
static void clean_ascii(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
	}
}

/* The header mark goes through marks.c, which encodes non-ASCII; only line breaks must go. */
static void clean_one_line(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			*s = ' ';
	}
}

/* The line end of the delimiter line before the part: the note uses the same. */
static const char *clean_part_eol(const unsigned char *raw, const struct clean_part *p)
{
	return p->start >= 2 && raw[p->start - 2] == '\r' ? "\r\n" : "\n";
}

static void clean_build_note(struct strbuf *note, const char *eol, const char *label,
			     const char *viruses)
{
	char name[CLEAN_NAME_MAX], virus[CLEAN_NAME_MAX];

	snprintf(name, sizeof(name), "%s", label);
	snprintf(virus, sizeof(virus), "%s", viruses);
	clean_ascii(name);
	clean_ascii(virus);
	strbuf_reset(note);
	if (strbuf_appendf(note, "Content-Type: text/plain; charset=us-ascii%s"
			   "Content-Disposition: inline%s%s"
			   "The attachment %s was removed by postern: virus %s was found in it.%s",
			   eol, eol, eol, name, virus, eol) < 0)
		panic("a note of bounded size does not fit");
}

/* Every target's edit fits among env's edits, with room left for the header mark. */
static bool clean_edits_fit(const struct envelope *env, const struct clean_walk *w,
			    const struct clean_target *t, size_t nt, const struct strbuf *notes)
{
	if (env->nedits + nt + 2 > ENVELOPE_EDITS_MAX)
		return false;
	for (size_t i = 0; i < nt; i++) {
		const struct clean_part *p = &w->parts[t[i].part];

		if (!envelope_edit_fits(env, p->start, p->end - p->start, notes[i].len))
			return false;
	}
	return true;
}

/* The parse must be complete and unambiguous before its part numbers can be trusted. */
static bool clean_mime_usable(const struct mime_message *m, char *why, size_t whylen)
{
	if (m == NULL || m->nparts == 0) {
		snprintf(why, whylen, "the message was not parsed");
		return false;
	}
	if (m->limit_exceeded != 0 ||
	    (m->flags & (MIME_FLAG_MISSING_BOUNDARY | MIME_FLAG_TRUNCATED | MIME_FLAG_BAD_HEADER)) != 0) {
		snprintf(why, whylen, "the MIME structure is damaged or over a limit");
		return false;
	}
	return true;
}

/* Notes and header lines for every target, then the edits: the mark first, as it may refuse. */
static int clean_apply(struct envelope *env, const unsigned char *raw, size_t len,
		       const struct content_result *r, const struct clean_walk *w,
		       const int *to_walk, const struct clean_target *t, size_t nt,
		       const char *extra_headers, char *why, size_t whylen)
{
	static const struct marks_options mark = { .add_headers = true };
	struct strbuf notes[CLEAN_TARGETS_MAX], headers;
	char label[CLEAN_NAME_MAX];
	size_t done = 0;
	int rc = -1;

	strbuf_init(&headers, CLEAN_HEADERS_MAX);
	for (size_t i = 0; i < nt; i++) {
		strbuf_init(&notes[i], ENVELOPE_EDIT_INSERT_MAX);
		clean_part_label(r, w, to_walk, &t[i], label, sizeof(label));
		clean_build_note(&notes[i], clean_part_eol(raw, &w->parts[t[i].part]), label,
				 t[i].viruses);
		clean_one_line(label);
		if (strbuf_appendf(&headers, "X-Postern-Virus-Cleaned: %s removed\n", label) < 0)
			panic("header marks of bounded size do not fit");
	}
	if (extra_headers != NULL &&
	    (strlen(extra_headers) > MARKS_VALUE_MAX || strbuf_appends(&headers, extra_headers) < 0)) {
		snprintf(why, whylen, "the extra header lines are too long");
		goto out;
	}
	if (!clean_edits_fit(env, w, t, nt, notes)) {
		snprintf(why, whylen, "the edits collide with earlier ones");
		goto out;
	}
	if (marks_apply(env, raw, len, &mark, NULL, -1, NULL, headers.data) < 0) {
		snprintf(why, whylen, "the header mark cannot be added");
		goto out;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct clean_part *p = &w->parts[t[i].part];

		if (envelope_add_edit(env, p->start, p->end - p->start, notes[i].data, notes[i].len) < 0)
			panic("queue_id=%s checked edit refused", env->id);
		done += (size_t)snprintf(why + done, whylen > done ? whylen - done : 0, "%s%s (%s)",
					 i > 0 ? "; " : "removed ", label, t[i].viruses);
		if (done >= whylen)
			done = whylen;
	}
	rc = 0;
out:
	for (size_t i = 0; i < nt; i++)
		strbuf_free(&notes[i]);
	strbuf_free(&headers);
	return rc;
}

int content_clean_parts(struct envelope *env, const unsigned char *raw, size_t len,
			const struct content_result *r, const char *extra_headers, char *why, size_t whylen)
{
	struct clean_target targets[CLEAN_TARGETS_MAX];
	struct clean_walk w;
	size_t nt;
	int *to_walk, rc = -1;

	if (!clean_mime_usable(r->mime, why, whylen))
		return -1;
	if (clean_walk_parts(raw, len, &w) < 0) {
		snprintf(why, whylen, "the MIME structure cannot be located with certainty");
		return -1;
	}
	to_walk = xcalloc(r->mime->nparts, sizeof(*to_walk));
	if (!clean_map_parts(r->mime, &w, to_walk))
		snprintf(why, whylen, "the MIME structure disagrees with the parsed message");
	else if (clean_collect_targets(r, &w, to_walk, targets, &nt, why, whylen) == 0)
		rc = clean_apply(env, raw, len, r, &w, to_walk, targets, nt, extra_headers, why, whylen);
	free(to_walk);
	clean_walk_free(&w);
	return rc;
}
