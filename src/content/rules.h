/*
 * Content rules: an administrator's file of named rules, each a condition
 * over the parsed message (headers, subject, body text, HTML links,
 * attachment names, types and sizes, message size) and a result (an
 * action such as reject, or a score). docs/rules.md describes the format.
 *
 * A loaded rule set is read-only and shared by every worker thread. Every
 * literal a rule needs goes into one multi-pattern prefilter per field, so
 * a message costs one pass per field whatever the number of rules; only
 * rules whose literals occur (or that have none) run their PCRE2 regex.
 */
#ifndef POSTERN_CONTENT_RULES_H
#define POSTERN_CONTENT_RULES_H

#include <stddef.h>

#include "content/engine.h"

struct mime_message;
struct strbuf;

#define RULES_MAX_FILE      ((size_t)4 * 1024 * 1024)
#define RULES_MAX_RULES     10000
#define RULES_MAX_FILETYPES 1000
#define RULES_MAX_REGEX     4096     /* bytes of one pattern */
#define RULES_MAX_STRING    1024     /* bytes of one quoted string */
#define RULES_MAX_DEPTH     16       /* nesting of all/any/not */
#define RULES_MAX_VALUES    1000     /* values of one match line */
#define RULES_MAX_NAME      58       /* "RULE_" + name fits an engine symbol */

struct rules;

/* NULL with "file:line:column: why" in err on any error. */
struct rules *rules_load(const char *path, char *err, size_t errlen);
/* `name` is the file name used in error messages. */
struct rules *rules_parse(const char *name, const char *text, size_t len, char *err, size_t errlen);
void rules_free(struct rules *r);
size_t rules_count(const struct rules *r);

/*
 * Add one result per matching rule to `out`. `raw` (may be NULL) is the
 * whole message, whose top-level header block `header` matches look at;
 * raw_len is the message size. Thread-safe: all scratch is per call.
 */
void rules_match(const struct rules *r, const struct mime_message *m, const unsigned char *raw,
		 size_t raw_len, struct engine_results *out);

/* The rule file, normalised: it parses back to the same rules. -1 past sb's limit. */
int rules_export(const struct rules *r, struct strbuf *sb);
/* A table: name, category, what the rule matches, action and score. */
int rules_overview(const struct rules *r, struct strbuf *sb);

/* The "rules" engine; it owns `r` from now on. */
struct content_engine *rules_engine_create(struct rules *r);

#endif
