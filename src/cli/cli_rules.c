/*
 * `postern rules`: the administrator's tools for content rule files —
 * check one (errors with file:line:column), print it normalised or as a
 * table, and import it: validate, then atomically replace the installed
 * file with the normalised text so the gateway never reads a half-written
 * or invalid rule file.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content/rules.h"
#include "core/alloc.h"
#include "core/strbuf.h"

/* The export of a 4 MiB file grows little: quoting and indentation. */
#define RULES_EXPORT_MAX (4 * RULES_MAX_FILE)

static void rules_usage(FILE *out)
{
	fprintf(out,
		"usage: postern rules check FILE\n"
		"       postern rules export FILE\n"
		"       postern rules overview FILE\n"
		"       postern rules import FILE DEST\n"
		"\n"
		"  check     validate FILE; errors name file:line:column\n"
		"  export    print FILE normalised (the form import installs)\n"
		"  overview  print a table: rule, category, result, what it matches\n"
		"  import    validate FILE, then atomically replace DEST with its export\n");
}

static struct rules *load_or_complain(const char *path)
{
	char err[1024];
	struct rules *r = rules_load(path, err, sizeof(err));

	if (r == NULL)
		fprintf(stderr, "postern rules: %s\n", err);
	return r;
}

/* Print export or overview of `path` to stdout. */
static int rules_print(const char *path, int (*print)(const struct rules *, struct strbuf *))
{
	struct rules *r = load_or_complain(path);
	struct strbuf sb;
	int status = 0;

	if (r == NULL)
		return 1;
	strbuf_init(&sb, RULES_EXPORT_MAX);
	if (print(r, &sb) < 0) {
		fprintf(stderr, "postern rules: %s: output larger than %zu bytes\n", path, (size_t)RULES_EXPORT_MAX);
		status = 1;
	} else if (sb.len > 0 && fwrite(sb.data, 1, sb.len, stdout) != sb.len) {
		fprintf(stderr, "postern rules: writing standard output: %s\n", strerror(errno));
		status = 1;
	}
	strbuf_free(&sb);
	rules_free(r);
	return status;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* tmp file beside dest + fsync + rename + fsync of the directory. */
static int install_atomically(const char *dest, const char *data, size_t len)
{
	char *tmp = xasprintf("%s.tmp.XXXXXX", dest);
	char *dircopy = xstrdup(dest);
	int fd = mkstemp(tmp), dfd, rc = -1;

	if (fd < 0) {
		fprintf(stderr, "postern rules: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0644) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "postern rules: %s: %s\n", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, dest) < 0) {
		fprintf(stderr, "postern rules: %s: %s\n", dest, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if ((dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	free(tmp);
	free(dircopy);
	return rc;
}

/* Validate, normalise, check the normalised text parses too, then install it. */
static int rules_import(const char *path, const char *dest)
{
	struct rules *r = load_or_complain(path), *again;
	struct strbuf sb;
	char err[1024];
	int status = 1;

	if (r == NULL)
		return 1;
	strbuf_init(&sb, RULES_EXPORT_MAX);
	if (rules_export(r, &sb) < 0) {
		fprintf(stderr, "postern rules: %s: export larger than %zu bytes\n", path, (size_t)RULES_EXPORT_MAX);
		goto out;
	}
	if ((again = rules_parse(dest, sb.data ? sb.data : "", sb.len, err, sizeof(err))) == NULL) {
		fprintf(stderr, "postern rules: normalised text does not parse back: %s\n", err);
		goto out;
	}
	rules_free(again);
	if (install_atomically(dest, sb.data ? sb.data : "", sb.len) == 0) {
		printf("%s: %zu rules installed as %s\n", path, rules_count(r), dest);
		status = 0;
	}
out:
	strbuf_free(&sb);
	rules_free(r);
	return status;
}

int cli_rules(int argc, char **argv)
{
	struct rules *r;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		rules_usage(stdout);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "check") == 0) {
		if ((r = load_or_complain(argv[2])) == NULL)
			return 1;
		printf("%s: OK, %zu rules\n", argv[2], rules_count(r));
		rules_free(r);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "export") == 0)
		return rules_print(argv[2], rules_export);
	if (argc == 3 && strcmp(argv[1], "overview") == 0)
		return rules_print(argv[2], rules_overview);
	if (argc == 4 && strcmp(argv[1], "import") == 0)
		return rules_import(argv[2], argv[3]);
	rules_usage(stderr);
	return 2;
}
