/*
 * Phrase weights (see content/phrases.h): a strict line parser, and an
 * engine that scans the subject and the body text once with a litset of
 * all phrases and sums, in hundredths to stay exact, the weight of each
 * phrase seen.
 */
#define LOG_MODULE "phrases"
#include "content/phrases.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/engine.h"
#include "content/litset.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/log.h"

enum phrase_where {
	WHERE_SUBJECT = 1 << 0,
	WHERE_BODY    = 1 << 1,
};

struct phrase {
	char *text;
	size_t len;
	int weight;                  /* hundredths */
	unsigned where;              /* enum phrase_where bits */
};

struct phrases {
	struct phrase *items;
	size_t count;
	size_t cap;
	struct litset *set;          /* id: index in items */
};

#define REASON_SHOWN   5         /* phrases listed in the reason */
#define REASON_PHRASE  40        /* bytes of each listed phrase */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_blanks(const char *s)
{
	while (is_blank(*s))
		s++;
	return s;
}

/*
 * "-12.5" to -1250: parsed by hand because strtod would accept hex,
 * exponents and "nan", and a weight with more than 2 decimals would be
 * silently rounded.
 */
static int parse_weight(const char *s, size_t len, int *out)
{
	size_t i = 0;
	bool neg = false;
	long whole = 0;
	int frac = 0, ndec = 0, ndig = 0;

	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, ndig++) {
		whole = whole * 10 + (s[i] - '0');
		if (whole > PHRASES_MAX_WEIGHT)
			return -1;
	}
	if (i < len && s[i] == '.') {
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, ndec++) {
			if (ndec == 2)
				return -1;
			frac = frac * 10 + (s[i] - '0');
		}
		if (ndec == 0)
			return -1;
		if (ndec == 1)
			frac *= 10;
	}
	if (i != len || ndig == 0)
		return -1;
	if (whole * 100 + frac > PHRASES_MAX_WEIGHT * 100)
		return -1;
	*out = (int)(neg ? -(whole * 100 + frac) : whole * 100 + frac);
	return 0;
}

/* The quoted phrase at *sp (past its opening quote) into buf; *sp ends past the closing quote. */
static const char *parse_quoted(const char **sp, char *buf, size_t *len)
{
	const char *s = *sp;
	size_t n = 0;

	for (;;) {
		unsigned char c = (unsigned char)*s;

		if (c == '\0')
			return "unterminated phrase (missing closing \")";
		if (c == '"')
			break;
		if (c == '\\') {
			c = (unsigned char)*++s;
			if (c != '"' && c != '\\')
				return "bad escape in phrase (only \\\" and \\\\)";
		} else if (c < 0x20 || c == 0x7f) {
			return "control character in phrase";
		}
		if (n == PHRASES_MAX_LEN)
			return "phrase longer than 200 bytes";
		buf[n++] = (char)c;
		s++;
	}
	if (n == 0)
		return "empty phrase";
	*sp = s + 1;
	*len = n;
	return NULL;
}

static const char *parse_where(const char *s, size_t len, unsigned *where)
{
	if (len == 7 && strncmp(s, "subject", 7) == 0)
		*where = WHERE_SUBJECT;
	else if (len == 4 && strncmp(s, "body", 4) == 0)
		*where = WHERE_BODY;
	else if (len == 4 && strncmp(s, "both", 4) == 0)
		*where = WHERE_SUBJECT | WHERE_BODY;
	else
		return "expected subject, body or both after the weight";
	return NULL;
}

static void phrases_append(struct phrases *p, const char *text, size_t len, int weight, unsigned where)
{
	struct phrase *ph;

	if (p->count == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->items = xreallocarray(p->items, p->cap, sizeof(*p->items));
	}
	ph = &p->items[p->count++];
	ph->text = xmalloc(len + 1);
	memcpy(ph->text, text, len);
	ph->text[len] = '\0';
	ph->len = len;
	ph->weight = weight;
	ph->where = where;
}

/* One NUL-terminated line without its newline; NULL, or why it is wrong. */
static const char *parse_line(struct phrases *p, const char *line)
{
	char buf[PHRASES_MAX_LEN];
	const char *s = skip_blanks(line), *tok, *why;
	size_t len;
	int weight;
	unsigned where;

	if (*s == '\0' || *s == '#')
		return NULL;
	for (tok = s; *s != '\0' && !is_blank(*s); s++)
		;
	if (parse_weight(tok, (size_t)(s - tok), &weight) < 0)
		return "bad weight (a number from -100 to 100 with at most 2 decimals)";
	s = skip_blanks(s);
	for (tok = s; *s != '\0' && !is_blank(*s); s++)
		;
	if ((why = parse_where(tok, (size_t)(s - tok), &where)) != NULL)
		return why;
	s = skip_blanks(s);
	if (*s != '"')
		return "expected a phrase in double quotes";
	s++;
	if ((why = parse_quoted(&s, buf, &len)) != NULL)
		return why;
	s = skip_blanks(s);
	if (*s != '\0' && *s != '#')
		return "unexpected text after the phrase";
	phrases_append(p, buf, len, weight, where);
	return NULL;
}

