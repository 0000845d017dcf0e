/*
 * The "mime" engine: what the parse itself tells about a message. A
 * message the parser had to give up on cannot be fully checked by any
 * other engine, and executables (by content, not by name) or names that
 * hide an executable behind a document extension are the classic
 * malware carriers.
 */
#include "content/pipeline.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define MIME_ENGINE "mime"

#define SCORE_LIMIT          4.0
#define SCORE_BROKEN_BASE64  2.0
#define SCORE_NO_BOUNDARY    2.0
#define SCORE_TRUNCATED      1.0
#define SCORE_BAD_HEADER     1.0
#define SCORE_EXECUTABLE     8.0
#define SCORE_DOUBLE_EXT    10.0

static const char *const executable_types[] = {
	"application/x-dosexec", "application/x-msdownload",
	"application/vnd.microsoft.portable-executable", "application/x-executable",
	"application/x-pie-executable", "application/x-sharedlib", "application/x-mach-binary",
	"application/x-msi", "application/x-ms-shortcut",
};

static const char *const executable_exts[] = {
	"exe", "com", "scr", "pif", "bat", "cmd", "cpl", "js", "jse", "vbs", "vbe", "wsf",
	"wsh", "hta", "msi", "jar", "ps1", "lnk", "reg",
};

static const char *const document_exts[] = {
	"pdf", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "txt", "rtf",
	"jpg", "jpeg", "png", "gif", "zip", "rar", "7z", "htm", "html", "csv",
};

static bool in_list(const char *s, size_t len, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(list[i]) == len && strncasecmp(s, list[i], len) == 0)
			return true;
	return false;
}

static bool is_executable_type(const char *magic_type)
{
	return magic_type != NULL &&
	       in_list(magic_type, strlen(magic_type), executable_types,
		       sizeof(executable_types) / sizeof(executable_types[0]));
}

/* "invoice.pdf.exe", "scan.jpg   .scr": a document extension before an executable one. */
static bool has_double_extension(const char *name)
{
	const char *last = strrchr(name, '.');
	const char *prev;
	size_t prev_len;

	if (last == NULL || last == name ||
	    !in_list(last + 1, strlen(last + 1), executable_exts,
		     sizeof(executable_exts) / sizeof(executable_exts[0])))
		return false;
	prev_len = 0;
	while (last > name && (last[-1] == ' ' || last[-1] == '\t'))
		last--;
	for (prev = last; prev > name && prev[-1] != '.'; prev--)
		prev_len++;
	return prev > name && in_list(prev, prev_len, document_exts,
				      sizeof(document_exts) / sizeof(document_exts[0]));
}

static void add_result(struct engine_results *out, const char *symbol, double score,
		       enum content_action action, int part, const char *reason)
{
	struct engine_result *r = engine_results_add(out, MIME_ENGINE, symbol);

	r->score = score;
	r->category = action != CONTENT_NONE ? CATEGORY_RULE : CATEGORY_NONE;
	r->action = action;
	r->part_index = part;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static void check_message_flags(const struct mime_message *m, struct engine_results *out)
{
	static const struct { unsigned bit; const char *symbol; double score; const char *reason; } flags[] = {
		{ MIME_FLAG_BROKEN_BASE64, "MIME_BROKEN_BASE64", SCORE_BROKEN_BASE64, "invalid base64 content" },
		{ MIME_FLAG_MISSING_BOUNDARY, "MIME_MISSING_BOUNDARY", SCORE_NO_BOUNDARY, "multipart without usable boundary" },
		{ MIME_FLAG_TRUNCATED, "MIME_TRUNCATED", SCORE_TRUNCATED, "multipart without closing boundary" },
		{ MIME_FLAG_BAD_HEADER, "MIME_BAD_HEADER", SCORE_BAD_HEADER, "invalid or conflicting header" },
	};
	char reason[ENGINE_REASON_MAX];

	for (unsigned bit = MIME_LIMIT_DEPTH; bit <= MIME_LIMIT_HEADER; bit <<= 1) {
		if (!(m->limit_exceeded & bit))
			continue;
		snprintf(reason, sizeof(reason), "MIME %s limit exceeded: message not fully parsed",
			 mime_limit_name(bit));
		add_result(out, "MIME_LIMIT_EXCEEDED", SCORE_LIMIT, CONTENT_NONE, -1, reason);
	}
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (m->flags & flags[i].bit)
			add_result(out, flags[i].symbol, flags[i].score, CONTENT_NONE, -1, flags[i].reason);
}

static void check_parts(const struct mime_message *m, struct engine_results *out)
{
	char reason[ENGINE_REASON_MAX];

	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		const char *name = p->filename != NULL ? p->filename : "unnamed";

		if (is_executable_type(p->magic_type)) {
			snprintf(reason, sizeof(reason), "executable attachment (%s) in part %zu (%.120s)",
				 p->magic_type, i, name);
			add_result(out, "MIME_EXE_ATTACHMENT", SCORE_EXECUTABLE, CONTENT_QUARANTINE, (int)i, reason);
		}
		if (p->filename != NULL && has_double_extension(p->filename)) {
			snprintf(reason, sizeof(reason), "double extension in part %zu (%.160s)", i, p->filename);
			add_result(out, "MIME_DOUBLE_EXTENSION", SCORE_DOUBLE_EXT, CONTENT_REJECT, (int)i, reason);
		}
	}
}

static void mime_engine_check(void *state, const struct content_message *msg, struct engine_results *out)
{
	if (msg->mime == NULL)
		return;
	check_message_flags(msg->mime, out);
	check_parts(msg->mime, out);
}

struct content_engine *mime_engine_create(void)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = MIME_ENGINE;
	e->state = NULL;
	e->check = mime_engine_check;
	e->free = NULL;
	return e;
}
