/* Reading an operator's message files for the offline tools (see cli.h). */
#include "cli/cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/strbuf.h"

char *cli_read_file(const char *path, uint64_t max, size_t *len, char *why, size_t whylen)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct strbuf sb;
	char buf[65536];
	size_t n;

	if (f == NULL) {
		snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	strbuf_init(&sb, max > SIZE_MAX ? SIZE_MAX : (size_t)max);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (strbuf_append(&sb, buf, n) < 0) {
			snprintf(why, whylen, "larger than %llu bytes", (unsigned long long)max);
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(why, whylen, "read error: %s", strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	return strbuf_detach(&sb, len);
fail:
	if (f != stdin)
		fclose(f);
	strbuf_free(&sb);
	return NULL;
}
