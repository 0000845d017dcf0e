/*
 * A set of literals searched in one pass (Aho-Corasick, ASCII case
 * folded): the content rules' prefilter, so that a thousand rules cost
 * one walk over each field instead of a thousand. Bytes that occur in no
 * literal share one input class, which keeps the DFA table small.
 */
#ifndef POSTERN_CONTENT_LITSET_H
#define POSTERN_CONTENT_LITSET_H

#include <stddef.h>

struct litset;

/* Called for every occurrence; `end` is the offset just past its last byte. */
typedef void (*litset_hit_fn)(void *arg, unsigned id, size_t end);

struct litset *litset_new(void);
/* Add a non-empty literal before litset_compile; `id` comes back in hits. */
void litset_add(struct litset *ls, const char *lit, size_t len, unsigned id);
/* Build the automaton; no litset_add after this. */
void litset_compile(struct litset *ls);
size_t litset_count(const struct litset *ls);
/* Thread-safe once compiled: the automaton is read-only. */
void litset_scan(const struct litset *ls, const char *text, size_t len, litset_hit_fn hit, void *arg);
void litset_free(struct litset *ls);

#endif
