/*
 * Compile a parsed rule set and match it against messages. Each text
 * field (subject, from, to, body, html-link, each header name) gets one
 * literal prefilter holding every phrase and every literal a regex
 * requires; a message runs each prefilter once, phrases are decided by
 * the prefilter alone, and a regex only runs when its literal occurred or
 * when it has none. Everything per message lives in a match context on
 * the caller's stack, so one rule set serves all threads.
 */
#include "content/rules.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "content/litset.h"
#include "content/mime.h"
#include "content/rules_int.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define LOG_MODULE "rules"
#include "core/log.h"

#define LITERAL_PREFIX   16           /* bytes of a literal the prefilter searches */
#define LITERAL_MIN      3            /* shorter regex literals would hit everything */
#define MATCH_LIMIT      1000000      /* PCRE2 backtracking steps per match */
#define HEAP_LIMIT_KIB   (20 * 1024)
#define HEADER_BLOCK_MAX ((size_t)1024 * 1024)
#define HEADERS_MAX      1000
#define EXCERPT_MAX      64

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* ---- literal extraction from a regex ---------------------------------- */

static bool is_alnum(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static size_t skip_to(const char *re, size_t n, size_t j, char close)
{
	while (j < n && re[j] != close)
		j++;
	return j < n ? j + 1 : n;
}

/* Past a [class], minding a leading ], escapes and [:posix:] names. */
static size_t skip_class(const char *re, size_t n, size_t i)
{
	size_t j = i + 1;

	if (j < n && re[j] == '^')
		j++;
	if (j < n && re[j] == ']')
		j++;
	while (j < n) {
		if (re[j] == '\\') {
			j += 2;
		} else if (re[j] == '[' && j + 1 < n && strchr(":.=", re[j + 1]) != NULL) {
			char kind = re[j + 1];

			for (j += 2; j + 1 < n && !(re[j] == kind && re[j + 1] == ']'); j++)
				;
			j += 2;
		} else if (re[j] == ']') {
			return j + 1;
		} else {
			j++;
		}
	}
	return n;
}

/* Past a backslash escape whose letter or digit is re[i + 1]. */
static size_t skip_escape(const char *re, size_t n, size_t i)
{
	char e = re[i + 1];
	size_t j = i + 2;

	switch (e) {
	case 'x':
		if (j < n && re[j] == '{')
			return skip_to(re, n, j, '}');
		for (int k = 0; k < 2 && j < n && strchr("0123456789abcdefABCDEF", re[j]) != NULL; k++)
			j++;
		return j;
	case 'o': case 'N':
		return j < n && re[j] == '{' ? skip_to(re, n, j, '}') : j;
	case 'p': case 'P':
		return j < n && re[j] == '{' ? skip_to(re, n, j, '}') : j + 1;
	case 'c':
		return j + 1;
	case 'g': case 'k':
		if (j < n && re[j] == '{')
			return skip_to(re, n, j, '}');
		if (j < n && re[j] == '<')
			return skip_to(re, n, j, '>');
		if (j < n && re[j] == '\'')
			return skip_to(re, n, j + 1, '\'');
		if (j < n && (re[j] == '-' || re[j] == '+'))
			j++;
		while (j < n && re[j] >= '0' && re[j] <= '9')
			j++;
		return j;
	default:
		if (e >= '0' && e <= '9')
			while (j < n && re[j] >= '0' && re[j] <= '9')
				j++;
		return j;
	}
}

static size_t skip_group(const char *re, size_t n, size_t i)
{
	unsigned depth = 0;

	for (size_t j = i; j < n;) {
		if (re[j] == '\\') {
			j += 2;
		} else if (re[j] == '[') {
			j = skip_class(re, n, j);
		} else if (re[j] == '(') {
			depth++;
			j++;
		} else if (re[j] == ')') {
			j++;
			if (--depth == 0)
				return j;
		} else {
			j++;
		}
	}
	return n;
}

enum quant { QUANT_NONE, QUANT_MIN0, QUANT_MIN1 };

/* The quantifier at re[*i] if any, skipped with its lazy or possessive suffix. */
static enum quant skip_quantifier(const char *re, size_t n, size_t *i)
{
	size_t j = *i;
	enum quant q = QUANT_NONE;

	if (j >= n)
		return QUANT_NONE;
	if (re[j] == '?' || re[j] == '*') {
		q = QUANT_MIN0;
		j++;
	} else if (re[j] == '+') {
		q = QUANT_MIN1;
		j++;
	} else if (re[j] == '{') {
		size_t k = j + 1, digits = 0;
		unsigned long min = 0;

		for (; k < n && re[k] >= '0' && re[k] <= '9' && digits < 6; k++, digits++)
			min = min * 10 + (unsigned long)(re[k] - '0');
		if (k < n && re[k] == ',')
			for (k++; k < n && re[k] >= '0' && re[k] <= '9'; k++)
				;
		if (k >= n || re[k] != '}')
			return QUANT_NONE;
		q = digits > 0 && min > 0 ? QUANT_MIN1 : QUANT_MIN0;
		j = k + 1;
	} else {
		return QUANT_NONE;
	}
	if (j < n && (re[j] == '?' || re[j] == '+'))
		j++;
	*i = j;
	return q;
}

/* Constructs that change how the rest of the pattern reads: no literal then. */
static bool pattern_too_clever(const char *re, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (re[i] == '\\' && re[i + 1] == 'Q')
			return true;
		if (re[i] == '(' && re[i + 1] == '*')
			return true;
		if (re[i] == '(' && re[i + 1] == '?' && i + 2 < n &&
		    ((is_alnum(re[i + 2]) && re[i + 2] != 'P') || re[i + 2] == '-' || re[i + 2] == '^'))
			return true;
	}
	return false;
}

