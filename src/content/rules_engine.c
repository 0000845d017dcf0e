/*
 * The "rules" content engine: the administrator's rule file applied to
 * every message. The rule set is read-only once loaded, so all worker
 * threads share it.
 */
#include "content/rules.h"

#include <stdlib.h>

#include "core/alloc.h"

static void rules_engine_check(void *state, const struct content_message *m, struct engine_results *out)
{
	if (m->mime != NULL)
		rules_match(state, m->mime, m->raw, m->raw_len, out);
}

static void rules_engine_free(void *state)
{
	rules_free(state);
}

struct content_engine *rules_engine_create(struct rules *r)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = "rules";
	e->state = r;
	e->check = rules_engine_check;
	e->free = rules_engine_free;
	return e;
}
