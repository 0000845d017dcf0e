/*
 * The rule file: lexer, parser, and the two printers (export, overview).
 * The parser builds struct rules (content/rules_int.h) and hands it to
 * rules_compile; every error names file:line:column so an administrator
 * can fix the file without guessing.
 */
#include "content/rules.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "content/litset.h"
#include "content/rules_int.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define RULES_MAX_FILETYPE_NAME 63
#define RULES_MAX_MAGIC         256        /* bytes of one magic signature */
#define RULES_MAX_MAGIC_OFFSET  ((uint64_t)64 * 1024 * 1024)
#define RULES_MAX_SIZE          ((uint64_t)1 << 50)
#define RULES_MAX_SCORE         10000.0
#define RULES_MAX_REPLY         200
#define OVERVIEW_MATCH_WIDTH    72

enum tok_kind { TOK_EOF, TOK_NL, TOK_LBRACE, TOK_RBRACE, TOK_WORD, TOK_STRING, TOK_REGEX };

struct token {
	enum tok_kind kind;
	char *text;              /* WORD, STRING, REGEX: NUL-terminated, owned */
	size_t len;
	char flags[8];           /* letters after a string's or regex's closing delimiter */
	unsigned line, col;
};

struct parser {
	const char *name;
	const char *src;
	size_t len, pos;
	unsigned line, col;
	struct token tok;        /* the lookahead */
	char *err;
	size_t errlen;
	bool failed;
	struct rules *r;
};

static const struct {
	enum rule_field field;
	const char *name;
} field_names[] = {
	{ FIELD_HEADER, "header" },
	{ FIELD_SUBJECT, "subject" },
	{ FIELD_FROM, "from" },
	{ FIELD_TO, "to" },
	{ FIELD_BODY, "body" },
	{ FIELD_HTML_LINK, "html-link" },
	{ FIELD_ATTACHMENT_NAME, "attachment-name" },
	{ FIELD_ATTACHMENT_TYPE, "attachment-type" },
	{ FIELD_ATTACHMENT_SIZE, "attachment-size" },
	{ FIELD_MESSAGE_SIZE, "message-size" },
};

static const struct {
	enum content_action action;
	const char *name;
} action_names[] = {
	{ CONTENT_REJECT, "reject" },
	{ CONTENT_DEFER, "defer" },
	{ CONTENT_QUARANTINE, "quarantine" },
	{ CONTENT_DROP, "drop" },
	{ CONTENT_TAG, "tag" },
};

