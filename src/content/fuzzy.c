/*
 * Fuzzy checksums (see content/fuzzy.h): words of what a reader sees,
 * shingles of consecutive words, a MinHash signature, and an engine and
 * autolearn over the fuzzy store.
 *
 * Words are hashed as they are read, so a signature costs one pass over
 * the text and FUZZY_HASHES + 3 mixes per shingle, with no copy of the
 * text.
 */
#include "content/fuzzy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content/mime.h"
#include "content/pipeline.h"
#include "content/scoring.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/hash.h"

#define LOG_MODULE "fuzzy"
#include "core/log.h"

#define FUZZY_MAX_WORD 40               /* bytes; longer "words" are base64, hashes, tracking ids */
#define FUZZY_EXPIRE_EVERY 3600         /* seconds between two expiry runs */
#define FOOTER_MAX_BYTES 800            /* a list footer is this close to the end of its text */
#define FOOTER_MAX_CUTS 3               /* footers stacked by lists and their sponsors */
#define FOOTER_RULE_MIN 20              /* the ruler line that opens one: "-----", "_____", "=====" */
#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

struct fuzzy {
	struct fuzzy_store *store;
	pthread_mutex_t lock;           /* guards opts (reloads race with checks) */
	struct fuzzy_options opts;
	pthread_mutex_t learn_lock;     /* one lookup-then-add at a time; guards last_expire */
	time_t last_expire;
};

/* How a code point takes part in words. */
enum char_class {
	CHAR_WORD,
	CHAR_SEPARATOR,
	CHAR_INVISIBLE,                 /* soft hyphen, zero-width: dropped, as a reader never sees them */
};

static enum char_class classify_codepoint(uint32_t cp)
{
	if (cp == 0xAD || (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF)
		return CHAR_INVISIBLE;
	/* Spaces, Latin-1 punctuation, general punctuation (dashes, quotes, bullets), ideographic space, U+FFFD. */
	if (cp == 0xA0 || cp == 0xAB || cp == 0xB7 || cp == 0xBB || (cp >= 0x2000 && cp <= 0x206F) ||
	    cp == 0x3000 || cp == 0xFFFD)
		return CHAR_SEPARATOR;
	return CHAR_WORD;
}

/*
 * The length of the UTF-8 sequence at s (at most n bytes) and its code
 * point; a malformed sequence counts as one byte of a word.
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t v;

	if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		len = 4;
		v = s[0] & 0x07;
	} else if (s[0] >= 0xE0) {
		len = s[0] <= 0xEF ? 3 : 1;
		v = s[0] & 0x0F;
	} else if (s[0] >= 0xC2) {
		len = 2;
		v = s[0] & 0x1F;
	} else {
		len = 1;
	}
	if (len == 1 || len > n) {
		*cp = 0xFFFFFFFF;
		return 1;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*cp = 0xFFFFFFFF;
			return 1;
		}
		v = (v << 6) | (s[i] & 0x3F);
	}
	*cp = v;
	return len;
}

/* Word hashes of a text, gathered across the subject and every text part. */
struct word_list {
	uint64_t *h;
	size_t n;
	/* the word being read */
	uint64_t cur;
	size_t cur_len;
	bool cur_digits;
};

static bool is_ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void word_byte(struct word_list *w, unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		c = (unsigned char)(c - 'A' + 'a');
	if (w->cur_len == 0) {
		w->cur = FNV64_OFFSET;
		w->cur_digits = true;
	}
	w->cur = (w->cur ^ c) * FNV64_PRIME;
	w->cur_digits = w->cur_digits && c >= '0' && c <= '9';
	w->cur_len++;
}

/* End the word being read: kept unless too long or a pure number, which vary between copies. */
static void word_end(struct word_list *w)
{
	if (w->cur_len > 0 && w->cur_len <= FUZZY_MAX_WORD && !w->cur_digits && w->n < FUZZY_MAX_WORDS)
		w->h[w->n++] = hash_mix64(w->cur);
	w->cur_len = 0;
}

static void words_of_text(struct word_list *w, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	while (i < len && w->n < FUZZY_MAX_WORDS) {
		uint32_t cp;
		size_t n;

		if (s[i] < 0x80) {
			if (is_ascii_alnum(s[i]))
				word_byte(w, s[i]);
			else
				word_end(w);
			i++;
			continue;
		}
		n = utf8_decode(s + i, len - i, &cp);
		switch (classify_codepoint(cp)) {
		case CHAR_SEPARATOR:
			word_end(w);
			break;
		case CHAR_WORD:
			for (size_t j = 0; j < n; j++)
				word_byte(w, s[i + j]);
			break;
		case CHAR_INVISIBLE:
			break;
		}
		i += n;
	}
	word_end(w);
}

/* Whether line[0..len) is a ruler: FOOTER_RULE_MIN or more of one of "-_=", blanks aside. */
static bool is_ruler_line(const char *line, size_t len)
{
	size_t n = 0;
	char c = 0;

	for (size_t i = 0; i < len; i++) {
		if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')
			continue;
		if ((line[i] != '-' && line[i] != '_' && line[i] != '=') || (c != 0 && line[i] != c))
			return false;
		c = line[i];
		n++;
	}
	return n >= FOOTER_RULE_MIN;
}

/* Where the last ruler line within FOOTER_MAX_BYTES of the end starts, or len. */
static size_t last_ruler(const char *text, size_t len)
{
	size_t pos = len > FOOTER_MAX_BYTES ? len - FOOTER_MAX_BYTES : 0, found = len;

	if (pos > 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);

		if (nl == NULL)
			return len;
		pos = (size_t)(nl - text) + 1;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;

		if (is_ruler_line(text + pos, end - pos))
			found = pos;
		pos = end + 1;
	}
	return found;
}

