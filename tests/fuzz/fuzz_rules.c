/*
 * Fuzz the rule file parser and compiler, and check the export promise on
 * every file that parses: its export parses too, and exporting that gives
 * the same text and the same overview.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/rules.h"
#include "core/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *render(const struct rules *r, int (*print)(const struct rules *, struct strbuf *))
{
	struct strbuf sb;

	strbuf_init(&sb, 64 * 1024 * 1024);
	if (print(r, &sb) < 0)
		abort();
	return strbuf_detach(&sb, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct rules *r = rules_parse("fuzz", (const char *)data, size, err, sizeof(err)), *again;
	char *e1, *e2, *o1, *o2;

	if (r == NULL)
		return 0;
	e1 = render(r, rules_export);
	again = rules_parse("export", e1, strlen(e1), err, sizeof(err));
	if (again == NULL) {
		fprintf(stderr, "export does not parse: %s\n%s", err, e1);
		abort();
	}
	e2 = render(again, rules_export);
	o1 = render(r, rules_overview);
	o2 = render(again, rules_overview);
	if (strcmp(e1, e2) != 0 || strcmp(o1, o2) != 0) {
		fprintf(stderr, "export not stable:\n%s\n----\n%s", e1, e2);
		abort();
	}
	free(e1);
	free(e2);
	free(o1);
	free(o2);
	rules_free(again);
	rules_free(r);
	return 0;
}
