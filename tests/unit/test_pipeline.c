#include "unit.h"

#include <math.h>
#include <stdlib.h>

#include "content/pipeline.h"

static struct engine_result *add(struct engine_results *r, double score, enum content_action action,
				 enum content_category category, const char *reason)
{
	struct engine_result *res = engine_results_add(r, "test", "SYM");

	res->score = score;
	res->action = action;
	res->category = category;
	snprintf(res->reason, sizeof(res->reason), "%s", reason);
	return res;
}

TEST(pipeline_scl_mapping)
{
	/* The table of content/scoring.h, lower bounds inclusive. */
	static const struct { double score; int scl; } table[] = {
		{ -5.0, 0 }, { 0.0, 0 }, { 0.99, 0 }, { 1.0, 1 }, { 2.0, 2 }, { 3.5, 3 }, { 4.0, 4 },
		{ 5.0, 5 }, { 5.99, 5 }, { 6.0, 6 }, { 7.99, 6 }, { 8.0, 7 }, { 9.99, 7 }, { 10.0, 8 },
		{ 12.99, 8 }, { 13.0, 9 }, { 1000.0, 9 },
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		CHECK_INT(content_scl(table[i].score), table[i].scl);
	CHECK_INT(content_scl(NAN), 0);
}

TEST(pipeline_action_priority)
{
	static const enum content_action order[] = { CONTENT_NONE, CONTENT_TAG, CONTENT_CLEAN,
		CONTENT_DROP, CONTENT_QUARANTINE, CONTENT_DEFER, CONTENT_REJECT };

	for (size_t i = 1; i < sizeof(order) / sizeof(order[0]); i++)
		CHECK(content_action_rank(order[i]) > content_action_rank(order[i - 1]));
	CHECK_STR(content_action_name(CONTENT_QUARANTINE), "quarantine");
	CHECK_STR(content_category_name(CATEGORY_VIRUS), "virus");
}

TEST(pipeline_verdict_strongest_action)
{
	struct engine_results r = { 0 };
	struct content_verdict v;

	content_verdict_compute(&r, &v);
	CHECK_INT(v.action, CONTENT_NONE);
	CHECK_INT(v.scl, 0);
	CHECK_STR(v.reasons, "");

	add(&r, 2.5, CONTENT_TAG, CATEGORY_SPAM, "spammy");
	add(&r, 1.0, CONTENT_NONE, CATEGORY_NONE, "score only");
	add(&r, 0.0, CONTENT_QUARANTINE, CATEGORY_RULE, "exe");
	add(&r, 5.0, CONTENT_REJECT, CATEGORY_VIRUS, "Eicar in part 2");
	add(&r, 0.0, CONTENT_DROP, CATEGORY_DYNAMIC, "drop it");
	add(&r, 1.5, CONTENT_REJECT, CATEGORY_RULE, "double extension");
	content_verdict_compute(&r, &v);
	CHECK_INT(v.action, CONTENT_REJECT);
	CHECK_INT(v.category, CATEGORY_VIRUS);
	CHECK(v.score > 9.99 && v.score < 10.01);
	CHECK_INT(v.scl, 8);
	CHECK_STR(v.reasons, "Eicar in part 2; double extension");

	engine_results_free(&r);
	add(&r, -3.0, CONTENT_TAG, CATEGORY_SPAM, "tag");
	add(&r, 0.0, CONTENT_DEFER, CATEGORY_VIRUS, "scanner down");
	add(&r, 0.0, CONTENT_QUARANTINE, CATEGORY_RULE, "q");
	content_verdict_compute(&r, &v);
	CHECK_INT(v.action, CONTENT_DEFER);
	CHECK_INT(v.scl, 0);
	CHECK_STR(v.reasons, "scanner down");
	engine_results_free(&r);
}

struct counting_state {
	int runs;
	int freed;
};

static void counting_check(void *state, const struct content_message *m, struct engine_results *out)
{
	struct engine_result *r = engine_results_add(out, "count", "COUNT_SEEN");

	r->score = m->mime != NULL && m->mime->nparts > 0 ? 1.0 : 0.0;
	snprintf(r->reason, sizeof(r->reason), "%zu bytes", m->raw_len);
}

static void counting_free(void *state)
{
	free(state);
}

static struct content_pipeline *pipeline_with_engines(void)
{
	struct content_pipeline *p;
	struct content_engine *e = calloc(1, sizeof(*e));

	mime_global_init();
	p = content_pipeline_new(NULL);
	content_pipeline_add(p, mime_engine_create());
	e->name = "count";
	e->state = calloc(1, sizeof(struct counting_state));
	e->check = counting_check;
	e->free = counting_free;
	content_pipeline_add(p, e);
	return p;
}

static const struct engine_result *find(const struct content_result *res, const char *symbol)
{
	for (size_t i = 0; i < res->results.count; i++)
		if (strcmp(res->results.items[i].symbol, symbol) == 0)
			return &res->results.items[i];
	return NULL;
}

TEST(pipeline_run_clean_message)
{
	static const char msg[] = "Subject: hi\r\n\r\nhello\r\n";
	struct content_pipeline *p = pipeline_with_engines();
	struct content_result res;

	CHECK_INT(content_pipeline_count(p), 2);
	content_pipeline_run(p, (const unsigned char *)msg, sizeof(msg) - 1, NULL, &res);
	CHECK_INT(res.results.count, 1);
	CHECK(find(&res, "COUNT_SEEN") != NULL);
	CHECK_INT(res.verdict.action, CONTENT_NONE);
	CHECK_INT(res.mime->nparts, 1);
	content_result_free(&res);
	content_pipeline_free(p);
}

/* MZ header, PE signature: an executable to libmagic (x-dosexec or portable-executable). */
static const char exe_b64[] =
	"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAgAAAAA4fug4AtAnNIbgBTM0hVGhpcyBwcm9ncmFtIGNhbm5vdCBiZSBydW4gaW4gRE9TIG1v\r\n"
	"ZGUuDQ0KJAAAAAAAAABQRQAATAEDAAAAAAAAAAAAAAAAAOAAAgELAQAAAAAAAAAAAAAAAAAAAAAA\r\n";

TEST(pipeline_mime_engine_symbols)
{
	struct content_pipeline *p = pipeline_with_engines();
	struct content_result res;
	char msg[4096];
	const struct engine_result *r;

	snprintf(msg, sizeof(msg),
		 "Subject: invoice\r\n"
		 "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		 "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
		 "--b\r\nContent-Type: application/octet-stream\r\n"
		 "Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n"
		 "Content-Transfer-Encoding: base64\r\n\r\n%s"
		 "--b\r\nContent-Type: application/octet-stream\r\n"
		 "Content-Transfer-Encoding: base64\r\n\r\nQUJD*\r\n"
		 "--b--\r\n", exe_b64);
	content_pipeline_run(p, (const unsigned char *)msg, strlen(msg), NULL, &res);
	r = find(&res, "MIME_EXE_ATTACHMENT");
	CHECK(r != NULL);
	if (r != NULL) {
		CHECK_INT(r->part_index, 2);
		CHECK_INT(r->action, CONTENT_QUARANTINE);
	}
	r = find(&res, "MIME_DOUBLE_EXTENSION");
	CHECK(r != NULL);
	CHECK(find(&res, "MIME_BROKEN_BASE64") != NULL);
	CHECK_INT(res.verdict.action, CONTENT_REJECT);
	CHECK_INT(res.verdict.category, CATEGORY_RULE);
	CHECK(strstr(res.verdict.reasons, "invoice.pdf.exe") != NULL);
	CHECK_INT(res.verdict.scl, 9);
	content_result_free(&res);
	content_pipeline_free(p);
}

TEST(pipeline_mime_engine_limits)
{
	struct mime_limits l;
	struct content_pipeline *p;
	struct content_result res;
	static const char msg[] =
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\n\na\n--b\n\nb\n--b\n\nc\n--b--\n";
	const struct engine_result *r;

	mime_global_init();
	mime_limits_default(&l);
	l.max_parts = 2;
	p = content_pipeline_new(&l);
	content_pipeline_add(p, mime_engine_create());
	content_pipeline_run(p, (const unsigned char *)msg, sizeof(msg) - 1, NULL, &res);
	r = find(&res, "MIME_LIMIT_EXCEEDED");
	CHECK(r != NULL);
	if (r != NULL)
		CHECK(strstr(r->reason, "parts") != NULL);
	CHECK_INT(res.mime->nparts, 2);
	content_result_free(&res);
	content_pipeline_free(p);
}
