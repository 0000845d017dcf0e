/*
 * The compiled form of a rule file, shared by the parser and printer
 * (rules.c) and the compiler and matcher (rules_match.c). Not for other
 * modules: they use content/rules.h.
 */
#ifndef POSTERN_CONTENT_RULES_INT_H
#define POSTERN_CONTENT_RULES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "content/engine.h"

struct litset;

enum rule_field {
	FIELD_HEADER,
	FIELD_SUBJECT,
	FIELD_FROM,
	FIELD_TO,
	FIELD_BODY,
	FIELD_HTML_LINK,
	FIELD_ATTACHMENT_NAME,
	FIELD_ATTACHMENT_TYPE,
	FIELD_ATTACHMENT_SIZE,
	FIELD_MESSAGE_SIZE,
};

enum rule_cmp { CMP_LT, CMP_LE, CMP_GT, CMP_GE };

/* Regex flags as written after the closing slash. */
enum {
	RX_CASELESS = 1 << 0,   /* i */
	RX_MULTILINE = 1 << 1,  /* m */
	RX_DOTALL = 1 << 2,     /* s */
	RX_EXTENDED = 1 << 3,   /* x */
};

struct rule_value {
	bool is_regex;
	char *text;              /* phrase, glob or type name; or the pattern as written */
	size_t len;
	bool word;               /* phrase: whole words only ("..."w) */
	unsigned rx_flags;
	unsigned line, col;
	/* compiled */
	pcre2_code *re;
	int lit;                 /* literal id in the field's prefilter, -1: none */
	int filetype;            /* attachment-type naming a filetype block, -1: none */
};

enum rule_node_kind { NODE_MATCH, NODE_ALL, NODE_ANY, NODE_NOT };

struct rule_node {
	enum rule_node_kind kind;
	unsigned line, col;
	/* NODE_MATCH */
	enum rule_field field;
	char *header;            /* FIELD_HEADER: the header name as written */
	enum rule_cmp cmp;       /* size fields */
	uint64_t size;
	struct rule_value *values;
	size_t nvalues;
	int slot;                /* text fields: index in rules.slots */
	/* NODE_ALL, NODE_ANY, NODE_NOT (one kid) */
	struct rule_node **kids;
	size_t nkids;
};

struct rule {
	char *name;
	char symbol[ENGINE_SYMBOL_MAX];
	enum content_category category;
	char *description;       /* NULL if none */
	enum content_action action;
	char *reply;             /* NULL if none */
	double score;
	bool has_score;
	struct rule_node *cond;  /* NODE_ALL of the rule's top-level conditions */
	unsigned line;
};

struct magic_sig {
	unsigned char *bytes;
	size_t len;
	uint64_t offset;
};

struct filetype {
	char *name;
	struct magic_sig *sigs;
	size_t nsigs;
	unsigned line;
};

/* What a literal hit has to confirm: the whole phrase, word edges. */
struct literal {
	char *full;              /* NULL: a regex's required literal, nothing to confirm */
	size_t full_len;
	size_t prefix_len;       /* bytes the prefilter searched for */
	bool word;
};

/* One text field with its prefilter: subject, body, header X-Foo, ... */
struct field_slot {
	enum rule_field field;
	const char *header;      /* borrowed from the first node naming it */
	struct litset *lits;
};

struct rules {
	struct rule *rules;
	size_t nrules;
	struct filetype *filetypes;
	size_t nfiletypes;
	struct field_slot *slots;
	size_t nslots;
	struct literal *literals;
	size_t nliterals;
	pcre2_match_context *mctx;
};

/* rules_match.c: compile values, build prefilters; err like the parser's. */
int rules_compile(struct rules *r, const char *name, char *err, size_t errlen);
void rules_node_free(struct rule_node *n);

/* rules.c */
const char *rules_field_name(enum rule_field f);
bool rules_field_is_text(enum rule_field f);

#endif