/*
 * The text without the footers mailing lists append: they are the same
 * under every message of a list, spam and ham alike, and would make a
 * short ham look like a short spam sent to the same list.
 */
static size_t without_list_footers(const char *text, size_t len)
{
	for (int i = 0; i < FOOTER_MAX_CUTS; i++) {
		size_t cut = last_ruler(text, len);

		if (cut == len)
			break;
		len = cut;
	}
	return len;
}

/* The words a reader sees: the subject, then every text part not attached (HTML as its visible text). */
static void words_of_message(struct word_list *w, const struct mime_message *m)
{
	if (m->subject != NULL)
		words_of_text(w, m->subject, strlen(m->subject));
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *part = &m->parts[i];

		if (part->text == NULL || part->is_attachment)
			continue;
		if (part->html != NULL)
			words_of_text(w, part->html->text, without_list_footers(part->html->text, part->html->text_len));
		else
			words_of_text(w, part->text, without_list_footers(part->text, part->text_len));
	}
}

/* The hash of the shingle of words w[0..FUZZY_SHINGLE_WORDS), depending on their order. */
static uint64_t shingle_hash(const uint64_t *w)
{
	uint64_t s = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < FUZZY_SHINGLE_WORDS; i++)
		s = hash_mix64(s ^ w[i]);
	return s;
}

static void minhash(const uint64_t *words, size_t n, uint64_t out[FUZZY_HASHES])
{
	uint64_t seeds[FUZZY_HASHES];

	for (unsigned i = 0; i < FUZZY_HASHES; i++) {
		seeds[i] = hash_mix64(0x6a09e667f3bcc909ULL + i);
		out[i] = UINT64_MAX;
	}
	for (size_t i = 0; i + FUZZY_SHINGLE_WORDS <= n; i++) {
		uint64_t s = shingle_hash(words + i);

		for (unsigned j = 0; j < FUZZY_HASHES; j++) {
			uint64_t v = hash_mix64(s ^ seeds[j]);

			if (v < out[j])
				out[j] = v;
		}
	}
}

