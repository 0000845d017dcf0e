#include "queue/envelope.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

struct envelope *envelope_new(void)
{
	return xcalloc(1, sizeof(struct envelope));
}

/*
 * Recipients are appended one RCPT at a time; the array grows by doubling
 * (capacity kept implicit: always the next power of two >= nrcpts) so a
 * thousand recipients cost ten reallocations, not a thousand.
 */
struct envelope_rcpt *envelope_add_rcpt(struct envelope *env, const char *addr)
{
	struct envelope_rcpt *r;
	size_t n = env->nrcpts;

	if (n == 0 || (n & (n - 1)) == 0)
		env->rcpts = xreallocarray(env->rcpts, n ? n * 2 : 1, sizeof(*env->rcpts));
	r = &env->rcpts[n];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	env->nrcpts = n + 1;
	return r;
}

void envelope_free(struct envelope *env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].last_reply);
		free(env->rcpts[i].remote);
	}
	free(env->rcpts);
	for (size_t i = 0; i < env->nedits; i++)
		free(env->edits[i].insert);
	free(env->edits);
	free(env->sender);
	free(env->envid);
	free(env->client_addr);
	free(env->client_helo);
	free(env->auth_user);
	free(env);
}

/* Whether edit a, which starts no later than b, runs into b. */
static bool envelope_edits_overlap(const struct envelope_edit *a, uint64_t b_offset)
{
	return a->offset == b_offset || b_offset - a->offset < a->remove;
}

/* Index of the first edit at or after offset. */
static size_t envelope_edit_position(const struct envelope *env, uint64_t offset)
{
	size_t pos = 0;

	while (pos < env->nedits && env->edits[pos].offset < offset)
		pos++;
	return pos;
}

bool envelope_edit_fits(const struct envelope *env, uint64_t offset, uint64_t remove,
			size_t insert_len)
{
	size_t pos;

	if (remove > UINT64_MAX - offset || insert_len > ENVELOPE_EDIT_INSERT_MAX ||
	    env->nedits >= ENVELOPE_EDITS_MAX)
		return false;
	pos = envelope_edit_position(env, offset);
	if (pos > 0 && envelope_edits_overlap(&env->edits[pos - 1], offset))
		return false;
	return pos == env->nedits ||
	       (env->edits[pos].offset != offset && env->edits[pos].offset - offset >= remove);
}

/*
 * The list stays tiny (a few marks), so a linear search and a memmove
 * keep it sorted more simply than anything cleverer would.
 */
int envelope_add_edit(struct envelope *env, uint64_t offset, uint64_t remove,
		      const void *insert, size_t insert_len)
{
	struct envelope_edit *e;
	size_t pos;

	if (remove == 0 && insert_len == 0)
		return 0;
	if (!envelope_edit_fits(env, offset, remove, insert_len))
		return -1;
	pos = envelope_edit_position(env, offset);
	env->edits = xreallocarray(env->edits, env->nedits + 1, sizeof(*env->edits));
	memmove(&env->edits[pos + 1], &env->edits[pos], (env->nedits - pos) * sizeof(*env->edits));
	e = &env->edits[pos];
	e->offset = offset;
	e->remove = remove;
	e->insert_len = insert_len;
	e->insert = NULL;
	if (insert_len > 0) {
		e->insert = xmalloc(insert_len);
		memcpy(e->insert, insert, insert_len);
	}
	env->nedits++;
	return 0;
}

const char *address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : addr + strlen(addr);
}
