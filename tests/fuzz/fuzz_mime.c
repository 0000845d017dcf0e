/*
 * Fuzz the content pipeline's parse: GMime tree, limits, decoding,
 * charset conversion, uuencode extraction, HTML text and links, libmagic
 * typing and the mime engine. Small limits so the limit paths are hit too.
 */
#include <stddef.h>
#include <stdint.h>

#include "content/pipeline.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Built once: loading libmagic's database per input would dominate the run. */
static struct content_pipeline *pipeline;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct mime_limits limits;

	mime_global_init();
	mime_limits_default(&limits);
	limits.max_depth = 8;
	limits.max_parts = 64;
	limits.max_decoded = 256 * 1024;
	limits.max_header = 16 * 1024;
	pipeline = content_pipeline_new(&limits);
	content_pipeline_add(pipeline, mime_engine_create());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct content_result res;

	content_pipeline_run(pipeline, data, size, NULL, &res);
	content_result_free(&res);
	return 0;
}