struct run {
	char bytes[RULES_MAX_REGEX];
	size_t len, best_len;
	char best[RULES_MAX_REGEX];
};

static void run_end(struct run *r)
{
	if (r->len > r->best_len) {
		memcpy(r->best, r->bytes, r->len);
		r->best_len = r->len;
	}
	r->len = 0;
}

/*
 * The longest byte string every match of a top-level sequence must
 * contain (PCRE2 syntax, read conservatively: anything unsure ends the
 * run). Caseless patterns keep ASCII letters only, and not k or s, whose
 * Unicode case twins (KELVIN SIGN, LONG S) the prefilter would not fold.
 */
static size_t regex_literal(const char *re, size_t n, unsigned flags, char *out, size_t outcap)
{
	struct run *r;
	size_t i = 0, len;

	if ((flags & RX_EXTENDED) || pattern_too_clever(re, n))
		return 0;
	r = xcalloc(1, sizeof(*r));
	while (i < n) {
		unsigned char c = (unsigned char)re[i];
		bool literal = false;

		if (c == '|' || c == ')') {
			r->best_len = 0;
			r->len = 0;
			break;
		} else if (c == '(') {
			run_end(r);
			i = skip_group(re, n, i);
		} else if (c == '[') {
			run_end(r);
			i = skip_class(re, n, i);
		} else if (c == '\\' && i + 1 < n && (is_alnum(re[i + 1]) || (unsigned char)re[i + 1] >= 0x80)) {
			run_end(r);
			i = skip_escape(re, n, i);
		} else if (c == '\\' && i + 1 < n) {
			c = (unsigned char)re[i + 1];
			i += 2;
			literal = true;
		} else if (c >= 0x80) {
			run_end(r);
			for (i++; i < n && ((unsigned char)re[i] & 0xc0) == 0x80; i++)
				;
		} else if (c == '.' || c == '^' || c == '$' || c == '*' || c == '+' || c == '?' || c == '{' || c == '\\') {
			run_end(r);
			i++;
		} else {
			i++;
			literal = true;
		}
		if (!literal) {
			if (skip_quantifier(re, n, &i) != QUANT_NONE)
				run_end(r);
			continue;
		}
		if ((flags & RX_CASELESS) && (fold(c) == 'k' || fold(c) == 's')) {
			run_end(r);
			skip_quantifier(re, n, &i);
			continue;
		}
		switch (skip_quantifier(re, n, &i)) {
		case QUANT_NONE:
			r->bytes[r->len++] = (char)c;
			break;
		case QUANT_MIN0:
			run_end(r);
			break;
		case QUANT_MIN1:
			r->bytes[r->len++] = (char)c;
			run_end(r);
			break;
		}
	}
	run_end(r);
	len = r->best_len >= LITERAL_MIN ? r->best_len : 0;
	if (len > outcap)
		len = outcap;
	memcpy(out, r->best, len);
	free(r);
	return len;
}