static const struct {
	enum content_category category;
	const char *name;
} category_names[] = {
	{ CATEGORY_VIRUS, "virus" },
	{ CATEGORY_SPAM, "spam" },
	{ CATEGORY_RULE, "rule" },
	{ CATEGORY_DYNAMIC, "dynamic" },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *rules_field_name(enum rule_field f)
{
	for (size_t i = 0; i < NELEM(field_names); i++)
		if (field_names[i].field == f)
			return field_names[i].name;
	return "?";
}

bool rules_field_is_text(enum rule_field f)
{
	return f == FIELD_HEADER || f == FIELD_SUBJECT || f == FIELD_FROM || f == FIELD_TO ||
	       f == FIELD_BODY || f == FIELD_HTML_LINK;
}

static const char *action_name(enum content_action a)
{
	for (size_t i = 0; i < NELEM(action_names); i++)
		if (action_names[i].action == a)
			return action_names[i].name;
	return "none";
}

static const char *category_name(enum content_category c)
{
	for (size_t i = 0; i < NELEM(category_names); i++)
		if (category_names[i].category == c)
			return category_names[i].name;
	return "rule";
}

/* Only the first error counts: later ones are usually its consequences. */
__attribute__((format(printf, 4, 5)))
static void parse_error(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (p->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%u:%u: %s", p->name, line, col, why);
	p->failed = true;
}

static int peekc(const struct parser *p, size_t ahead)
{
	return p->pos + ahead < p->len ? (unsigned char)p->src[p->pos + ahead] : -1;
}

static void advance(struct parser *p)
{
	if (p->src[p->pos++] == '\n') {
		p->line++;
		p->col = 1;
	} else {
		p->col++;
	}
}

static void token_clear(struct token *t)
{
	free(t->text);
	memset(t, 0, sizeof(*t));
}

/* Skip blanks, comments and backslash-newline continuations. */
static void skip_blanks(struct parser *p)
{
	for (;;) {
		int c = peekc(p, 0);

		if (c == ' ' || c == '\t' || c == '\r') {
			advance(p);
		} else if (c == '\\' && (peekc(p, 1) == '\n' || (peekc(p, 1) == '\r' && peekc(p, 2) == '\n'))) {
			while (peekc(p, 0) != '\n')
				advance(p);
			advance(p);
		} else if (c == '#') {
			while (peekc(p, 0) != -1 && peekc(p, 0) != '\n')
				advance(p);
		} else {
			return;
		}
	}
}

static void lex_flags(struct parser *p, const char *allowed, const char *what)
{
	size_t n = 0;

	while (peekc(p, 0) >= 'a' && peekc(p, 0) <= 'z') {
		char c = (char)peekc(p, 0);

		if (strchr(allowed, c) == NULL || memchr(p->tok.flags, c, n) != NULL) {
			parse_error(p, p->line, p->col, "%s flag '%c' %s (allowed: %s)", what, c,
				    strchr(allowed, c) == NULL ? "unknown" : "repeated", allowed);
			return;
		}
		p->tok.flags[n++] = c;
		advance(p);
	}
}

/* A quoted string ("\"" and "\\" escapes) or a /regex/ kept as written. */
static void lex_delimited(struct parser *p, char delim, size_t max)
{
	struct strbuf sb;
	const char *what = delim == '"' ? "string" : "regex";

	strbuf_init(&sb, max);
	advance(p);
	while (!p->failed) {
		int c = peekc(p, 0);

		if (c == delim) {
			advance(p);
			break;
		}
		if (c == '\\') {
			int e = peekc(p, 1);

			if (delim == '"' && e != '"' && e != '\\' && e != -1 && e != '\n') {
				parse_error(p, p->line, p->col, "unknown escape in string (only \\\" and \\\\)");
				break;
			}
			if (e != -1 && e != '\n' && e != 0) {
				if (delim != '"' && strbuf_append(&sb, "\\", 1) < 0)
					goto too_long;
				advance(p);
			}
			c = e;
		}
		if (c == -1 || c == '\n') {
			parse_error(p, p->tok.line, p->tok.col, "unterminated %s", what);
			break;
		}
		if (c == 0) {
			parse_error(p, p->line, p->col, "NUL byte in %s", what);
			break;
		}
		if (strbuf_append(&sb, &(char){ (char)c }, 1) < 0)
			goto too_long;
		advance(p);
	}
	if (!p->failed && sb.len == 0)
		parse_error(p, p->tok.line, p->tok.col, "empty %s", what);
	if (!p->failed)
		lex_flags(p, delim == '"' ? "w" : "imsx", what);
	p->tok.kind = delim == '"' ? TOK_STRING : TOK_REGEX;
	p->tok.text = strbuf_detach(&sb, &p->tok.len);
	return;
too_long:
	parse_error(p, p->tok.line, p->tok.col, "%s longer than %zu bytes", what, max);
	p->tok.kind = TOK_EOF;
	strbuf_free(&sb);
}

static bool word_byte(int c)
{
	return c > ' ' && c != '{' && c != '}' && c != '"' && c != '#' && c != 0x7f;
}

static void lex_word(struct parser *p)
{
	size_t start = p->pos;

	while (word_byte(peekc(p, 0)))
		advance(p);
	if (p->pos - start > RULES_MAX_STRING) {
		parse_error(p, p->tok.line, p->tok.col, "word longer than %d bytes", RULES_MAX_STRING);
		p->tok.kind = TOK_EOF;
		return;
	}
	p->tok.kind = TOK_WORD;
	p->tok.text = xstrndup(p->src + start, p->pos - start);
	p->tok.len = p->pos - start;
}

/* Replace the lookahead with the next token; TOK_EOF after an error. */
static void next_token(struct parser *p)
{
	int c;

	token_clear(&p->tok);
	if (p->failed)
		return;
	skip_blanks(p);
	p->tok.line = p->line;
	p->tok.col = p->col;
	c = peekc(p, 0);
	if (c == -1) {
		p->tok.kind = TOK_EOF;
	} else if (c == '\n') {
		p->tok.kind = TOK_NL;
		advance(p);
	} else if (c == '{' || c == '}') {
		p->tok.kind = c == '{' ? TOK_LBRACE : TOK_RBRACE;
		advance(p);
	} else if (c == '"') {
		lex_delimited(p, '"', RULES_MAX_STRING);
	} else if (c == '/') {
		lex_delimited(p, '/', RULES_MAX_REGEX);
	} else if (word_byte(c)) {
		lex_word(p);
	} else {
		parse_error(p, p->line, p->col, "unexpected character 0x%02x", (unsigned)c);
	}
	if (p->failed)
		token_clear(&p->tok);
}

static const char *tok_desc(const struct token *t)
{
	switch (t->kind) {
	case TOK_EOF: return "end of file";
	case TOK_NL: return "end of line";
	case TOK_LBRACE: return "'{'";
	case TOK_RBRACE: return "'}'";
	case TOK_WORD: return "a word";
	case TOK_STRING: return "a string";
	case TOK_REGEX: return "a regex";
	}
	return "?";
}

static bool tok_is_word(const struct parser *p, const char *w)
{
	return p->tok.kind == TOK_WORD && strcmp(p->tok.text, w) == 0;
}

static bool expect(struct parser *p, enum tok_kind kind, const char *what)
{
	if (p->failed)
		return false;
	if (p->tok.kind != kind) {
		parse_error(p, p->tok.line, p->tok.col, "expected %s, found %s", what, tok_desc(&p->tok));
		return false;
	}
	return true;
}

/* A statement ends at a newline, at a closing brace, or at the end of the file. */
static bool end_statement(struct parser *p)
{
	if (p->failed)
		return false;
	if (p->tok.kind == TOK_NL) {
		next_token(p);
		return true;
	}
	if (p->tok.kind == TOK_RBRACE || p->tok.kind == TOK_EOF)
		return true;
	parse_error(p, p->tok.line, p->tok.col, "expected end of line, found %s", tok_desc(&p->tok));
	return false;
}

static void skip_newlines(struct parser *p)
{
	while (!p->failed && p->tok.kind == TOK_NL)
		next_token(p);
}

static bool valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

/* "5M", "10k", "1024": k, M and G are powers of 1024. */
static bool parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *q = s;

	if (*q < '0' || *q > '9')
		return false;
	for (; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (uint64_t)(*q - '0');
		if (v > RULES_MAX_SIZE)
			return false;
	}
	if (*q == 'k' || *q == 'K')
		mult = 1024;
	else if (*q == 'm' || *q == 'M')
		mult = 1024 * 1024;
	else if (*q == 'g' || *q == 'G')
		mult = 1024 * 1024 * 1024;
	if (mult != 1)
		q++;
	if (*q != '\0' || v > RULES_MAX_SIZE / mult)
		return false;
	*out = v * mult;
	return true;
}

static size_t parse_cmp(const char *s, enum rule_cmp *cmp)
{
	if (s[0] == '<' || s[0] == '>') {
		bool eq = s[1] == '=';

		*cmp = s[0] == '<' ? (eq ? CMP_LE : CMP_LT) : (eq ? CMP_GE : CMP_GT);
		return eq ? 2 : 1;
	}
	return 0;
}

static struct rule_node *node_new(enum rule_node_kind kind, unsigned line, unsigned col)
{
	struct rule_node *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	n->line = line;
	n->col = col;
	n->slot = -1;
	return n;
}

static void node_add_kid(struct rule_node *n, struct rule_node *kid)
{
	n->kids = xreallocarray(n->kids, n->nkids + 1, sizeof(*n->kids));
	n->kids[n->nkids++] = kid;
}

static bool parse_size_match(struct parser *p, struct rule_node *n)
{
	unsigned line = p->tok.line, col = p->tok.col;
	const char *num;
	size_t oplen;

	if (!expect(p, TOK_WORD, "a comparison such as > 5M"))
		return false;
	oplen = parse_cmp(p->tok.text, &n->cmp);
	if (oplen == 0) {
		parse_error(p, line, col, "expected < <= > or >= before the size");
		return false;
	}
	if (p->tok.text[oplen] == '\0') {
		next_token(p);
		if (!expect(p, TOK_WORD, "a size such as 5M"))
			return false;
		line = p->tok.line;
		col = p->tok.col;
		num = p->tok.text;
	} else {
		num = p->tok.text + oplen;
	}
	if (!parse_size(num, &n->size)) {
		parse_error(p, line, col, "bad size '%s' (digits with an optional k, M or G suffix)", num);
		return false;
	}
	next_token(p);
	return true;
}

static bool parse_values(struct parser *p, struct rule_node *n)
{
	while (!p->failed && (p->tok.kind == TOK_WORD || p->tok.kind == TOK_STRING || p->tok.kind == TOK_REGEX)) {
		struct rule_value *v;

		if (n->nvalues == RULES_MAX_VALUES) {
			parse_error(p, p->tok.line, p->tok.col, "more than %d values", RULES_MAX_VALUES);
			return false;
		}
		if (p->tok.kind != TOK_REGEX && memchr(p->tok.flags, 'w', sizeof(p->tok.flags)) != NULL &&
		    !rules_field_is_text(n->field)) {
			parse_error(p, p->tok.line, p->tok.col, "the w flag (whole words) is for text fields only");
			return false;
		}
		n->values = xreallocarray(n->values, n->nvalues + 1, sizeof(*n->values));
		v = &n->values[n->nvalues++];
		memset(v, 0, sizeof(*v));
		v->is_regex = p->tok.kind == TOK_REGEX;
		v->text = p->tok.text;
		v->len = p->tok.len;
		p->tok.text = NULL;
		v->line = p->tok.line;
		v->col = p->tok.col;
		v->lit = -1;
		v->filetype = -1;
		v->word = !v->is_regex && strchr(p->tok.flags, 'w') != NULL;
		if (v->is_regex)
			for (const char *f = p->tok.flags; *f; f++)
				v->rx_flags |= *f == 'i' ? RX_CASELESS : *f == 'm' ? RX_MULTILINE :
					       *f == 's' ? RX_DOTALL : RX_EXTENDED;
		next_token(p);
	}
	if (!p->failed && n->nvalues == 0)
		parse_error(p, p->tok.line, p->tok.col, "expected a value (\"phrase\", /regex/ or word), found %s",
			    tok_desc(&p->tok));
	return !p->failed;
}

static bool valid_header_name(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == ':')
			return false;
	return true;
}

