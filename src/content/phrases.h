/*
 * Phrase weights: an administrator's list of phrases, each with a weight
 * from -100 to 100 and where to look (subject, body or both), like
 * Exchange's custom weighting file. Every distinct phrase found counts
 * once per message; the sum is one PHRASES result. Matching is ASCII
 * case-insensitive and costs one pass per field (content/litset.h).
 *
 * File format, one phrase a line, '#' starts a comment:
 *     WEIGHT WHERE "phrase"
 *     2.5   body    "limited time offer"
 *     -10   subject "invoice \"Q3\""
 * WEIGHT has at most 2 decimals; the phrase is 1..200 bytes with \" and
 * \\ as its only escapes.
 */
#ifndef POSTERN_CONTENT_PHRASES_H
#define POSTERN_CONTENT_PHRASES_H

#include <stddef.h>

struct content_engine;
struct phrases;

#define PHRASES_MAX_LINES  100000
#define PHRASES_MAX_LEN    200
#define PHRASES_MAX_WEIGHT 100

/* NULL with "file:line: why" in err when the file cannot be read or parsed. */
struct phrases *phrases_load(const char *path, char *err, size_t errlen);
size_t phrases_count(const struct phrases *p);
void phrases_free(struct phrases *p);

/* The "phrases" engine; it owns `p` from now on. */
struct content_engine *phrases_engine_create(struct phrases *p);

#endif