/* ---- compiling ------------------------------------------------------- */

struct compiler {
	struct rules *r;
	const char *name;
	char *err;
	size_t errlen;
	size_t literals_cap;
};

static int slot_for(struct rules *r, enum rule_field field, const char *header)
{
	for (size_t i = 0; i < r->nslots; i++)
		if (r->slots[i].field == field &&
		    (field != FIELD_HEADER || strcasecmp(r->slots[i].header, header) == 0))
			return (int)i;
	r->slots = xreallocarray(r->slots, r->nslots + 1, sizeof(*r->slots));
	r->slots[r->nslots].field = field;
	r->slots[r->nslots].header = header;
	r->slots[r->nslots].lits = litset_new();
	return (int)r->nslots++;
}

static int literal_add(struct compiler *c, int slot, const char *bytes, size_t len, bool phrase, bool word)
{
	struct rules *r = c->r;
	struct literal *lit;

	if (r->nliterals == c->literals_cap) {
		c->literals_cap = c->literals_cap ? c->literals_cap * 2 : 64;
		r->literals = xreallocarray(r->literals, c->literals_cap, sizeof(*r->literals));
	}
	lit = &r->literals[r->nliterals];
	memset(lit, 0, sizeof(*lit));
	lit->prefix_len = len < LITERAL_PREFIX ? len : LITERAL_PREFIX;
	lit->word = word;
	if (phrase) {
		lit->full = xmalloc(len + 1);
		for (size_t i = 0; i < len; i++)
			lit->full[i] = (char)fold((unsigned char)bytes[i]);
		lit->full[len] = '\0';
		lit->full_len = len;
	}
	litset_add(r->slots[slot].lits, bytes, lit->prefix_len, (unsigned)r->nliterals);
	return (int)r->nliterals++;
}

static int compile_regex(struct compiler *c, struct rule_value *v)
{
	uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C;
	PCRE2_SIZE off;
	int code;

	if (v->rx_flags & RX_CASELESS)
		opts |= PCRE2_CASELESS;
	if (v->rx_flags & RX_MULTILINE)
		opts |= PCRE2_MULTILINE;
	if (v->rx_flags & RX_DOTALL)
		opts |= PCRE2_DOTALL;
	if (v->rx_flags & RX_EXTENDED)
		opts |= PCRE2_EXTENDED;
	v->re = pcre2_compile((PCRE2_SPTR)v->text, v->len, opts, &code, &off, NULL);
	if (v->re == NULL) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(code, msg, sizeof(msg));
		snprintf(c->err, c->errlen, "%s:%u:%u: bad regex: %s", c->name, v->line,
			 v->col + 1 + (unsigned)(off < v->len ? off : v->len), (const char *)msg);
		return -1;
	}
	/* Without JIT (unsupported CPU, no memory) the interpreter still matches. */
	pcre2_jit_compile(v->re, PCRE2_JIT_COMPLETE);
	return 0;
}