/* match FIELD [HEADER] VALUE... | match SIZE-FIELD OP N */
static struct rule_node *parse_match(struct parser *p, unsigned line, unsigned col)
{
	struct rule_node *n = node_new(NODE_MATCH, line, col);
	size_t i;

	if (!expect(p, TOK_WORD, "a field (subject, body, header NAME, ...)"))
		goto fail;
	for (i = 0; i < NELEM(field_names); i++)
		if (strcmp(p->tok.text, field_names[i].name) == 0)
			break;
	if (i == NELEM(field_names)) {
		parse_error(p, p->tok.line, p->tok.col, "unknown field '%s' (header, subject, from, to, body, "
			    "html-link, attachment-name, attachment-type, attachment-size, message-size)", p->tok.text);
		goto fail;
	}
	n->field = field_names[i].field;
	next_token(p);
	if (n->field == FIELD_HEADER) {
		if (!expect(p, TOK_WORD, "a header name"))
			goto fail;
		if (!valid_header_name(p->tok.text)) {
			parse_error(p, p->tok.line, p->tok.col, "invalid header name '%s'", p->tok.text);
			goto fail;
		}
		n->header = p->tok.text;
		p->tok.text = NULL;
		next_token(p);
	}
	if (n->field == FIELD_ATTACHMENT_SIZE || n->field == FIELD_MESSAGE_SIZE ? parse_size_match(p, n)
										  : parse_values(p, n))
		return n;
fail:
	rules_node_free(n);
	return NULL;
}

