/* RFC 4648 base64, strict: padding required, no whitespace inside. */
#ifndef POSTERN_BASE64_H
#define POSTERN_BASE64_H

#include <stddef.h>

/* Writes a NUL-terminated string; returns its length or -1 if it does not fit. */
long base64_encode(const void *in, size_t inlen, char *out, size_t outlen);
/* Returns the decoded length or -1 if malformed or too long for out. */
long base64_decode(const char *in, size_t inlen, void *out, size_t outlen);

#endif
