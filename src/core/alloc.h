/*
 * Checked allocation: these never return NULL. Running out of memory or
 * asking for a size that overflows is a fatal error reported with the
 * caller's purpose, in the style of Postfix's mymalloc().
 */
#ifndef POSTERN_ALLOC_H
#define POSTERN_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
/* Grow an array of `count` elements of `size` bytes; overflow is fatal. */
void *xreallocarray(void *ptr, size_t count, size_t size);
char *xstrdup(const char *s);
/* xstrdup, with NULL for NULL: optional strings copied as they are. */
char *xstrdup_or_null(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh buffer. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