static struct rule_node *parse_condition(struct parser *p, unsigned depth);

/* The conditions of a block up to its closing brace (consumed). */
static bool parse_block(struct parser *p, struct rule_node *group, unsigned depth)
{
	if (!expect(p, TOK_LBRACE, "'{'"))
		return false;
	next_token(p);
	for (;;) {
		struct rule_node *kid;

		skip_newlines(p);
		if (p->failed)
			return false;
		if (p->tok.kind == TOK_RBRACE)
			break;
		if ((kid = parse_condition(p, depth)) == NULL)
			return false;
		node_add_kid(group, kid);
		if (!end_statement(p))
			return false;
	}
	if (group->nkids == 0) {
		parse_error(p, group->line, group->col, "empty %s block", group->kind == NODE_ALL ? "all" : "any");
		return false;
	}
	next_token(p);
	return true;
}

static struct rule_node *parse_condition(struct parser *p, unsigned depth)
{
	unsigned line = p->tok.line, col = p->tok.col;
	struct rule_node *n;

	if (depth > RULES_MAX_DEPTH) {
		parse_error(p, line, col, "conditions nested deeper than %d", RULES_MAX_DEPTH);
		return NULL;
	}
	if (tok_is_word(p, "match")) {
		next_token(p);
		return parse_match(p, line, col);
	}
	if (tok_is_word(p, "all") || tok_is_word(p, "any")) {
		n = node_new(tok_is_word(p, "all") ? NODE_ALL : NODE_ANY, line, col);
		next_token(p);
		if (parse_block(p, n, depth + 1))
			return n;
		rules_node_free(n);
		return NULL;
	}
	if (tok_is_word(p, "not")) {
		struct rule_node *kid;

		next_token(p);
		if ((kid = parse_condition(p, depth + 1)) == NULL)
			return NULL;
		n = node_new(NODE_NOT, line, col);
		node_add_kid(n, kid);
		return n;
	}
	parse_error(p, line, col, "expected a condition (match, all, any, not), found %s%s%s",
		    tok_desc(&p->tok), p->tok.kind == TOK_WORD ? " " : "",
		    p->tok.kind == TOK_WORD ? p->tok.text : "");
	return NULL;
}