static struct phrases *phrases_parse_file(FILE *f, const char *path, char *err, size_t errlen)
{
	struct phrases *p = xcalloc(1, sizeof(*p));
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	const char *why = NULL;

	while ((n = getline(&line, &cap, f)) >= 0) {
		if (++lineno > PHRASES_MAX_LINES) {
			why = "more than 100000 lines";
			break;
		}
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (memchr(line, '\0', (size_t)n) != NULL) {
			why = "NUL byte in line";
			break;
		}
		if ((why = parse_line(p, line)) != NULL)
			break;
	}
	if (why == NULL && ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		free(line);
		phrases_free(p);
		return NULL;
	}
	free(line);
	if (why != NULL) {
		snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
		phrases_free(p);
		return NULL;
	}
	return p;
}

struct phrases *phrases_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct phrases *p;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	p = phrases_parse_file(f, path, err, errlen);
	fclose(f);
	if (p == NULL)
		return NULL;
	p->set = litset_new();
	for (size_t i = 0; i < p->count; i++)
		litset_add(p->set, p->items[i].text, p->items[i].len, (unsigned)i);
	litset_compile(p->set);
	log_debug("%s: %zu phrases", path, p->count);
	return p;
}

size_t phrases_count(const struct phrases *p)
{
	return p->count;
}

void phrases_free(struct phrases *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->count; i++)
		free(p->items[i].text);
	free(p->items);
	if (p->set != NULL)
		litset_free(p->set);
	free(p);
}

/* One scan: which field is being walked, and which phrases were seen. */
struct phrase_scan {
	const struct phrases *p;
	unsigned field;              /* WHERE_SUBJECT or WHERE_BODY */
	bool *seen;
};

static void phrase_hit(void *arg, unsigned id, size_t end)
{
	struct phrase_scan *sc = arg;

	if (sc->p->items[id].where & sc->field)
		sc->seen[id] = true;
}

static bool is_body_part(const struct mime_part *part)
{
	return part->text != NULL && !part->is_attachment;
}

static void phrases_scan_message(struct phrase_scan *sc, const struct mime_message *m)
{
	if (m->subject != NULL) {
		sc->field = WHERE_SUBJECT;
		litset_scan(sc->p->set, m->subject, strlen(m->subject), phrase_hit, sc);
	}
	sc->field = WHERE_BODY;
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *part = &m->parts[i];

		if (!is_body_part(part))
			continue;
		if (part->html != NULL)
			litset_scan(sc->p->set, part->html->text, part->html->text_len, phrase_hit, sc);
		else
			litset_scan(sc->p->set, part->text, part->text_len, phrase_hit, sc);
	}
}

/* A shown phrase cut to REASON_PHRASE bytes, never inside a UTF-8 sequence. */
static int shown_length(const struct phrase *ph)
{
	size_t n = ph->len;

	if (n > REASON_PHRASE) {
		n = REASON_PHRASE;
		while (n > 0 && ((unsigned char)ph->text[n] & 0xC0) == 0x80)
			n--;
	}
	return (int)n;
}

static void phrases_reason(const struct phrases *p, const bool *seen, size_t nseen, char *reason, size_t size)
{
	size_t used = 0, shown = 0;
	int w;

	for (size_t i = 0; i < p->count && shown < REASON_SHOWN; i++) {
		const struct phrase *ph = &p->items[i];

		if (!seen[i])
			continue;
		w = ph->weight < 0 ? -ph->weight : ph->weight;
		used += (size_t)snprintf(reason + used, size - used, "%s\"%.*s%s\" (%c%d.%02d)",
					 shown ? ", " : "", shown_length(ph), ph->text,
					 (size_t)shown_length(ph) < ph->len ? "..." : "",
					 ph->weight < 0 ? '-' : '+', w / 100, w % 100);
		shown++;
		if (used >= size)
			return;
	}
	if (nseen > shown)
		snprintf(reason + used, size - used, " and %zu more", nseen - shown);
}

static void phrases_check(void *state, const struct content_message *msg, struct engine_results *out)
{
	const struct phrases *p = state;
	struct phrase_scan sc = { .p = p };
	struct engine_result *r;
	size_t nseen = 0;
	long sum = 0;

	if (msg->mime == NULL || p->count == 0)
		return;
	sc.seen = xcalloc(p->count, sizeof(*sc.seen));
	phrases_scan_message(&sc, msg->mime);
	for (size_t i = 0; i < p->count; i++) {
		if (sc.seen[i]) {
			sum += p->items[i].weight;
			nseen++;
		}
	}
	if (nseen > 0) {
		r = engine_results_add(out, "phrases", "PHRASES");
		r->category = CATEGORY_SPAM;
		r->score = (double)sum / 100.0;
		phrases_reason(p, sc.seen, nseen, r->reason, sizeof(r->reason));
	}
	free(sc.seen);
}

static void phrases_engine_free(void *state)
{
	phrases_free(state);
}

struct content_engine *phrases_engine_create(struct phrases *p)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = "phrases";
	e->state = p;
	e->check = phrases_check;
	e->free = phrases_engine_free;
	return e;
}