static int compile_value(struct compiler *c, struct rule_node *n, struct rule_value *v)
{
	char lit[LITERAL_PREFIX];
	size_t len;

	if (v->is_regex) {
		if (compile_regex(c, v) < 0)
			return -1;
		if (n->slot >= 0 && (len = regex_literal(v->text, v->len, v->rx_flags, lit, sizeof(lit))) > 0)
			v->lit = literal_add(c, n->slot, lit, len, false, false);
		return 0;
	}
	if (n->slot >= 0) {
		v->lit = literal_add(c, n->slot, v->text, v->len, true, v->word);
	} else if (n->field == FIELD_ATTACHMENT_TYPE) {
		for (size_t i = 0; i < c->r->nfiletypes; i++)
			if (strcmp(c->r->filetypes[i].name, v->text) == 0)
				v->filetype = (int)i;
	}
	return 0;
}

static int compile_node(struct compiler *c, struct rule_node *n)
{
	if (n->kind != NODE_MATCH) {
		for (size_t i = 0; i < n->nkids; i++)
			if (compile_node(c, n->kids[i]) < 0)
				return -1;
		return 0;
	}
	if (rules_field_is_text(n->field))
		n->slot = slot_for(c->r, n->field, n->header);
	for (size_t i = 0; i < n->nvalues; i++)
		if (compile_value(c, n, &n->values[i]) < 0)
			return -1;
	return 0;
}

int rules_compile(struct rules *r, const char *name, char *err, size_t errlen)
{
	struct compiler c = { .r = r, .name = name, .err = err, .errlen = errlen };

	r->mctx = pcre2_match_context_create(NULL);
	if (r->mctx == NULL) {
		snprintf(err, errlen, "%s: out of memory for PCRE2", name);
		return -1;
	}
	pcre2_set_match_limit(r->mctx, MATCH_LIMIT);
	pcre2_set_heap_limit(r->mctx, HEAP_LIMIT_KIB);
	for (size_t i = 0; i < r->nrules; i++)
		if (compile_node(&c, r->rules[i].cond) < 0)
			return -1;
	for (size_t i = 0; i < r->nslots; i++)
		litset_compile(r->slots[i].lits);
	return 0;
}

void rules_node_free(struct rule_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nvalues; i++) {
		free(n->values[i].text);
		pcre2_code_free(n->values[i].re);
	}
	free(n->values);
	free(n->header);
	for (size_t i = 0; i < n->nkids; i++)
		rules_node_free(n->kids[i]);
	free(n->kids);
	free(n);
}

/* ---- matching -------------------------------------------------------- */

struct strings {
	const char **s;
	size_t *len;
	size_t n, cap;
};

struct header {
	char *name;
	char *value;             /* unfolded, RFC 2047 decoded */
};

/* What the first positive match of a rule was, for its reason text. */
struct note {
	bool set;
	char what[96];
	char excerpt[EXCERPT_MAX + 4];
	int part;
};

struct match_ctx {
	const struct rules *r;
	const struct mime_message *m;
	const unsigned char *raw;
	size_t raw_len;
	struct header *headers;
	size_t nheaders;
	char **owned;            /* link host names made for html-link */
	size_t nowned;
	struct strings *slot_values;
	unsigned char *hits;     /* per literal: confirmed in its field */
	pcre2_match_data *md;
	const char *scan_value;  /* the value the prefilter is scanning */
	size_t scan_len;
};

static void strings_add(struct strings *st, const char *s, size_t len)
{
	if (st->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 8;
		st->s = xreallocarray(st->s, st->cap, sizeof(*st->s));
		st->len = xreallocarray(st->len, st->cap, sizeof(*st->len));
	}
	st->s[st->n] = s;
	st->len[st->n++] = len;
}