static bool valid_reply(const char *s, enum content_action a)
{
	size_t n = strlen(s);

	if (n > RULES_MAX_REPLY)
		return false;
	for (const char *q = s; *q; q++)
		if (*q < ' ' || *q > '~')
			return false;
	if (n >= 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9')
		return (s[3] == '\0' || s[3] == ' ') && s[0] == (a == CONTENT_REJECT ? '5' : '4');
	return true;
}

static bool parse_action(struct parser *p, struct rule *rule, unsigned line, unsigned col)
{
	size_t i;

	if (rule->action != CONTENT_NONE) {
		parse_error(p, line, col, "rule %s: second 'action'", rule->name);
		return false;
	}
	if (!expect(p, TOK_WORD, "an action (reject, defer, quarantine, drop, tag)"))
		return false;
	for (i = 0; i < NELEM(action_names); i++)
		if (strcmp(p->tok.text, action_names[i].name) == 0)
			break;
	if (i == NELEM(action_names)) {
		parse_error(p, p->tok.line, p->tok.col, "unknown action '%s' (reject, defer, quarantine, drop, tag)",
			    p->tok.text);
		return false;
	}
	rule->action = action_names[i].action;
	next_token(p);
	if (p->tok.kind != TOK_STRING)
		return true;
	if (rule->action != CONTENT_REJECT && rule->action != CONTENT_DEFER) {
		parse_error(p, p->tok.line, p->tok.col, "a reply text is for reject and defer only");
		return false;
	}
	if (!valid_reply(p->tok.text, rule->action) || p->tok.flags[0] != '\0') {
		parse_error(p, p->tok.line, p->tok.col, "bad reply text: printable ASCII, at most %d bytes, "
			    "and a code if any must be %s", RULES_MAX_REPLY,
			    rule->action == CONTENT_REJECT ? "5xx" : "4xx");
		return false;
	}
	rule->reply = p->tok.text;
	p->tok.text = NULL;
	next_token(p);
	return true;
}

static bool parse_score(struct parser *p, struct rule *rule, unsigned line, unsigned col)
{
	char *end;

	if (rule->has_score) {
		parse_error(p, line, col, "rule %s: second 'score'", rule->name);
		return false;
	}
	if (!expect(p, TOK_WORD, "a number"))
		return false;
	errno = 0;
	rule->score = strtod(p->tok.text, &end);
	if (*end != '\0' || errno != 0 || !isfinite(rule->score) || fabs(rule->score) > RULES_MAX_SCORE ||
	    !((p->tok.text[0] >= '0' && p->tok.text[0] <= '9') || p->tok.text[0] == '-' || p->tok.text[0] == '+')) {
		parse_error(p, p->tok.line, p->tok.col, "bad score '%s' (a number from -%g to %g)", p->tok.text,
			    RULES_MAX_SCORE, RULES_MAX_SCORE);
		return false;
	}
	rule->has_score = true;
	next_token(p);
	return true;
}

static bool parse_category(struct parser *p, struct rule *rule, bool *seen, unsigned line, unsigned col)
{
	if (*seen) {
		parse_error(p, line, col, "rule %s: second 'category'", rule->name);
		return false;
	}
	*seen = true;
	if (!expect(p, TOK_WORD, "a category (virus, spam, rule, dynamic)"))
		return false;
	for (size_t i = 0; i < NELEM(category_names); i++) {
		if (strcmp(p->tok.text, category_names[i].name) == 0) {
			rule->category = category_names[i].category;
			next_token(p);
			return true;
		}
	}
	parse_error(p, p->tok.line, p->tok.col, "unknown category '%s' (virus, spam, rule, dynamic)", p->tok.text);
	return false;
}

/* One line of a rule body: a property, or a condition for the rule's implicit all. */
static bool parse_rule_statement(struct parser *p, struct rule *rule, bool *seen_category)
{
	unsigned line = p->tok.line, col = p->tok.col;
	struct rule_node *n;

	if (tok_is_word(p, "category")) {
		next_token(p);
		return parse_category(p, rule, seen_category, line, col);
	}
	if (tok_is_word(p, "description")) {
		if (rule->description != NULL) {
			parse_error(p, line, col, "rule %s: second 'description'", rule->name);
			return false;
		}
		next_token(p);
		if (!expect(p, TOK_STRING, "a quoted description"))
			return false;
		rule->description = p->tok.text;
		p->tok.text = NULL;
		next_token(p);
		return true;
	}
	if (tok_is_word(p, "action")) {
		next_token(p);
		return parse_action(p, rule, line, col);
	}
	if (tok_is_word(p, "score")) {
		next_token(p);
		return parse_score(p, rule, line, col);
	}
	if ((n = parse_condition(p, 1)) == NULL)
		return false;
	node_add_kid(rule->cond, n);
	return true;
}

static bool rule_name_taken(const struct rules *r, const char *name)
{
	for (size_t i = 0; i < r->nrules; i++)
		if (strcmp(r->rules[i].name, name) == 0)
			return true;
	return false;
}

/* rule NAME { ... } — the rule is added to the set before its body is parsed, so errors free it too. */
static void parse_rule(struct parser *p)
{
	unsigned line = p->tok.line;
	bool seen_category = false;
	struct rule *rule;

	next_token(p);
	if (!expect(p, TOK_WORD, "a rule name"))
		return;
	if (!valid_name(p->tok.text, RULES_MAX_NAME)) {
		parse_error(p, p->tok.line, p->tok.col, "bad rule name '%s' (letters, digits, _ and -, at most %d)",
			    p->tok.text, RULES_MAX_NAME);
		return;
	}
	if (rule_name_taken(p->r, p->tok.text)) {
		parse_error(p, p->tok.line, p->tok.col, "second rule named %s", p->tok.text);
		return;
	}
	if (p->r->nrules == RULES_MAX_RULES) {
		parse_error(p, p->tok.line, p->tok.col, "more than %d rules", RULES_MAX_RULES);
		return;
	}
	p->r->rules = xreallocarray(p->r->rules, p->r->nrules + 1, sizeof(*p->r->rules));
	rule = &p->r->rules[p->r->nrules++];
	memset(rule, 0, sizeof(*rule));
	rule->name = p->tok.text;
	p->tok.text = NULL;
	rule->line = line;
	rule->category = CATEGORY_RULE;
	rule->cond = node_new(NODE_ALL, line, 1);
	snprintf(rule->symbol, sizeof(rule->symbol), "RULE_%s", rule->name);
	next_token(p);
	if (!expect(p, TOK_LBRACE, "'{'"))
		return;
	next_token(p);
	for (;;) {
		skip_newlines(p);
		if (p->failed)
			return;
		if (p->tok.kind == TOK_RBRACE)
			break;
		if (p->tok.kind == TOK_EOF) {
			parse_error(p, p->tok.line, p->tok.col, "rule %s: missing '}'", rule->name);
			return;
		}
		if (!parse_rule_statement(p, rule, &seen_category) || !end_statement(p))
			return;
	}
	if (rule->cond->nkids == 0)
		parse_error(p, p->tok.line, p->tok.col, "rule %s has no condition (match, all, any, not)", rule->name);
	else if (rule->action == CONTENT_NONE && !rule->has_score)
		parse_error(p, p->tok.line, p->tok.col, "rule %s has neither an action nor a score", rule->name);
	next_token(p);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "4D 5A 90": hex digits, blanks allowed between bytes. */
static bool parse_hex(const char *s, struct magic_sig *sig)
{
	unsigned char buf[RULES_MAX_MAGIC];
	size_t n = 0;

	while (*s) {
		int hi, lo;

		if (*s == ' ') {
			s++;
			continue;
		}
		if (n == sizeof(buf) || (hi = hex_value(s[0])) < 0 || (lo = hex_value(s[1])) < 0)
			return false;
		buf[n++] = (unsigned char)(hi << 4 | lo);
		s += 2;
	}
	if (n == 0)
		return false;
	sig->bytes = xmalloc(n);
	memcpy(sig->bytes, buf, n);
	sig->len = n;
	return true;
}

static bool parse_magic(struct parser *p, struct filetype *ft)
{
	struct magic_sig sig = { 0 };

	next_token(p);
	if (!expect(p, TOK_STRING, "a quoted hex string such as \"4D5A\""))
		return false;
	if (p->tok.flags[0] != '\0' || !parse_hex(p->tok.text, &sig)) {
		parse_error(p, p->tok.line, p->tok.col, "bad magic: 1 to %d bytes in hex", RULES_MAX_MAGIC);
		return false;
	}
	next_token(p);
	if (tok_is_word(p, "at")) {
		next_token(p);
		if (!expect(p, TOK_WORD, "an offset") || !parse_size(p->tok.text, &sig.offset) ||
		    sig.offset > RULES_MAX_MAGIC_OFFSET) {
			parse_error(p, p->tok.line, p->tok.col, "bad offset (at most %llu)",
				    (unsigned long long)RULES_MAX_MAGIC_OFFSET);
			free(sig.bytes);
			return false;
		}
		next_token(p);
	}
	ft->sigs = xreallocarray(ft->sigs, ft->nsigs + 1, sizeof(*ft->sigs));
	ft->sigs[ft->nsigs++] = sig;
	return true;
}

/* filetype NAME { magic "HEX" [at N] ... } */
static void parse_filetype(struct parser *p)
{
	unsigned line = p->tok.line;
	struct filetype *ft;

	next_token(p);
	if (!expect(p, TOK_WORD, "a file type name"))
		return;
	if (!valid_name(p->tok.text, RULES_MAX_FILETYPE_NAME)) {
		parse_error(p, p->tok.line, p->tok.col, "bad file type name '%s'", p->tok.text);
		return;
	}
	for (size_t i = 0; i < p->r->nfiletypes; i++) {
		if (strcmp(p->r->filetypes[i].name, p->tok.text) == 0) {
			parse_error(p, p->tok.line, p->tok.col, "second file type named %s", p->tok.text);
			return;
		}
	}
	if (p->r->nfiletypes == RULES_MAX_FILETYPES) {
		parse_error(p, p->tok.line, p->tok.col, "more than %d file types", RULES_MAX_FILETYPES);
		return;
	}
	p->r->filetypes = xreallocarray(p->r->filetypes, p->r->nfiletypes + 1, sizeof(*p->r->filetypes));
	ft = &p->r->filetypes[p->r->nfiletypes++];
	memset(ft, 0, sizeof(*ft));
	ft->name = p->tok.text;
	ft->line = line;
	p->tok.text = NULL;
	next_token(p);
	if (!expect(p, TOK_LBRACE, "'{'"))
		return;
	next_token(p);
	for (;;) {
		skip_newlines(p);
		if (p->failed || p->tok.kind == TOK_RBRACE)
			break;
		if (!tok_is_word(p, "magic")) {
			parse_error(p, p->tok.line, p->tok.col, "expected 'magic' or '}', found %s", tok_desc(&p->tok));
			return;
		}
		if (!parse_magic(p, ft) || !end_statement(p))
			return;
	}
	if (!p->failed && ft->nsigs == 0)
		parse_error(p, p->tok.line, p->tok.col, "file type %s has no magic", ft->name);
	next_token(p);
}

static void parse_file(struct parser *p)
{
	next_token(p);
	for (;;) {
		skip_newlines(p);
		if (p->failed || p->tok.kind == TOK_EOF)
			return;
		if (tok_is_word(p, "rule"))
			parse_rule(p);
		else if (tok_is_word(p, "filetype"))
			parse_filetype(p);
		else
			parse_error(p, p->tok.line, p->tok.col, "expected 'rule' or 'filetype', found %s",
				    tok_desc(&p->tok));
		if (!p->failed && p->tok.kind != TOK_EOF && !end_statement(p))
			return;
	}
}

struct rules *rules_parse(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
	struct parser p = { .name = name, .src = text, .len = len, .line = 1, .col = 1, .err = err, .errlen = errlen };

	if (len > RULES_MAX_FILE) {
		snprintf(err, errlen, "%s: larger than %zu bytes", name, RULES_MAX_FILE);
		return NULL;
	}
	p.r = xcalloc(1, sizeof(*p.r));
	parse_file(&p);
	token_clear(&p.tok);
	if (!p.failed && rules_compile(p.r, name, err, errlen) < 0)
		p.failed = true;
	if (p.failed) {
		rules_free(p.r);
		return NULL;
	}
	return p.r;
}

struct rules *rules_load(const char *path, char *err, size_t errlen)
{
	struct strbuf sb;
	char buf[65536];
	struct rules *r;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	strbuf_init(&sb, RULES_MAX_FILE);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || strbuf_append(&sb, buf, (size_t)n) < 0) {
			snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "larger than 4 MiB");
			close(fd);
			strbuf_free(&sb);
			return NULL;
		}
	}
	close(fd);
	r = rules_parse(path, sb.data != NULL ? sb.data : "", sb.len, err, errlen);
	strbuf_free(&sb);
	return r;
}