bool fuzzy_signature_of(const struct mime_message *m, unsigned min_words, struct fuzzy_signature *out)
{
	struct word_list w = { 0 };
	bool ok;

	w.h = xreallocarray(NULL, FUZZY_MAX_WORDS, sizeof(*w.h));
	words_of_message(&w, m);
	out->nwords = w.n;
	ok = w.n >= min_words && w.n >= FUZZY_SHINGLE_WORDS;
	if (ok)
		minhash(w.h, w.n, out->h);
	free(w.h);
	return ok;
}

double fuzzy_similarity(const struct fuzzy_signature *a, const struct fuzzy_signature *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < FUZZY_HASHES; i++)
		n += a->h[i] == b->h[i];
	return (double)n / FUZZY_HASHES;
}

void fuzzy_options_from_config(const struct config *cfg, struct fuzzy_options *o)
{
	o->threshold_percent = cfg->fuzzy_threshold;
	o->score = cfg->fuzzy_score;
	o->min_words = cfg->fuzzy_min_words;
	o->learn_scl = cfg->fuzzy_learn_scl;
	o->expire_seconds = cfg->fuzzy_expire;
}

struct fuzzy *fuzzy_new(struct fuzzy_store *store, const struct fuzzy_options *o)
{
	struct fuzzy *f = xcalloc(1, sizeof(*f));

	f->store = store;
	f->opts = *o;
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->learn_lock, NULL);
	return f;
}

void fuzzy_free(struct fuzzy *f)
{
	if (f == NULL)
		return;
	fuzzy_store_close(f->store);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->learn_lock);
	free(f);
}

void fuzzy_set_options(struct fuzzy *f, const struct fuzzy_options *o)
{
	pthread_mutex_lock(&f->lock);
	f->opts = *o;
	pthread_mutex_unlock(&f->lock);
}

static void options_get(struct fuzzy *f, struct fuzzy_options *o)
{
	pthread_mutex_lock(&f->lock);
	*o = f->opts;
	pthread_mutex_unlock(&f->lock);
}

static bool is_near_duplicate(const struct fuzzy_match *match, unsigned threshold_percent)
{
	return match->id != 0 && match->agree * 100 >= threshold_percent * FUZZY_HASHES;
}

/* Forget entries not seen for expire_seconds, at most once an hour; the caller holds learn_lock. */
static void expire_if_due(struct fuzzy *f, const struct fuzzy_options *o, time_t now)
{
	long n;

	if (now - f->last_expire < FUZZY_EXPIRE_EVERY)
		return;
	f->last_expire = now;
	n = f->store->ops->expire(f->store->be, (int64_t)now - o->expire_seconds);
	if (n > 0)
		log_info("expired %ld fuzzy hashes not seen for %u seconds", n, o->expire_seconds);
}

/*
 * Remember a signature: one more sighting of its nearest match when that
 * is a near-duplicate, else a new entry. *match is the best match found
 * before; *added tells which it was.
 */
static int learn_signature(struct fuzzy *f, const struct fuzzy_options *o, const struct fuzzy_signature *sig,
			   struct fuzzy_match *match, bool *added)
{
	const struct fuzzy_store_ops *ops = f->store->ops;
	time_t now = time(NULL);
	int64_t id;
	int rc;

	pthread_mutex_lock(&f->learn_lock);
	expire_if_due(f, o, now);
	rc = ops->lookup(f->store->be, sig->h, match);
	if (rc == 0) {
		*added = !is_near_duplicate(match, o->threshold_percent);
		if (*added)
			rc = ops->add(f->store->be, sig->h, (int64_t)now, &id);
		else
			rc = ops->touch(f->store->be, match->id, (int64_t)now);
	}
	pthread_mutex_unlock(&f->learn_lock);
	return rc < 0 ? -1 : 1;
}

