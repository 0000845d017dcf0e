/*
 * postern scan: run raw messages through the content pipeline offline and
 * show what the gateway would decide and why — the operator's tool to
 * check a sample, a false positive, or a new engine.
 */
#include "cli/cli.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "content/content_stage.h"
#include "content/scoring.h"
#include "content/mime.h"
#include "content/pipeline.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"

/* Without -c: the largest message read, like a generous max_message_size. */
#define SCAN_DEFAULT_MAX_SIZE ((uint64_t)64 * 1024 * 1024)

struct scan_options {
	bool json;
	uint64_t max_size;
	const char *rules_path;       /* --rules: a content rule file to run too */
	const char *bayes_path;       /* --bayes: a Bayes token database to classify with */
	struct config *cfg;           /* -c's, or the offline defaults: the content stage is built from it */
};

static void scan_usage(FILE *out)
{
	fprintf(out,
		"usage: postern scan [--json] [-c CONFIG] [--rules FILE] [--bayes DB] FILE...\n"
		"\n"
		"Run each raw message FILE (- for standard input) through the content\n"
		"stage and print the verdict (action, score, SCL, level), every engine\n"
		"result and the MIME parts. Nothing is learned.\n"
		"\n"
		"  --json     one JSON object per message, one per line\n"
		"  -c CONFIG  scan as the gateway of CONFIG would: its [limits], engines,\n"
		"             [scoring] and [actions] (the virus engine scans every\n"
		"             message); without it only the MIME and phishing checks and\n"
		"             the engines asked for below run, offline\n"
		"  --rules FILE  run the content rules of FILE (see docs/rules.md)\n"
		"  --bayes DB    classify with the Bayesian filter of DB (see postern learn)\n");
}


/* jansson wants UTF-8: header-derived strings may not be, so degrade bytes to '?'. */
static json_t *json_text(const char *s)
{
	json_t *j;
	char *copy;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *bits_json(unsigned bits, const char *(*name)(unsigned))
{
	json_t *a = json_array();

	for (unsigned bit = 1; bit != 0 && bit <= bits; bit <<= 1)
		if (bits & bit)
			json_array_append_new(a, json_string(name(bit)));
	return a;
}

static void print_json(const char *path, const struct content_result *res)
{
	const struct mime_message *m = res->mime;
	json_t *o = json_object(), *results = json_array(), *parts = json_array();
	char *line;

	json_object_set_new(o, "file", json_text(path));
	json_object_set_new(o, "action", json_string(content_action_name(res->verdict.action)));
	json_object_set_new(o, "category", json_string(content_category_name(res->verdict.category)));
	json_object_set_new(o, "score", json_real(res->verdict.score));
	json_object_set_new(o, "scl", json_integer(res->verdict.scl));
	json_object_set_new(o, "level", json_string(spam_level_name(res->verdict.level)));
	json_object_set_new(o, "junk", json_boolean(res->verdict.junk));
	json_object_set_new(o, "reasons", json_text(res->verdict.reasons));
	json_object_set_new(o, "subject", json_text(m->subject));
	json_object_set_new(o, "limit_exceeded", bits_json(m->limit_exceeded, mime_limit_name));
	json_object_set_new(o, "flags", bits_json(m->flags, mime_flag_name));
	for (size_t i = 0; i < res->results.count; i++) {
		const struct engine_result *r = &res->results.items[i];

		json_array_append_new(results, json_pack("{s:o,s:o,s:f,s:s,s:s,s:o,s:i}",
			"engine", json_text(r->engine), "symbol", json_text(r->symbol), "score", r->score,
			"action", content_action_name(r->action), "category", content_category_name(r->category),
			"reason", json_text(r->reason), "part", r->part_index));
	}
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		json_t *part = json_pack("{s:i,s:i,s:i,s:o,s:o,s:o,s:I,s:b}",
			"index", (int)i, "parent", p->parent, "depth", (int)p->depth,
			"type", json_text(p->type), "subtype", json_text(p->subtype),
			"magic_type", json_text(p->magic_type), "size", (json_int_t)p->body_len,
			"attachment", p->is_attachment);

		json_object_set_new(part, "name", json_text(p->filename));
		if (p->html != NULL)
			json_object_set_new(part, "links", json_integer((json_int_t)p->html->nlinks));
		json_array_append_new(parts, part);
	}
	json_object_set_new(o, "results", results);
	json_object_set_new(o, "parts", parts);
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	printf("%s\n", line);
	free(line);
	json_decref(o);
}