size_t rules_count(const struct rules *r)
{
	return r->nrules;
}

void rules_free(struct rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nrules; i++) {
		free(r->rules[i].name);
		free(r->rules[i].description);
		free(r->rules[i].reply);
		rules_node_free(r->rules[i].cond);
	}
	free(r->rules);
	for (size_t i = 0; i < r->nfiletypes; i++) {
		for (size_t j = 0; j < r->filetypes[i].nsigs; j++)
			free(r->filetypes[i].sigs[j].bytes);
		free(r->filetypes[i].sigs);
		free(r->filetypes[i].name);
	}
	free(r->filetypes);
	for (size_t i = 0; i < r->nslots; i++)
		litset_free(r->slots[i].lits);
	free(r->slots);
	for (size_t i = 0; i < r->nliterals; i++)
		free(r->literals[i].full);
	free(r->literals);
	pcre2_match_context_free(r->mctx);
	free(r);
}

/* Quoted so that the lexer reads back exactly these bytes. */
static int append_quoted(struct strbuf *sb, const char *s)
{
	int rc = strbuf_append(sb, "\"", 1);

	for (; *s && rc == 0; s++)
		rc = *s == '"' || *s == '\\' ? strbuf_appendf(sb, "\\%c", *s) : strbuf_append(sb, s, 1);
	return rc == 0 ? strbuf_append(sb, "\"", 1) : -1;
}