static void header_add(struct match_ctx *x, const char *name, size_t nlen, const char *value)
{
	char *decoded = g_mime_utils_header_decode_text(NULL, value);

	x->headers = xreallocarray(x->headers, x->nheaders + 1, sizeof(*x->headers));
	x->headers[x->nheaders].name = xstrndup(name, nlen);
	x->headers[x->nheaders].value = xstrdup(decoded != NULL ? decoded : value);
	x->nheaders++;
	g_free(decoded);
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* The top-level header block of the raw message, unfolded and decoded. */
static void collect_headers(struct match_ctx *x)
{
	const char *p = (const char *)x->raw;
	const char *end = p + (x->raw_len < HEADER_BLOCK_MAX ? x->raw_len : HEADER_BLOCK_MAX);
	const char *name = NULL;
	size_t nlen = 0;
	struct strbuf value;

	strbuf_init(&value, HEADER_BLOCK_MAX);
	while (p < end && x->nheaders < HEADERS_MAX) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		const char *colon;

		if (le > p && le[-1] == '\r')
			le--;
		if (le == p)
			break;
		if (is_wsp(*p) && name != NULL) {
			strbuf_append(&value, p, (size_t)(le - p));
		} else {
			if (name != NULL)
				header_add(x, name, nlen, value.data != NULL ? value.data : "");
			name = NULL;
			strbuf_reset(&value);
			if ((colon = memchr(p, ':', (size_t)(le - p))) != NULL && colon > p) {
				const char *v = colon + 1;

				name = p;
				for (nlen = (size_t)(colon - p); nlen > 0 && is_wsp(p[nlen - 1]); nlen--)
					;
				while (v < le && is_wsp(*v))
					v++;
				strbuf_append(&value, v, (size_t)(le - v));
			}
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (name != NULL && x->nheaders < HEADERS_MAX)
		header_add(x, name, nlen, value.data != NULL ? value.data : "");
	strbuf_free(&value);
}

/* "http://user@Host.Example:80/x" -> "host.example"; NULL when there is no host. */
static char *url_host(const char *url)
{
	const char *p = strstr(url, "://"), *end;
	char *host;

	if (p == NULL)
		return NULL;
	p += 3;
	end = p + strcspn(p, "/?#");
	for (const char *at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (close != NULL)
			end = close + 1;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon != NULL)
			end = colon;
	}
	if (end == p)
		return NULL;
	host = xstrndup(p, (size_t)(end - p));
	for (char *h = host; *h; h++)
		*h = (char)fold((unsigned char)*h);
	return host;
}

static bool is_body_part(const struct mime_part *p)
{
	return p->text != NULL && !p->is_attachment;
}

static void gather_slot(struct match_ctx *x, const struct field_slot *slot, struct strings *st)
{
	const struct mime_message *m = x->m;

	switch (slot->field) {
	case FIELD_SUBJECT:
	case FIELD_FROM:
	case FIELD_TO: {
		const char *s = slot->field == FIELD_SUBJECT ? m->subject : slot->field == FIELD_FROM ? m->from : m->to;

		if (s != NULL)
			strings_add(st, s, strlen(s));
		break;
	}
	case FIELD_HEADER:
		for (size_t i = 0; i < x->nheaders; i++)
			if (strcasecmp(x->headers[i].name, slot->header) == 0)
				strings_add(st, x->headers[i].value, strlen(x->headers[i].value));
		break;
	case FIELD_BODY:
		for (size_t i = 0; i < m->nparts; i++) {
			const struct mime_part *p = &m->parts[i];

			if (!is_body_part(p))
				continue;
			if (p->html != NULL)
				strings_add(st, p->html->text, p->html->text_len);
			else
				strings_add(st, p->text, p->text_len);
		}
		break;
	case FIELD_HTML_LINK:
		for (size_t i = 0; i < m->nparts; i++) {
			const struct html_doc *h = m->parts[i].html;

			for (size_t j = 0; h != NULL && j < h->nlinks; j++) {
				char *host = url_host(h->links[j].url);

				strings_add(st, h->links[j].url, strlen(h->links[j].url));
				if (host == NULL)
					continue;
				x->owned = xreallocarray(x->owned, x->nowned + 1, sizeof(*x->owned));
				x->owned[x->nowned++] = host;
				strings_add(st, host, strlen(host));
			}
		}
		break;
	default:
		panic("rules: field %d has no slot", slot->field);
	}
}

static bool word_char(unsigned char c)
{
	return is_alnum(c) || c == '_' || c >= 0x80;
}

/* A prefilter hit: confirm the whole phrase and its word edges. */
static void on_literal(void *arg, unsigned id, size_t end)
{
	struct match_ctx *x = arg;
	const struct literal *lit = &x->r->literals[id];
	const unsigned char *v = (const unsigned char *)x->scan_value;
	size_t start = end - lit->prefix_len;

	if (x->hits[id])
		return;
	if (lit->full != NULL) {
		if (start + lit->full_len > x->scan_len)
			return;
		for (size_t i = lit->prefix_len; i < lit->full_len; i++)
			if (fold(v[start + i]) != (unsigned char)lit->full[i])
				return;
		if (lit->word && ((start > 0 && word_char(v[start - 1])) ||
				  (start + lit->full_len < x->scan_len && word_char(v[start + lit->full_len]))))
			return;
	}
	x->hits[id] = 1;
}

static void prefilter(struct match_ctx *x)
{
	for (size_t i = 0; i < x->r->nslots; i++) {
		const struct strings *st = &x->slot_values[i];

		for (size_t j = 0; j < st->n; j++) {
			x->scan_value = st->s[j];
			x->scan_len = st->len[j];
			litset_scan(x->r->slots[i].lits, st->s[j], st->len[j], on_literal, x);
		}
	}
}

/* Up to EXCERPT_MAX bytes, cut on a UTF-8 boundary, control bytes blanked. */
static void excerpt(char *out, size_t outlen, const char *s, size_t len)
{
	size_t n = len;

	if (n > EXCERPT_MAX) {
		n = EXCERPT_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	snprintf(out, outlen, "%.*s%s", (int)n, s, n < len ? "..." : "");
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < ' ' || *c == 0x7f)
			*c = ' ';
}

static void note_set(struct note *note, const struct rule_node *n, const char *s, size_t len, int part)
{
	if (note == NULL || note->set)
		return;
	note->set = true;
	note->part = part;
	snprintf(note->what, sizeof(note->what), "%s%s%s", rules_field_name(n->field), n->header ? " " : "",
		 n->header ? n->header : "");
	excerpt(note->excerpt, sizeof(note->excerpt), s, len);
}

static bool regex_hit(const struct match_ctx *x, const struct rule_value *v, const char *s, size_t len,
		      PCRE2_SIZE *from, PCRE2_SIZE *to)
{
	PCRE2_SIZE *ov;

	if (pcre2_match(v->re, (PCRE2_SPTR)s, len, 0, 0, x->md, x->r->mctx) < 0)
		return false;
	ov = pcre2_get_ovector_pointer(x->md);
	*from = ov[0];
	*to = ov[1] >= ov[0] ? ov[1] : ov[0];
	return true;
}

static bool eval_text(struct match_ctx *x, const struct rule_node *n, struct note *note)
{
	const struct strings *st = &x->slot_values[n->slot];

	for (size_t i = 0; i < n->nvalues; i++) {
		const struct rule_value *v = &n->values[i];
		PCRE2_SIZE from, to;

		if (v->lit >= 0 && !x->hits[v->lit])
			continue;
		if (!v->is_regex) {
			note_set(note, n, v->text, v->len, -1);
			return true;
		}
		for (size_t j = 0; j < st->n; j++) {
			if (regex_hit(x, v, st->s[j], st->len[j], &from, &to)) {
				note_set(note, n, st->s[j] + from, to - from, -1);
				return true;
			}
		}
	}
	return false;
}

/* Leaves the message carries as files: named or typed non-text bodies. */
static bool is_attachment(const struct mime_part *p)
{
	return p->body != NULL && (p->is_attachment || p->filename != NULL ||
				   (p->type != NULL && strcmp(p->type, "text") != 0));
}

static bool name_hit(const struct match_ctx *x, const struct rule_value *v, const char *name)
{
	const char *base = name + strlen(name);
	PCRE2_SIZE from, to;

	while (base > name && base[-1] != '/' && base[-1] != '\\')
		base--;
	if (v->is_regex)
		return regex_hit(x, v, name, strlen(name), &from, &to);
	return fnmatch(v->text, name, FNM_CASEFOLD) == 0 || (base != name && fnmatch(v->text, base, FNM_CASEFOLD) == 0);
}

static bool filetype_hit(const struct filetype *ft, const struct mime_part *p)
{
	for (size_t i = 0; i < ft->nsigs; i++) {
		const struct magic_sig *sig = &ft->sigs[i];

		if (sig->offset <= p->body_len && sig->len <= p->body_len - sig->offset &&
		    memcmp(p->body + sig->offset, sig->bytes, sig->len) == 0)
			return true;
	}
	return false;
}

/* libmagic's type; the declared one when libmagic could not type the part. */
static bool type_hit(const struct match_ctx *x, const struct rule_value *v, const struct mime_part *p,
		     const char **shown)
{
	char declared[256];
	const char *type = p->magic_type;
	PCRE2_SIZE from, to;

	if (v->filetype >= 0) {
		*shown = x->r->filetypes[v->filetype].name;
		return filetype_hit(&x->r->filetypes[v->filetype], p);
	}
	if (type == NULL) {
		snprintf(declared, sizeof(declared), "%s/%s", p->type ? p->type : "application",
			 p->subtype ? p->subtype : "octet-stream");
		type = declared;
	}
	*shown = v->text;
	if (v->is_regex)
		return regex_hit(x, v, type, strlen(type), &from, &to);
	return fnmatch(v->text, type, FNM_CASEFOLD) == 0;
}

static bool size_hit(enum rule_cmp cmp, uint64_t have, uint64_t want)
{
	switch (cmp) {
	case CMP_LT: return have < want;
	case CMP_LE: return have <= want;
	case CMP_GT: return have > want;
	case CMP_GE: return have >= want;
	}
	return false;
}

static bool eval_attachments(struct match_ctx *x, const struct rule_node *n, struct note *note)
{
	for (size_t i = 0; i < x->m->nparts; i++) {
		const struct mime_part *p = &x->m->parts[i];
		const char *shown = NULL;
		char size[32];

		if (n->field == FIELD_ATTACHMENT_NAME && p->filename == NULL)
			continue;
		if (n->field != FIELD_ATTACHMENT_NAME && !is_attachment(p))
			continue;
		if (n->field == FIELD_ATTACHMENT_SIZE) {
			if (!size_hit(n->cmp, p->body_len, n->size))
				continue;
			snprintf(size, sizeof(size), "%zu bytes", p->body_len);
			note_set(note, n, size, strlen(size), (int)i);
			return true;
		}
		for (size_t j = 0; j < n->nvalues; j++) {
			const struct rule_value *v = &n->values[j];
			bool hit = n->field == FIELD_ATTACHMENT_NAME ? name_hit(x, v, p->filename) : type_hit(x, v, p, &shown);

			if (hit) {
				shown = n->field == FIELD_ATTACHMENT_NAME ? p->filename : shown;
				note_set(note, n, shown, strlen(shown), (int)i);
				return true;
			}
		}
	}
	return false;
}

static bool eval_node(struct match_ctx *x, const struct rule_node *n, struct note *note);

/*
 * all/any: a kid's note only counts once the group is true, so a failed
 * all inside an any does not leave the reason pointing at a half match.
 */
static bool eval_group(struct match_ctx *x, const struct rule_node *n, struct note *note)
{
	struct note local = { 0 };
	bool all = n->kind == NODE_ALL, result = all;

	for (size_t i = 0; i < n->nkids && result == all; i++) {
		if (!all)
			local.set = false;
		result = eval_node(x, n->kids[i], note != NULL ? &local : NULL);
	}
	if (result && note != NULL && !note->set && local.set)
		*note = local;
	return result;
}

static bool eval_node(struct match_ctx *x, const struct rule_node *n, struct note *note)
{
	char size[32];

	switch (n->kind) {
	case NODE_NOT:
		return !eval_node(x, n->kids[0], NULL);
	case NODE_ALL:
	case NODE_ANY:
		return eval_group(x, n, note);
	case NODE_MATCH:
		break;
	}
	if (n->slot >= 0)
		return eval_text(x, n, note);
	if (n->field != FIELD_MESSAGE_SIZE)
		return eval_attachments(x, n, note);
	if (!size_hit(n->cmp, x->raw_len, n->size))
		return false;
	snprintf(size, sizeof(size), "%zu bytes", x->raw_len);
	note_set(note, n, size, strlen(size), -1);
	return true;
}

static void add_result(const struct rule *rule, const struct note *note, struct engine_results *out)
{
	struct engine_result *res = engine_results_add(out, "rules", rule->symbol);

	res->score = rule->has_score ? rule->score : 0.0;
	res->category = rule->category;
	res->action = rule->action;
	res->part_index = note->set ? note->part : -1;
	if (note->set)
		snprintf(res->reason, sizeof(res->reason), "rule %s: matched %s %s", rule->name, note->what,
			 note->excerpt);
	else
		snprintf(res->reason, sizeof(res->reason), "rule %s: matched (negated condition)", rule->name);
	if (rule->reply != NULL)
		snprintf(res->reply, sizeof(res->reply), "%s", rule->reply);
}

static void match_ctx_free(struct match_ctx *x)
{
	for (size_t i = 0; i < x->nheaders; i++) {
		free(x->headers[i].name);
		free(x->headers[i].value);
	}
	free(x->headers);
	for (size_t i = 0; i < x->nowned; i++)
		free(x->owned[i]);
	free(x->owned);
	for (size_t i = 0; i < x->r->nslots; i++) {
		free(x->slot_values[i].s);
		free(x->slot_values[i].len);
	}
	free(x->slot_values);
	free(x->hits);
	pcre2_match_data_free(x->md);
}

void rules_match(const struct rules *r, const struct mime_message *m, const unsigned char *raw,
		 size_t raw_len, struct engine_results *out)
{
	struct match_ctx x = { .r = r, .m = m, .raw = raw, .raw_len = raw_len };
	bool want_headers = false;

	if (r->nrules == 0)
		return;
	x.md = pcre2_match_data_create(1, NULL);
	if (x.md == NULL)
		panic("out of memory for PCRE2 match data");
	x.slot_values = xcalloc(r->nslots ? r->nslots : 1, sizeof(*x.slot_values));
	x.hits = xcalloc(r->nliterals ? r->nliterals : 1, 1);
	for (size_t i = 0; i < r->nslots; i++)
		want_headers |= r->slots[i].field == FIELD_HEADER;
	if (want_headers && raw != NULL)
		collect_headers(&x);
	for (size_t i = 0; i < r->nslots; i++)
		gather_slot(&x, &r->slots[i], &x.slot_values[i]);
	prefilter(&x);
	for (size_t i = 0; i < r->nrules; i++) {
		struct note note = { 0 };

		if (eval_node(&x, r->rules[i].cond, &note))
			add_result(&r->rules[i], &note, out);
	}
	match_ctx_free(&x);
}