static void print_bits(const char *label, unsigned bits, const char *(*name)(unsigned))
{
	if (bits == 0)
		return;
	printf("  %s:", label);
	for (unsigned bit = 1; bit != 0 && bit <= bits; bit <<= 1)
		if (bits & bit)
			printf(" %s", name(bit));
	printf("\n");
}

static void print_text(const char *path, const struct content_result *res)
{
	const struct mime_message *m = res->mime;

	printf("%s: action=%s score=%.2f scl=%d level=%s%s", path, content_action_name(res->verdict.action),
	       res->verdict.score, res->verdict.scl, spam_level_name(res->verdict.level),
	       res->verdict.junk ? " junk" : "");
	if (res->verdict.action != CONTENT_NONE)
		printf(" category=%s reasons=\"%s\"", content_category_name(res->verdict.category),
		       res->verdict.reasons);
	printf("\n");
	print_bits("limit exceeded", m->limit_exceeded, mime_limit_name);
	print_bits("anomalies", m->flags, mime_flag_name);
	for (size_t i = 0; i < res->results.count; i++) {
		const struct engine_result *r = &res->results.items[i];

		printf("  result %s %s score=%.2f action=%s part=%d reason=\"%s\"\n", r->engine, r->symbol,
		       r->score, content_action_name(r->action), r->part_index, r->reason);
	}
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		printf("  part %zu parent=%d %s/%s size=%zu", i, p->parent, p->type, p->subtype, p->body_len);
		if (p->filename != NULL)
			printf(" name=\"%s\"", p->filename);
		if (p->magic_type != NULL)
			printf(" magic=%s", p->magic_type);
		if (p->html != NULL)
			printf(" links=%zu", p->html->nlinks);
		printf("\n");
	}
}

/*
 * The gateway's own content stage for the scan's config: the same
 * engines, scoring and [actions]. Offline scans change three things:
 * every message is virus-scanned (sampling is about the gateway's load),
 * and --rules/--bayes name the files to use.
 */
static int scan_set(struct config *cfg, const char *section, const char *key, const char *value)
{
	char why[512], *abs = NULL;
	int rc;

	/* Paths in a config are absolute; on the command line they may be relative. */
	if (strcmp(key, "file") == 0 || strcmp(key, "database") == 0) {
		if (value[0] != '/') {
			char *cwd = getcwd(NULL, 0);

			abs = xasprintf("%s/%s", cwd != NULL ? cwd : ".", value);
			free(cwd);
			value = abs;
		}
	}
	rc = config_set(cfg, section, key, value, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "postern scan: [%s] %s: %s\n", section, key, why);
	free(abs);
	return rc;
}

static struct content_stage *scan_stage(struct postern *pt, struct scan_options *o)
{
	char err[1024];
	struct content_stage *cs;

	/* The history engine needs a session (it does nothing offline): its database stays closed. */
	if (scan_set(o->cfg, "virus", "sample_percent", "100") < 0 ||
	    scan_set(o->cfg, "content", "enabled", "yes") < 0 ||
	    scan_set(o->cfg, "history", "enabled", "no") < 0 ||
	    (o->rules_path != NULL && scan_set(o->cfg, "rules", "file", o->rules_path) < 0) ||
	    (o->bayes_path != NULL && (scan_set(o->cfg, "bayes", "enabled", "yes") < 0 ||
				       scan_set(o->cfg, "bayes", "database", o->bayes_path) < 0)))
		return NULL;
	memset(pt, 0, sizeof(*pt));
	pt->cfg = o->cfg;
	if ((cs = content_stage_new(pt, o->cfg, err, sizeof(err))) == NULL)
		fprintf(stderr, "postern scan: %s\n", err);
	return cs;
}