static int append_value(struct strbuf *sb, const struct rule_value *v)
{
	if (!v->is_regex)
		return append_quoted(sb, v->text) == 0 && (!v->word || strbuf_appends(sb, "w") == 0) ? 0 : -1;
	return strbuf_appendf(sb, "/%s/%s%s%s%s", v->text, v->rx_flags & RX_CASELESS ? "i" : "",
			      v->rx_flags & RX_MULTILINE ? "m" : "", v->rx_flags & RX_DOTALL ? "s" : "",
			      v->rx_flags & RX_EXTENDED ? "x" : "");
}

static int append_size(struct strbuf *sb, uint64_t size)
{
	static const char suffix[] = "GMk";
	uint64_t unit = (uint64_t)1024 * 1024 * 1024;

	for (size_t i = 0; i < 3; i++, unit /= 1024)
		if (size != 0 && size % unit == 0)
			return strbuf_appendf(sb, "%llu%c", (unsigned long long)(size / unit), suffix[i]);
	return strbuf_appendf(sb, "%llu", (unsigned long long)size);
}

static const char *cmp_name(enum rule_cmp c)
{
	return c == CMP_LT ? "<" : c == CMP_LE ? "<=" : c == CMP_GT ? ">" : ">=";
}

/* "match FIELD [HEADER] values", shared by export and overview. */
static int append_match(struct strbuf *sb, const struct rule_node *n, const char *sep)
{
	int rc = strbuf_appendf(sb, "%s", rules_field_name(n->field));

	if (rc == 0 && n->header != NULL)
		rc = strbuf_appendf(sb, " %s", n->header);
	if (n->field == FIELD_ATTACHMENT_SIZE || n->field == FIELD_MESSAGE_SIZE)
		return rc == 0 && strbuf_appendf(sb, " %s ", cmp_name(n->cmp)) == 0 ? append_size(sb, n->size) : -1;
	for (size_t i = 0; i < n->nvalues && rc == 0; i++)
		rc = strbuf_appends(sb, i == 0 ? " " : sep) == 0 ? append_value(sb, &n->values[i]) : -1;
	return rc;
}

static int export_indent(struct strbuf *sb, unsigned depth)
{
	int rc = 0;

	for (unsigned i = 0; i < depth && rc == 0; i++)
		rc = strbuf_append(sb, "\t", 1);
	return rc;
}

/* One condition on its own line(s); `not` stays on the line of what it negates. */
static int export_node(struct strbuf *sb, const struct rule_node *n, unsigned depth, bool indent)
{
	int rc = indent ? export_indent(sb, depth) : 0;

	if (rc < 0)
		return -1;
	switch (n->kind) {
	case NODE_MATCH:
		return strbuf_appends(sb, "match ") == 0 && append_match(sb, n, " ") == 0 ? strbuf_appends(sb, "\n") : -1;
	case NODE_NOT:
		return strbuf_appends(sb, "not ") == 0 ? export_node(sb, n->kids[0], depth, false) : -1;
	case NODE_ALL:
	case NODE_ANY:
		rc = strbuf_appends(sb, n->kind == NODE_ALL ? "all {\n" : "any {\n");
		for (size_t i = 0; i < n->nkids && rc == 0; i++)
			rc = export_node(sb, n->kids[i], depth + 1, true);
		return rc == 0 && export_indent(sb, depth) == 0 ? strbuf_appends(sb, "}\n") : -1;
	}
	return -1;
}

