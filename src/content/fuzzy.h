/*
 * Fuzzy checksums: near-duplicate detection of known spam. The text a
 * reader sees (text parts, HTML made text, the subject) is normalised to
 * lower-case words, cut into overlapping shingles of FUZZY_SHINGLE_WORDS
 * words, and reduced to a MinHash signature of FUZZY_HASHES 64-bit values
 * (one keyed hash family per position, the minimum over all shingles).
 * Two texts agree in about as many positions as their shingle sets'
 * Jaccard similarity, so a spam run whose copies differ in a name, a
 * number or a line still matches.
 *
 * Messages judged spam are remembered in a fuzzy store
 * (store/fuzzy_store.h); the "fuzzy" engine looks each message up and
 * adds FUZZY_SPAM with a score that grows with the similarity (half the
 * configured score at the threshold, all of it at 100 %).
 */
#ifndef POSTERN_CONTENT_FUZZY_H
#define POSTERN_CONTENT_FUZZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/engine.h"
#include "store/fuzzy_store.h"

struct mime_message;

#define FUZZY_SHINGLE_WORDS 3
#define FUZZY_MAX_WORDS 20000          /* words of one message looked at */

struct fuzzy_signature {
	uint64_t h[FUZZY_HASHES];
	size_t nwords;                 /* words the text had (capped at FUZZY_MAX_WORDS) */
};

/* The signature of a parsed message. false when it has fewer than min_words words. */
bool fuzzy_signature_of(const struct mime_message *m, unsigned min_words, struct fuzzy_signature *out);
/* Share (0..1) of positions where a and b agree. */
double fuzzy_similarity(const struct fuzzy_signature *a, const struct fuzzy_signature *b);

struct fuzzy_options {
	unsigned threshold_percent;    /* near-duplicate from this similarity */
	double score;                  /* at 100 % */
	unsigned min_words;
	unsigned learn_scl;            /* remember at this SCL or above (10: never) */
	uint32_t expire_seconds;
};

struct fuzzy;
struct config;

/* [fuzzy] of cfg as options: the gateway and `postern learn` match alike. */
void fuzzy_options_from_config(const struct config *cfg, struct fuzzy_options *o);

/* A filter over store, which it owns from now on. */
struct fuzzy *fuzzy_new(struct fuzzy_store *store, const struct fuzzy_options *o);
void fuzzy_free(struct fuzzy *f);
/* The options can change on reload; the store stays. */
void fuzzy_set_options(struct fuzzy *f, const struct fuzzy_options *o);

/*
 * Remember m as spam (a new entry, or one more sighting of its nearest
 * match above the threshold). 1 stored, 0 too short to be remembered,
 * -1 store error (logged).
 */
int fuzzy_learn(struct fuzzy *f, const struct mime_message *m);
/* Forget the entries m matches above the threshold; how many, -1 on error. */
int fuzzy_forget(struct fuzzy *f, const struct mime_message *m);

/*
 * Take in what other processes (`postern learn`) stored in or removed
 * from the same database since it was last read: 1 reloaded (logged), 0
 * nothing new, -1 error (logged; the entries held so far stay). For a
 * low-priority worker job; lookups and learning go on meanwhile.
 */
int fuzzy_refresh(struct fuzzy *f);

/*
 * After the verdict (worker thread): remember the message when its SCL
 * without the "fuzzy" engine's own results reaches learn_scl. Logs what
 * it did with the queue id.
 */
void fuzzy_after_verdict(struct fuzzy *f, const struct mime_message *m, const struct engine_results *results,
			 const char *queue_id);

/* The "fuzzy" engine; f stays the caller's (the pipeline does not free it). */
struct content_engine *fuzzy_content_engine(struct fuzzy *f);

#endif
