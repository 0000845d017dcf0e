#include "queue/envelope.h"

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
	free(env->sender);
	free(env->envid);
	free(env->client_addr);
	free(env->client_helo);
	free(env->auth_user);
	free(env);
}

const char *address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : addr + strlen(addr);
}