/* Returns 0 when scanned, 1 when the file could not be read. */
static int scan_one(struct content_stage *cs, const char *path, const struct scan_options *o)
{
	struct content_result res;
	char why[256];
	size_t len;
	char *raw = cli_read_file(path, o->max_size, &len, why, sizeof(why));

	if (raw == NULL) {
		fprintf(stderr, "postern scan: %s: %s\n", path, why);
		return 1;
	}
	content_stage_run(cs, (const unsigned char *)raw, len, &res);
	if (o->json)
		print_json(path, &res);
	else
		print_text(path, &res);
	fflush(stdout);
	content_result_free(&res);
	free(raw);
	return 0;
}

static int scan_load_config(const char *path, struct scan_options *o)
{
	struct config_error err;
	struct config *cfg = config_load(path, &err);
	char message[1024];

	if (cfg == NULL) {
		config_error_format(&err, message, sizeof(message));
		fprintf(stderr, "%s\n", message);
		return -1;
	}
	if (cfg->max_message_size > 0)
		o->max_size = cfg->max_message_size;
	if (o->cfg != NULL)
		config_unref(o->cfg);
	o->cfg = cfg;
	return 0;
}

/*
 * Without -c: the built-in defaults, offline — no DKIM/DMARC look-ups, no
 * fuzzy or history databases, no virus scan — so only the engines asked
 * for (--rules, --bayes) and the MIME and phishing checks run.
 */
static int scan_default_config(struct scan_options *o)
{
	static const char text[] = "[virus]\nenabled = no\n[dkim]\nverify = no\n"
				   "[fuzzy]\nenabled = no\n[history]\nenabled = no\n";
	struct config_error err;
	char message[1024];

	if ((o->cfg = config_parse("(defaults)", text, sizeof(text) - 1, &err)) == NULL) {
		config_error_format(&err, message, sizeof(message));
		fprintf(stderr, "postern scan: %s\n", message);
		return -1;
	}
	return 0;
}

int cli_scan(int argc, char **argv)
{
	struct scan_options o = { .json = false, .max_size = SCAN_DEFAULT_MAX_SIZE };
	struct content_stage *cs;
	struct postern pt;
	int first = 0, status = 0;

	for (int i = 1; i < argc && first == 0; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			scan_usage(stdout);
			goto done;
		} else if (strcmp(argv[i], "--json") == 0) {
			o.json = true;
		} else if (strcmp(argv[i], "-c") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "postern scan: -c needs a FILE\n");
				scan_usage(stderr);
				status = 2;
				goto done;
			}
			if (scan_load_config(argv[++i], &o) < 0) {
				status = 1;
				goto done;
			}
		} else if (strcmp(argv[i], "--rules") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "postern scan: --rules needs a FILE\n");
				scan_usage(stderr);
				status = 2;
				goto done;
			}
			o.rules_path = argv[++i];
		} else if (strcmp(argv[i], "--bayes") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "postern scan: --bayes needs a DB\n");
				scan_usage(stderr);
				status = 2;
				goto done;
			}
			o.bayes_path = argv[++i];
		} else if (strcmp(argv[i], "--") == 0) {
			first = i + 1;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "postern scan: unknown option '%s'\n", argv[i]);
			scan_usage(stderr);
			status = 2;
			goto done;
		} else {
			first = i;
		}
	}
	if (first == 0 || first >= argc) {
		fprintf(stderr, "postern scan: no message to scan\n");
		scan_usage(stderr);
		status = 2;
		goto done;
	}
	if (o.cfg == NULL && scan_default_config(&o) < 0) {
		status = 1;
		goto done;
	}
	mime_global_init();
	if ((cs = scan_stage(&pt, &o)) == NULL) {
		status = 1;
	} else {
		for (int i = first; i < argc; i++)
			if (scan_one(cs, argv[i], &o) != 0)
				status = 1;
		content_stage_unref(cs);
	}
	content_stage_shutdown(&pt);
	mime_global_shutdown();
done:
	if (o.cfg != NULL)
		config_unref(o.cfg);
	return status;
}