int fuzzy_learn(struct fuzzy *f, const struct mime_message *m)
{
	struct fuzzy_options o;
	struct fuzzy_signature sig;
	struct fuzzy_match match;
	bool added;

	options_get(f, &o);
	if (!fuzzy_signature_of(m, o.min_words, &sig))
		return 0;
	return learn_signature(f, &o, &sig, &match, &added);
}

int fuzzy_forget(struct fuzzy *f, const struct mime_message *m)
{
	const struct fuzzy_store_ops *ops = f->store->ops;
	struct fuzzy_options o;
	struct fuzzy_signature sig;
	struct fuzzy_match match;
	int n = 0;

	options_get(f, &o);
	if (!fuzzy_signature_of(m, o.min_words, &sig))
		return 0;
	pthread_mutex_lock(&f->learn_lock);
	for (;;) {
		if (ops->lookup(f->store->be, sig.h, &match) < 0) {
			n = -1;
			break;
		}
		if (!is_near_duplicate(&match, o.threshold_percent))
			break;
		if (ops->remove(f->store->be, match.id) < 0) {
			n = -1;
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&f->learn_lock);
	return n;
}

int fuzzy_refresh(struct fuzzy *f)
{
	const struct fuzzy_store_ops *ops = f->store->ops;
	int rc;

	if (ops->refresh == NULL)
		return 0;
	rc = ops->refresh(f->store->be);
	if (rc == 1)
		log_info("fuzzy signatures reloaded: %ld entries", ops->count(f->store->be));
	return rc;
}

void fuzzy_after_verdict(struct fuzzy *f, const struct mime_message *m, const struct engine_results *results,
			 const char *queue_id)
{
	static const char *const own[] = { "fuzzy", NULL };
	struct fuzzy_options o;
	struct fuzzy_signature sig;
	struct fuzzy_match match;
	bool added;

	options_get(f, &o);
	if (m == NULL || o.learn_scl >= 10 || content_scl(scoring_total_without(results, own)) < (int)o.learn_scl)
		return;
	if (!fuzzy_signature_of(m, o.min_words, &sig))
		return;
	if (learn_signature(f, &o, &sig, &match, &added) < 0)
		return;
	log_info("fuzzy queue_id=%s %s (agree %u/%d)", queue_id != NULL ? queue_id : "-",
		 added ? "learned" : "seen again", match.agree, FUZZY_HASHES);
}

/* Half the score at the threshold, rising linearly to all of it at 100 %. */
static double scaled_score(const struct fuzzy_options *o, unsigned agree)
{
	double sim = (double)agree / FUZZY_HASHES, t = o->threshold_percent / 100.0;

	if (t >= 1.0)
		return o->score;
	return o->score * (0.5 + 0.5 * (sim - t) / (1.0 - t));
}

static void fuzzy_check(void *state, const struct content_message *msg, struct engine_results *out)
{
	struct fuzzy *f = state;
	struct fuzzy_options o;
	struct fuzzy_signature sig;
	struct fuzzy_match match;
	struct engine_result *r;

	if (msg->mime == NULL)
		return;
	options_get(f, &o);
	if (!fuzzy_signature_of(msg->mime, o.min_words, &sig))
		return;
	if (f->store->ops->lookup(f->store->be, sig.h, &match) < 0 || !is_near_duplicate(&match, o.threshold_percent))
		return;
	r = engine_results_add(out, "fuzzy", "FUZZY_SPAM");
	r->category = CATEGORY_SPAM;
	r->score = scaled_score(&o, match.agree);
	snprintf(r->reason, sizeof(r->reason), "near-duplicate of known spam (agree %u/%d, seen %u times)", match.agree,
		 FUZZY_HASHES, match.hits);
}

struct content_engine *fuzzy_content_engine(struct fuzzy *f)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = "fuzzy";
	e->state = f;
	e->check = fuzzy_check;
	e->free = NULL;
	return e;
}
