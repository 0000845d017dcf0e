/*
 * The result list every engine writes to. Strings are copied truncated so
 * an engine can pass whatever it has without checking lengths first.
 */
#include "content/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

struct engine_result *engine_results_add(struct engine_results *r, const char *engine, const char *symbol)
{
	struct engine_result *res;

	if (r->count == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->items = xreallocarray(r->items, r->cap, sizeof(*r->items));
	}
	res = &r->items[r->count++];
	memset(res, 0, sizeof(*res));
	snprintf(res->engine, sizeof(res->engine), "%s", engine);
	snprintf(res->symbol, sizeof(res->symbol), "%s", symbol);
	res->part_index = -1;
	return res;
}

void engine_results_append_all(struct engine_results *dst, const struct engine_results *src)
{
	for (size_t i = 0; src != NULL && i < src->count; i++) {
		struct engine_result *res = engine_results_add(dst, src->items[i].engine, src->items[i].symbol);

		*res = src->items[i];
	}
}

void engine_results_free(struct engine_results *r)
{
	free(r->items);
	r->items = NULL;
	r->count = r->cap = 0;
}
