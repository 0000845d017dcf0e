/*
 * Aho-Corasick over ASCII-lowercased bytes, compiled into a full DFA on
 * byte classes: scanning is one table lookup per input byte whatever the
 * number of literals, and the output links make every match visible.
 */
#include "content/litset.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define LOG_MODULE "litset"
#include "core/log.h"

struct litset {
	unsigned char **lits;    /* lowercased copies, kept for the build */
	size_t *lens;
	unsigned *ids;
	size_t nlits, cap;
	bool compiled;
	uint8_t cls[256];        /* byte -> class; 0: in no literal */
	size_t nclasses;
	size_t nstates;
	int32_t *delta;          /* nstates x nclasses transitions */
	int32_t *out;            /* state -> first literal ending there, -1 */
	int32_t *dict;           /* state -> nearest suffix state with output, 0 */
	int32_t *next_out;       /* literal -> next literal ending at the same state, -1 */
};

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

struct litset *litset_new(void)
{
	return xcalloc(1, sizeof(struct litset));
}

void litset_add(struct litset *ls, const char *lit, size_t len, unsigned id)
{
	unsigned char *copy;

	if (ls->compiled || len == 0)
		log_panic(LOG_MODULE, "litset_add: %s", ls->compiled ? "already compiled" : "empty literal");
	if (ls->nlits == ls->cap) {
		ls->cap = ls->cap ? ls->cap * 2 : 16;
		ls->lits = xreallocarray(ls->lits, ls->cap, sizeof(*ls->lits));
		ls->lens = xreallocarray(ls->lens, ls->cap, sizeof(*ls->lens));
		ls->ids = xreallocarray(ls->ids, ls->cap, sizeof(*ls->ids));
	}
	copy = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		copy[i] = fold((unsigned char)lit[i]);
	ls->lits[ls->nlits] = copy;
	ls->lens[ls->nlits] = len;
	ls->ids[ls->nlits] = id;
	ls->nlits++;
}

size_t litset_count(const struct litset *ls)
{
	return ls->nlits;
}

/* Classes for the bytes literals use; upper case input maps like lower case. */
static void build_classes(struct litset *ls)
{
	size_t total = 1;

	for (size_t i = 0; i < ls->nlits; i++)
		for (size_t j = 0; j < ls->lens[i]; j++)
			if (ls->cls[ls->lits[i][j]] == 0)
				ls->cls[ls->lits[i][j]] = (uint8_t)total++;
	for (int c = 'A'; c <= 'Z'; c++)
		ls->cls[c] = ls->cls[c + 32];
	ls->nclasses = total;
}

/* The trie, -1 marking missing edges; literals hang their output on their last state. */
static void build_trie(struct litset *ls)
{
	size_t max_states = 1;

	for (size_t i = 0; i < ls->nlits; i++)
		max_states += ls->lens[i];
	ls->delta = xreallocarray(NULL, max_states * ls->nclasses, sizeof(*ls->delta));
	memset(ls->delta, 0xff, max_states * ls->nclasses * sizeof(*ls->delta));
	ls->out = xreallocarray(NULL, max_states, sizeof(*ls->out));
	memset(ls->out, 0xff, max_states * sizeof(*ls->out));
	ls->dict = xcalloc(max_states, sizeof(*ls->dict));
	ls->next_out = xreallocarray(NULL, ls->nlits ? ls->nlits : 1, sizeof(*ls->next_out));
	ls->nstates = 1;
	for (size_t i = 0; i < ls->nlits; i++) {
		int32_t s = 0;

		for (size_t j = 0; j < ls->lens[i]; j++) {
			int32_t *edge = &ls->delta[(size_t)s * ls->nclasses + ls->cls[ls->lits[i][j]]];

			if (*edge < 0)
				*edge = (int32_t)ls->nstates++;
			s = *edge;
		}
		ls->next_out[i] = ls->out[s];
		ls->out[s] = (int32_t)i;
	}
}

/* Failure links by BFS, folded into the transition table and output links. */
static void build_links(struct litset *ls)
{
	int32_t *fail = xcalloc(ls->nstates, sizeof(*fail));
	int32_t *queue = xreallocarray(NULL, ls->nstates, sizeof(*queue));
	size_t head = 0, tail = 0;
	size_t nc = ls->nclasses;

	for (size_t c = 0; c < nc; c++) {
		int32_t u = ls->delta[c];

		if (u < 0) {
			ls->delta[c] = 0;
		} else {
			fail[u] = 0;
			queue[tail++] = u;
		}
	}
	while (head < tail) {
		int32_t s = queue[head++];

		ls->dict[s] = ls->out[fail[s]] >= 0 ? fail[s] : ls->dict[fail[s]];
		for (size_t c = 0; c < nc; c++) {
			int32_t *edge = &ls->delta[(size_t)s * nc + c];
			int32_t via_fail = ls->delta[(size_t)fail[s] * nc + c];

			if (*edge < 0) {
				*edge = via_fail;
			} else {
				fail[*edge] = via_fail;
				queue[tail++] = *edge;
			}
		}
	}
	free(queue);
	free(fail);
}

void litset_compile(struct litset *ls)
{
	if (ls->compiled)
		log_panic(LOG_MODULE, "litset_compile twice");
	build_classes(ls);
	build_trie(ls);
	build_links(ls);
	for (size_t i = 0; i < ls->nlits; i++)
		free(ls->lits[i]);
	free(ls->lits);
	ls->lits = NULL;
	ls->compiled = true;
}

void litset_scan(const struct litset *ls, const char *text, size_t len, litset_hit_fn hit, void *arg)
{
	const unsigned char *p = (const unsigned char *)text;
	int32_t s = 0;

	if (!ls->compiled)
		log_panic(LOG_MODULE, "litset_scan before compile");
	if (ls->nlits == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		s = ls->delta[(size_t)s * ls->nclasses + ls->cls[p[i]]];
		for (int32_t t = ls->out[s] >= 0 ? s : ls->dict[s]; t > 0; t = ls->dict[t])
			for (int32_t l = ls->out[t]; l >= 0; l = ls->next_out[l])
				hit(arg, ls->ids[l], i + 1);
	}
}

void litset_free(struct litset *ls)
{
	if (ls == NULL)
		return;
	if (ls->lits != NULL)
		for (size_t i = 0; i < ls->nlits; i++)
			free(ls->lits[i]);
	free(ls->lits);
	free(ls->lens);
	free(ls->ids);
	free(ls->delta);
	free(ls->out);
	free(ls->dict);
	free(ls->next_out);
	free(ls);
}
