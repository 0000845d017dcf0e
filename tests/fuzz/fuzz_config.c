/*
 * Fuzz the configuration parser. Besides memory errors and leaks it checks
 * the parser's promises: an error always names a line of the input and has
 * a message; a valid config dumps to text that parses back to the same
 * dump; the look-ups find what the config holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINE_MAX 8192       /* the parser's line limit */

static void fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

static size_t count_lines(const uint8_t *data, size_t size)
{
	size_t n = size > 0;

	for (size_t i = 0; i + 1 < size; i++)
		n += data[i] == '\n';
	return n;
}

static char *dump_config(const struct config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	fuzz_assert(f != NULL);
	fuzz_assert(config_dump(cfg, f) == 0);
	fclose(f);
	return text;
}

static int longest_line(const char *text)
{
	size_t longest = 0;

	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");

		if (n > longest)
			longest = n;
		p += n + (p[n] == '\n');
	}
	return longest > FUZZ_LINE_MAX;
}

static void check_lookups(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		fuzz_assert(config_find_domain(cfg, cfg->domains[i].domain) == &cfg->domains[i]);
	for (size_t i = 0; i < cfg->nusers; i++)
		fuzz_assert(config_find_user(cfg, cfg->users[i].address) == &cfg->users[i]);
	for (size_t i = 0; i < cfg->nlocal_domains; i++)
		fuzz_assert(config_is_local_domain(cfg, cfg->local_domains[i]));
	fuzz_assert(cfg->nlistens > 0);
	fuzz_assert(cfg->retry_min <= cfg->retry_max);
}

/* A dump must read back as the same configuration (when its lines fit). */
static void check_round_trip(const struct config *cfg)
{
	struct config_error err;
	struct config *again;
	size_t len1, len2;
	char *first = dump_config(cfg, &len1), *second;

	again = config_parse("dump", first, len1, &err);
	if (again == NULL) {
		fuzz_assert(longest_line(first));
		free(first);
		return;
	}
	second = dump_config(again, &len2);
	fuzz_assert(len1 == len2 && memcmp(first, second, len1) == 0);
	free(first);
	free(second);
	config_unref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_error err;
	struct config *cfg = config_parse("fuzz.conf", (const char *)data, size, &err);
	char message[1200];

	if (cfg == NULL) {
		fuzz_assert(err.message[0] != '\0');
		fuzz_assert(err.line <= count_lines(data, size));
		config_error_format(&err, message, sizeof(message));
		fuzz_assert(strncmp(message, "fuzz.conf", 9) == 0);
		return 0;
	}
	check_lookups(cfg);
	check_round_trip(cfg);
	config_unref(config_ref(cfg));
	config_unref(cfg);
	return 0;
}