static int export_score(struct strbuf *sb, double score)
{
	char buf[64];

	/* The shortest text strtod reads back as the same double. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, score);
		if (strtod(buf, NULL) == score)
			break;
	}
	return strbuf_appendf(sb, "\tscore %s\n", buf);
}

static int export_rule(struct strbuf *sb, const struct rule *rule)
{
	int rc = strbuf_appendf(sb, "rule %s {\n\tcategory %s\n", rule->name, category_name(rule->category));

	if (rc == 0 && rule->description != NULL)
		rc = strbuf_appends(sb, "\tdescription ") == 0 && append_quoted(sb, rule->description) == 0 ?
			     strbuf_appends(sb, "\n") : -1;
	for (size_t i = 0; i < rule->cond->nkids && rc == 0; i++)
		rc = export_node(sb, rule->cond->kids[i], 1, true);
	if (rc == 0 && rule->action != CONTENT_NONE) {
		rc = strbuf_appendf(sb, "\taction %s", action_name(rule->action));
		if (rc == 0 && rule->reply != NULL)
			rc = strbuf_appends(sb, " ") == 0 ? append_quoted(sb, rule->reply) : -1;
		if (rc == 0)
			rc = strbuf_appends(sb, "\n");
	}
	if (rc == 0 && rule->has_score)
		rc = export_score(sb, rule->score);
	return rc == 0 ? strbuf_appends(sb, "}\n") : -1;
}

int rules_export(const struct rules *r, struct strbuf *sb)
{
	int rc = 0;

	for (size_t i = 0; i < r->nfiletypes && rc == 0; i++) {
		const struct filetype *ft = &r->filetypes[i];

		rc = strbuf_appendf(sb, "filetype %s {\n", ft->name);
		for (size_t j = 0; j < ft->nsigs && rc == 0; j++) {
			rc = strbuf_appends(sb, "\tmagic \"");
			for (size_t k = 0; k < ft->sigs[j].len && rc == 0; k++)
				rc = strbuf_appendf(sb, "%02X", ft->sigs[j].bytes[k]);
			if (rc == 0)
				rc = strbuf_appendf(sb, "\" at %llu\n", (unsigned long long)ft->sigs[j].offset);
		}
		if (rc == 0)
			rc = strbuf_appends(sb, "}\n\n");
	}
	for (size_t i = 0; i < r->nrules && rc == 0; i++)
		rc = i > 0 && strbuf_appends(sb, "\n") < 0 ? -1 : export_rule(sb, &r->rules[i]);
	return rc;
}

/* One-line form of a condition for the overview table. */
static int overview_node(struct strbuf *sb, const struct rule_node *n)
{
	int rc;

	switch (n->kind) {
	case NODE_MATCH:
		return append_match(sb, n, "|");
	case NODE_NOT:
		return strbuf_appends(sb, "not ") == 0 ? overview_node(sb, n->kids[0]) : -1;
	case NODE_ALL:
	case NODE_ANY:
		rc = strbuf_appends(sb, n->kind == NODE_ALL ? "all(" : "any(");
		for (size_t i = 0; i < n->nkids && rc == 0; i++)
			rc = strbuf_appends(sb, i ? "; " : "") == 0 ? overview_node(sb, n->kids[i]) : -1;
		return rc == 0 ? strbuf_appends(sb, ")") : -1;
	}
	return -1;
}

static int overview_rule(struct strbuf *sb, const struct rule *rule)
{
	struct strbuf what, result;
	int rc;

	strbuf_init(&what, 64 * 1024);
	strbuf_init(&result, 256);
	rc = rule->cond->nkids == 1 ? overview_node(&what, rule->cond->kids[0]) : overview_node(&what, rule->cond);
	if (rc < 0 || what.len > OVERVIEW_MATCH_WIDTH) {
		what.len = OVERVIEW_MATCH_WIDTH - 3;
		what.data[what.len] = '\0';
		strbuf_appends(&what, "...");
	}
	if (rule->action != CONTENT_NONE)
		strbuf_appends(&result, action_name(rule->action));
	if (rule->has_score)
		strbuf_appendf(&result, "%sscore %g", rule->action != CONTENT_NONE ? ", " : "", rule->score);
	for (char *c = what.data; *c; c++)
		if ((unsigned char)*c < ' ' || *c == 0x7f)
			*c = '?';
	rc = strbuf_appendf(sb, "%-30s %-8s %-18s %s\n", rule->name, category_name(rule->category), result.data,
			    what.data);
	strbuf_free(&what);
	strbuf_free(&result);
	return rc;
}

int rules_overview(const struct rules *r, struct strbuf *sb)
{
	int rc = strbuf_appendf(sb, "%-30s %-8s %-18s %s\n", "RULE", "CATEGORY", "RESULT", "MATCHES");

	for (size_t i = 0; i < r->nrules && rc == 0; i++)
		rc = overview_rule(sb, &r->rules[i]);
	for (size_t i = 0; i < r->nfiletypes && rc == 0; i++)
		rc = strbuf_appendf(sb, "filetype %s: %zu magic signature%s\n", r->filetypes[i].name,
				    r->filetypes[i].nsigs, r->filetypes[i].nsigs == 1 ? "" : "s");
	if (rc == 0)
		rc = strbuf_appendf(sb, "%zu rule%s, %zu file type%s\n", r->nrules, r->nrules == 1 ? "" : "s",
				    r->nfiletypes, r->nfiletypes == 1 ? "" : "s");
	return rc;
}
