/*
 * The Bayesian filter's tokeniser: a parsed message to a bounded set of
 * 64-bit token hashes. What it looks at is chosen so that the filter
 * learns what a sender controls and not how a message reached us:
 *
 *   h:  selected headers only — From display name words and domain
 *       (host and registrable domain), a bucketed To count, the root
 *       Content-Type, every text part's charset, attachment types and
 *       file extensions, X-Mailer / User-Agent words. Never Received,
 *       Delivered-To, Return-Path, Message-ID, Date or list/collection
 *       headers: those describe the path, not the sender.
 *   s:  subject words and their OSB pairs
 *   u:  host names and registrable domains of URLs, from HTML links and
 *       from http://, https:// and www. in plain text; "u:p:" words of
 *       their paths and queries
 *   t:  HTML markup: tag names, a few attributes per tag ("t:font.color"),
 *       comments
 *   C:  words written in capitals ("C:FREE", "s:C:URGENT" in the subject),
 *       "p:!!" and "p:!!!" for runs of exclamation marks
 *   (no prefix): body words (text/plain text, HTML visible text) and
 *       their OSB pairs
 *
 * Words are runs of Unicode letters and digits (and $ ' - _ inside),
 * lower-cased, kept when 3 to 40 bytes long; all-digit words become a
 * length bucket ("n#4", "$n#3"). Orthogonal sparse bigrams over a window
 * of 3 pair each word with each of the 2 words before it: "a~b" for
 * neighbours, "a~~b" with one word between (a window of 5 was measurably
 * worse on bench/accuracy's development split: its many correlated pairs
 * crowd the 150 clues).
 *
 * Han, kana and Hangul text has no spaces between words: there each pair
 * of neighbouring characters is a token instead.
 *
 * At most max_tokens tokens are produced per message (headers first, so a
 * long body cannot crowd them out).
 */
#ifndef POSTERN_CONTENT_TOKENIZE_H
#define POSTERN_CONTENT_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

struct mime_message;

#define TOKENIZE_MAX_TOKENS_DEFAULT 10000
#define TOKENIZE_WORD_MIN 3             /* bytes */
#define TOKENIZE_WORD_MAX 40            /* bytes; longer words are skipped */
#define TOKENIZE_OSB_WINDOW 3
#define TOKENIZE_TOKEN_MAX 128          /* bytes of the longest token text (prefix + OSB pair) */

/* Called once per token produced (not NUL-terminated, len < TOKENIZE_TOKEN_MAX). */
typedef void (*tokenize_emit_fn)(void *arg, const char *token, size_t len);

/*
 * Every token of a message, in order, at most max_tokens of them (0: the
 * default). raw is the whole message; only its top-level header block is
 * read, for X-Mailer and User-Agent. Returns the number of tokens emitted.
 */
size_t tokenize_message_each(const struct mime_message *m, const unsigned char *raw, size_t raw_len,
			     size_t max_tokens, tokenize_emit_fn emit, void *arg);

/* A message's distinct token hashes, sorted ascending. */
struct token_set {
	uint64_t *hashes;
	size_t count;
};

void tokenize_message(const struct mime_message *m, const unsigned char *raw, size_t raw_len,
		      size_t max_tokens, struct token_set *out);
void token_set_free(struct token_set *s);

/* The stable 64-bit hash tokens are stored under (never 0). */
uint64_t token_hash(const char *token, size_t len);

/*
 * The registrable domain of a lower-case host name, a suffix of `host`:
 * the last two labels, or three when the second-to-last is a common
 * second-level label under a two-letter country code (example.co.uk).
 * An approximation of the public suffix list, good enough for tokens.
 */
const char *tokenize_registrable_domain(const char *host);

/*
 * The first header `name` (case-insensitive) of the top-level header block
 * of raw, unfolded, into buf (truncated to size - 1). Returns its length,
 * or -1 when there is no such header.
 */
long tokenize_raw_header(const unsigned char *raw, size_t raw_len, const char *name, char *buf, size_t size);

#endif
