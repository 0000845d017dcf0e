/*
 * postern scan: run raw messages through the content pipeline offline and
 * show what the gateway would decide and why — the operator's tool to
 * check a sample, a false positive, or a new engine.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/bayes.h"
#include "content/mime.h"
#include "content/pipeline.h"
#include "content/rules.h"
#include "content/virus.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/strbuf.h"

/* Without -c: the largest message read, like a generous max_message_size. */
#define SCAN_DEFAULT_MAX_SIZE ((uint64_t)64 * 1024 * 1024)

struct scan_options {
	bool json;
	uint64_t max_size;
	const char *rules_path;       /* --rules: a content rule file to run too */
	const char *bayes_path;       /* --bayes: a Bayes token database to classify with */
	struct config *cfg;           /* -c: limits, [virus] and [rules] as the gateway has them */
};

static void scan_usage(FILE *out)
{
	fprintf(out,
		"usage: postern scan [--json] [-c CONFIG] [--rules FILE] [--bayes DB] FILE...\n"
		"\n"
		"Run each raw message FILE (- for standard input) through the content\n"
		"pipeline and print the verdict (action, score, SCL), every engine result\n"
		"and the MIME parts.\n"
		"\n"
		"  --json     one JSON object per message, one per line\n"
		"  -c CONFIG  scan as the gateway of CONFIG would: [limits] max_message_size,\n"
		"             the virus engine of [virus] (every message, no sampling) and\n"
		"             the rules of [rules] file\n"
		"  --rules FILE  run the content rules of FILE too (see docs/rules.md)\n"
		"  --bayes DB    classify with the Bayesian filter of DB (see postern learn)\n");
}

/* Read all of `path` ("-": stdin) up to max bytes; NULL and errno-style message on failure. */
static char *read_message(const char *path, uint64_t max, size_t *len, char *why, size_t whylen)
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

	printf("%s: action=%s score=%.2f scl=%d", path, content_action_name(res->verdict.action),
	       res->verdict.score, res->verdict.scl);
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
 * The virus engine of -c CONFIG's [virus], NULL when it is off. Offline,
 * every message is scanned: sampling is about the gateway's load.
 */
static int scan_virus_engine(const struct config *cfg, struct virus_engine **out)
{
	struct virus_options vo = { .action = CONTENT_REJECT };
	char err[512];

	*out = NULL;
	if (cfg == NULL || !cfg->virus_enabled)
		return 0;
	if (cfg->virus_database == NULL) {
		fprintf(stderr, "postern scan: [virus] enabled needs a database directory\n");
		return -1;
	}
	if (cfg->virus_action != NULL && content_action_parse(cfg->virus_action, &vo.action) < 0) {
		fprintf(stderr, "postern scan: [virus] action \"%s\" is not an action\n", cfg->virus_action);
		return -1;
	}
	vo.db_dir = cfg->virus_database;
	if ((*out = virus_engine_new(&vo, err, sizeof(err))) == NULL) {
		fprintf(stderr, "postern scan: [virus] database %s: %s\n", cfg->virus_database, err);
		return -1;
	}
	return 0;
}

/* The engines `scan` runs, in the gateway's pipeline order. */
static struct content_pipeline *scan_pipeline(struct virus_engine *virus, struct rules *rules,
					      struct bayes *bayes)
{
	struct content_pipeline *p = content_pipeline_new(NULL);

	content_pipeline_add(p, mime_engine_create());
	if (virus != NULL)
		content_pipeline_add(p, virus_content_engine(virus));
	if (rules != NULL)
		content_pipeline_add(p, rules_engine_create(rules));
	if (bayes != NULL)
		content_pipeline_add(p, bayes_content_engine(bayes));
	return p;
}

/* Returns 0 when scanned, 1 when the file could not be read. */
static int scan_one(struct content_pipeline *p, const char *path, const struct scan_options *o)
{
	struct content_result res;
	char why[256];
	size_t len;
	char *raw = read_message(path, o->max_size, &len, why, sizeof(why));

	if (raw == NULL) {
		fprintf(stderr, "postern scan: %s: %s\n", path, why);
		return 1;
	}
	content_pipeline_run(p, (const unsigned char *)raw, len, NULL, &res);
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

int cli_scan(int argc, char **argv)
{
	struct scan_options o = { .json = false, .max_size = SCAN_DEFAULT_MAX_SIZE };
	struct content_pipeline *p;
	struct virus_engine *virus = NULL;
	struct rules *rules = NULL;
	struct bayes *bayes = NULL;
	char rules_err[1024];
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
	if (o.rules_path == NULL && o.cfg != NULL)
		o.rules_path = o.cfg->rules_file;
	if (o.rules_path != NULL && (rules = rules_load(o.rules_path, rules_err, sizeof(rules_err))) == NULL) {
		fprintf(stderr, "postern scan: %s\n", rules_err);
		status = 1;
		goto done;
	}
	if (scan_virus_engine(o.cfg, &virus) < 0) {
		rules_free(rules);
		status = 1;
		goto done;
	}
	if (o.bayes_path != NULL) {
		struct bayes_store *store = bayes_store_open_sqlite(o.bayes_path, rules_err, sizeof(rules_err));

		if (store == NULL) {
			fprintf(stderr, "postern scan: %s\n", rules_err);
			virus_engine_free(virus);
			rules_free(rules);
			status = 1;
			goto done;
		}
		bayes = bayes_new(store, NULL);
	}
	mime_global_init();
	p = scan_pipeline(virus, rules, bayes);
	for (int i = first; i < argc; i++)
		if (scan_one(p, argv[i], &o) != 0)
			status = 1;
	content_pipeline_free(p);
	virus_engine_free(virus);
	bayes_free(bayes);
	mime_global_shutdown();
done:
	if (o.cfg != NULL)
		config_unref(o.cfg);
	return status;
}
