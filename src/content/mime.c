/*
 * MIME parsing with GMime 3: GMime builds the tree (it is the robust part:
 * RFC 2045-2049, 2047, 2231, broken input), this file flattens it into
 * struct mime_message under hard limits, decodes bodies with a bounded
 * read, converts text to UTF-8, finds uuencoded files in text, and types
 * attachments with libmagic.
 */
#include "content/mime.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <iconv.h>
#include <magic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/strbuf.h"

#define LOG_MODULE "mime"
#include "core/log.h"

#define MIME_MAGIC_BYTES  (64 * 1024)   /* what libmagic looks at */
#define MIME_FIELD_MAX    1024          /* bytes kept of a type, charset, encoding */
#define MIME_NAME_MAX     1024          /* bytes kept of a file name */
#define MIME_READ_CHUNK   8192

static const char utf8_replacement[] = "\xEF\xBF\xBD";

struct mime_magic {
	pthread_mutex_t lock;   /* a magic_t is not safe to share between threads */
	magic_t cookie;
};

/* One parse: the message being filled and where the walk must stop. */
struct parse_state {
	struct mime_message *m;
	const struct mime_limits *limits;
	struct mime_magic *magic;
	bool stop;
};

void mime_global_init(void)
{
	g_mime_init();
}

void mime_global_shutdown(void)
{
	g_mime_shutdown();
}

void mime_limits_default(struct mime_limits *l)
{
	l->max_depth = MIME_MAX_DEPTH_DEFAULT;
	l->max_parts = MIME_MAX_PARTS_DEFAULT;
	l->max_decoded = MIME_MAX_DECODED_DEFAULT;
	l->max_header = MIME_MAX_HEADER_DEFAULT;
}

const char *mime_limit_name(unsigned bit)
{
	switch (bit) {
	case MIME_LIMIT_DEPTH: return "depth";
	case MIME_LIMIT_PARTS: return "parts";
	case MIME_LIMIT_DECODED: return "decoded";
	case MIME_LIMIT_HEADER: return "header";
	}
	return "?";
}

const char *mime_flag_name(unsigned bit)
{
	switch (bit) {
	case MIME_FLAG_BROKEN_BASE64: return "broken_base64";
	case MIME_FLAG_MISSING_BOUNDARY: return "missing_boundary";
	case MIME_FLAG_TRUNCATED: return "truncated";
	case MIME_FLAG_BAD_HEADER: return "bad_header";
	}
	return "?";
}

struct mime_magic *mime_magic_open(void)
{
	struct mime_magic *mg;
	magic_t cookie = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS);

	if (cookie == NULL) {
		log_error("magic_open failed: %s", strerror(errno));
		return NULL;
	}
	if (magic_load(cookie, NULL) != 0) {
		log_error("cannot load the libmagic database: %s", magic_error(cookie));
		magic_close(cookie);
		return NULL;
	}
	mg = xcalloc(1, sizeof(*mg));
	pthread_mutex_init(&mg->lock, NULL);
	mg->cookie = cookie;
	return mg;
}

void mime_magic_close(struct mime_magic *mg)
{
	if (mg == NULL)
		return;
	magic_close(mg->cookie);
	pthread_mutex_destroy(&mg->lock);
	free(mg);
}

static char *magic_type_of(struct mime_magic *mg, const unsigned char *data, size_t len)
{
	const char *type;
	char *copy = NULL;

	if (mg == NULL)
		return NULL;
	pthread_mutex_lock(&mg->lock);
	type = magic_buffer(mg->cookie, data, len < MIME_MAGIC_BYTES ? len : MIME_MAGIC_BYTES);
	if (type != NULL)
		copy = xstrndup(type, MIME_FIELD_MAX);
	pthread_mutex_unlock(&mg->lock);
	return copy;
}

/* A bounded, lower-cased, trimmed copy of a header-derived string, or NULL. */
static char *field_copy(const char *s, size_t max, bool lower)
{
	size_t len;
	char *copy;

	if (s == NULL)
		return NULL;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	len = strnlen(s, max);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	if (len == 0)
		return NULL;
	copy = xstrndup(s, len);
	if (lower)
		for (char *p = copy; *p; p++)
			*p = g_ascii_tolower(*p);
	return copy;
}

/* Append `s` as UTF-8, every invalid byte (and NUL) as U+FFFD. Returns -1 when the limit is hit. */
static int append_valid_utf8(struct strbuf *sb, const char *s, size_t len)
{
	while (len > 0) {
		const gchar *end;
		size_t good;

		if (g_utf8_validate_len(s, len, &end))
			return strbuf_append(sb, s, len);
		good = (size_t)(end - s);
		if (strbuf_append(sb, s, good) < 0 || strbuf_append(sb, utf8_replacement, 3) < 0)
			return -1;
		s += good + 1;
		len -= good + 1;
	}
	return 0;
}

static bool charset_is_utf8_compatible(const char *charset)
{
	return charset == NULL || g_ascii_strcasecmp(charset, "utf-8") == 0 ||
	       g_ascii_strcasecmp(charset, "utf8") == 0 || g_ascii_strcasecmp(charset, "us-ascii") == 0 ||
	       g_ascii_strcasecmp(charset, "ascii") == 0;
}

/*
 * Convert with iconv, one U+FFFD per byte it cannot convert, so a wrong
 * charset label degrades the text instead of losing it. An unknown
 * charset is read as UTF-8. Returns -1 when the limit of `sb` is hit.
 */
static int append_as_utf8(struct strbuf *sb, const char *charset, const char *in, size_t len)
{
	char out[MIME_READ_CHUNK];
	iconv_t cd;
	int rc = 0;

	if (charset_is_utf8_compatible(charset))
		return append_valid_utf8(sb, in, len);
	cd = g_mime_iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return append_valid_utf8(sb, in, len);
	while (len > 0 && rc == 0) {
		char *ip = (char *)in, *op = out;
		size_t inleft = len, outleft = sizeof(out);
		size_t r = iconv(cd, &ip, &inleft, &op, &outleft);
		int saved = errno;

		rc = append_valid_utf8(sb, out, (size_t)(op - out));
		in = ip;
		len = inleft;
		if (r != (size_t)-1 || saved == E2BIG || rc < 0)
			continue;
		rc = strbuf_append(sb, utf8_replacement, 3);
		in++;
		len--;
	}
	if (rc == 0) {
		char *op = out;
		size_t outleft = sizeof(out);

		iconv(cd, NULL, NULL, &op, &outleft);
		rc = append_valid_utf8(sb, out, (size_t)(op - out));
	}
	g_mime_iconv_close(cd);
	return rc;
}

static size_t header_list_bytes(GMimeHeaderList *headers)
{
	size_t total = 0;
	int n = headers != NULL ? g_mime_header_list_get_count(headers) : 0;

	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(headers, i);
		const char *name = g_mime_header_get_raw_name(h);
		const char *value = g_mime_header_get_raw_value(h);

		total += (name ? strlen(name) : 0) + (value ? strlen(value) : 0) + 2;
	}
	return total;
}

static bool header_over_limit(struct parse_state *st, GMimeObject *obj)
{
	if (header_list_bytes(g_mime_object_get_header_list(obj)) <= st->limits->max_header)
		return false;
	st->m->limit_exceeded |= MIME_LIMIT_HEADER;
	st->stop = true;
	return true;
}

/* A new part at the end of the array; -1 (and stop) when max_parts is reached. */
static int part_new(struct parse_state *st, int parent, unsigned depth)
{
	struct mime_message *m = st->m;

	if (m->nparts >= st->limits->max_parts) {
		m->limit_exceeded |= MIME_LIMIT_PARTS;
		st->stop = true;
		return -1;
	}
	if (m->nparts == m->parts_cap) {
		m->parts_cap = m->parts_cap ? m->parts_cap * 2 : 8;
		m->parts = xreallocarray(m->parts, m->parts_cap, sizeof(*m->parts));
	}
	memset(&m->parts[m->nparts], 0, sizeof(m->parts[0]));
	m->parts[m->nparts].parent = parent;
	m->parts[m->nparts].depth = depth;
	return (int)m->nparts++;
}

/*
 * RFC 2045 base64 is the alphabet, line breaks and final '=' padding.
 * Anything else, data after padding, or a cut final quantum means the
 * sender's encoder is broken or the content is built to confuse scanners.
 */
static bool base64_is_broken(GMimeStream *stream)
{
	char buf[MIME_READ_CHUNK];
	size_t count = 0, pad = 0;
	ssize_t n;

	g_mime_stream_reset(stream);
	while ((n = g_mime_stream_read(stream, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)buf[i];

			if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
				continue;
			if (c == '=') {
				pad++;
				count++;
				continue;
			}
			if (!(g_ascii_isalnum(c) || c == '+' || c == '/') || pad > 0)
				return true;
			count++;
		}
	}
	return pad > 2 || count % 4 != 0;
}

/* Read a part's content through GMime's decoder, at most `limit` bytes. */
static int decode_content(GMimeDataWrapper *content, struct strbuf *out, bool *broken_base64)
{
	GMimeStream *stream = g_mime_data_wrapper_get_stream(content);
	GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(content);
	GMimeStream *filtered;
	char buf[MIME_READ_CHUNK];
	ssize_t n;
	int rc = 0;

	if (stream == NULL)
		return 0;
	if (enc == GMIME_CONTENT_ENCODING_BASE64)
		*broken_base64 = base64_is_broken(stream);
	g_mime_stream_reset(stream);
	filtered = g_mime_stream_filter_new(stream);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
	    enc == GMIME_CONTENT_ENCODING_UUENCODE) {
		GMimeFilter *decoder = g_mime_filter_basic_new(enc, FALSE);

		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), decoder);
		g_object_unref(decoder);
	}
	while (rc == 0 && (n = g_mime_stream_read(filtered, buf, sizeof(buf))) > 0) {
		if (strbuf_append(out, buf, (size_t)n) < 0) {
			size_t room = out->limit - out->len;

			strbuf_append(out, buf, room);
			rc = -1;
		}
	}
	g_object_unref(filtered);
	return rc;
}

static void decoded_over_limit(struct parse_state *st)
{
	st->m->limit_exceeded |= MIME_LIMIT_DECODED;
	st->stop = true;
}

static size_t decoded_room(const struct parse_state *st)
{
	return st->limits->max_decoded - st->m->decoded_total;
}

static unsigned uu_char(char c)
{
	return (unsigned)(c - ' ') & 63;
}

/*
 * Decode the lines of one uuencoded block (after its "begin" line) up to
 * "end"; a malformed line ends the block. Old encoders strip trailing
 * spaces, so missing characters count as zero.
 */
static int uu_decode_block(const char **pos, const char *end, struct strbuf *out)
{
	const char *p = *pos;
	int rc = 0;

	while (p < end && rc == 0) {
		const char *line = p;
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t len = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
		unsigned char bytes[66];
		unsigned n, nb = 0;
		bool bad = false;

		p = eol != NULL ? eol + 1 : end;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == 0 || (len == 3 && memcmp(line, "end", 3) == 0))
			break;
		for (size_t i = 0; i < len; i++)
			bad |= line[i] < ' ' || line[i] > '`';
		if (bad)
			break;
		n = uu_char(line[0]);
		for (size_t g = 0; nb < n; g++) {
			unsigned c[4];

			for (size_t k = 0; k < 4; k++) {
				size_t idx = 1 + g * 4 + k;

				c[k] = idx < len ? uu_char(line[idx]) : 0;
			}
			bytes[nb++] = (unsigned char)(c[0] << 2 | c[1] >> 4);
			if (nb < n)
				bytes[nb++] = (unsigned char)(c[1] << 4 | c[2] >> 2);
			if (nb < n)
				bytes[nb++] = (unsigned char)(c[2] << 6 | c[3]);
		}
		rc = strbuf_append(out, bytes, nb);
	}
	*pos = p;
	return rc;
}

/* Is `line` "begin MODE NAME" (MODE 3 or 4 octal digits)? Sets the name. */
static bool uu_begin_line(const char *line, size_t len, const char **name, size_t *name_len)
{
	size_t i = 6, digits = 0;

	if (len < 10 || memcmp(line, "begin ", 6) != 0)
		return false;
	while (i < len && line[i] >= '0' && line[i] <= '7' && digits < 5) {
		i++;
		digits++;
	}
	if ((digits != 3 && digits != 4) || i >= len || line[i] != ' ')
		return false;
	*name = line + i + 1;
	*name_len = len - i - 1;
	return *name_len > 0;
}

static void leaf_magic_type(struct parse_state *st, int idx)
{
	struct mime_part *part = &st->m->parts[idx];

	part->magic_type = magic_type_of(st->magic, part->body, part->body_len);
}

/* Files uuencoded inside a text part become parts of their own, children of it. */
static void extract_uuencoded(struct parse_state *st, int text_idx)
{
	const char *p = (const char *)st->m->parts[text_idx].body;
	const char *end = p + st->m->parts[text_idx].body_len;

	while (p < end && !st->stop) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t len = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
		const char *name;
		size_t name_len;
		struct strbuf data;
		struct mime_part *part;
		int idx, rc;

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (!uu_begin_line(p, len, &name, &name_len)) {
			p = eol != NULL ? eol + 1 : end;
			continue;
		}
		p = eol != NULL ? eol + 1 : end;
		if ((idx = part_new(st, text_idx, st->m->parts[text_idx].depth + 1)) < 0)
			return;
		strbuf_init(&data, decoded_room(st));
		rc = uu_decode_block(&p, end, &data);
		part = &st->m->parts[idx];
		part->type = xstrdup("application");
		part->subtype = xstrdup("octet-stream");
		part->encoding = xstrdup("x-uuencode");
		part->filename = field_copy(name, name_len < MIME_NAME_MAX ? name_len : MIME_NAME_MAX, false);
		part->is_attachment = true;
		part->from_uuencode = true;
		part->body = (unsigned char *)strbuf_detach(&data, &part->body_len);
		st->m->decoded_total += part->body_len;
		leaf_magic_type(st, idx);
		if (rc < 0)
			decoded_over_limit(st);
	}
}

/* Text leaves: UTF-8 text, and for HTML what a reader sees of it. */
static void leaf_text(struct parse_state *st, int idx)
{
	struct mime_part *part = &st->m->parts[idx];
	struct strbuf text;
	int rc;

	strbuf_init(&text, decoded_room(st));
	rc = append_as_utf8(&text, part->charset, (const char *)part->body, part->body_len);
	part->text = strbuf_detach(&text, &part->text_len);
	st->m->decoded_total += part->text_len;
	if (rc < 0) {
		decoded_over_limit(st);
		return;
	}
	if (strcmp(part->subtype, "html") == 0) {
		struct html_limits hl;

		html_limits_default(&hl);
		part->html = xcalloc(1, sizeof(*part->html));
		html_extract(part->text, part->text_len, &hl, part->html);
	} else {
		extract_uuencoded(st, idx);
	}
}

static void leaf_decode(struct parse_state *st, int idx, GMimePart *gpart)
{
	GMimeDataWrapper *content = g_mime_part_get_content(gpart);
	struct mime_part *part;
	struct strbuf body;
	bool broken = false;
	int rc = 0;

	strbuf_init(&body, decoded_room(st));
	if (content != NULL)
		rc = decode_content(content, &body, &broken);
	part = &st->m->parts[idx];
	part->body = (unsigned char *)strbuf_detach(&body, &part->body_len);
	part->broken_base64 = broken;
	if (broken)
		st->m->flags |= MIME_FLAG_BROKEN_BASE64;
	st->m->decoded_total += part->body_len;
	if (rc < 0)
		decoded_over_limit(st);
	if (strcmp(part->type, "text") == 0) {
		if (!st->stop)
			leaf_text(st, idx);
	} else {
		leaf_magic_type(st, idx);
	}
}

static char *object_filename(GMimeObject *obj)
{
	const char *name;

	if (GMIME_IS_PART(obj))
		name = g_mime_part_get_filename(GMIME_PART(obj));
	else if ((name = g_mime_object_get_content_disposition_parameter(obj, "filename")) == NULL)
		name = g_mime_object_get_content_type_parameter(obj, "name");
	return field_copy(name, MIME_NAME_MAX, false);
}

static void part_describe(struct mime_part *part, GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);

	part->type = field_copy(ct ? g_mime_content_type_get_media_type(ct) : NULL, MIME_FIELD_MAX, true);
	part->subtype = field_copy(ct ? g_mime_content_type_get_media_subtype(ct) : NULL, MIME_FIELD_MAX, true);
	if (part->type == NULL)
		part->type = xstrdup("application");
	if (part->subtype == NULL)
		part->subtype = xstrdup("octet-stream");
	part->charset = field_copy(g_mime_object_get_content_type_parameter(obj, "charset"), MIME_FIELD_MAX, false);
	part->disposition = field_copy(g_mime_object_get_disposition(obj), MIME_FIELD_MAX, true);
	part->encoding = field_copy(g_mime_object_get_header(obj, "Content-Transfer-Encoding"), MIME_FIELD_MAX, true);
	part->filename = object_filename(obj);
	part->is_attachment = part->filename != NULL ||
		(part->disposition != NULL && strcmp(part->disposition, "attachment") == 0);
}

static void walk_object(struct parse_state *st, GMimeObject *obj, int parent, unsigned depth);

static void walk_children(struct parse_state *st, GMimeObject *obj, int idx, unsigned depth)
{
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);

		if (n == 0)
			st->m->flags |= MIME_FLAG_MISSING_BOUNDARY;
		for (int i = 0; i < n && !st->stop; i++)
			walk_object(st, g_mime_multipart_get_part(mp, i), idx, depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		GMimeObject *body = inner != NULL ? g_mime_message_get_mime_part(inner) : NULL;

		if (body != NULL && !header_over_limit(st, GMIME_OBJECT(inner)))
			walk_object(st, body, idx, depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		leaf_decode(st, idx, GMIME_PART(obj));
	}
}

/* Depth-first, so parts come in document order; recursion is bounded by max_depth. */
static void walk_object(struct parse_state *st, GMimeObject *obj, int parent, unsigned depth)
{
	int idx;

	if (depth > st->limits->max_depth) {
		st->m->limit_exceeded |= MIME_LIMIT_DEPTH;
		st->stop = true;
		return;
	}
	if (header_over_limit(st, obj) || (idx = part_new(st, parent, depth)) < 0)
		return;
	part_describe(&st->m->parts[idx], obj);
	walk_children(st, obj, idx, depth);
}

static void parser_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer data)
{
	struct parse_state *st = data;

	switch (code) {
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
	case GMIME_WARN_MALFORMED_MULTIPART:
		st->m->flags |= MIME_FLAG_MISSING_BOUNDARY;
		break;
	case GMIME_WARN_TRUNCATED_MESSAGE:
		st->m->flags |= MIME_FLAG_TRUNCATED;
		break;
	case GMIME_CRIT_INVALID_HEADER_NAME:
	case GMIME_CRIT_CONFLICTING_HEADER:
		st->m->flags |= MIME_FLAG_BAD_HEADER;
		break;
	case GMIME_CRIT_NESTING_OVERFLOW:
		st->m->limit_exceeded |= MIME_LIMIT_DEPTH;
		break;
	default:
		break;
	}
}

static char *address_list_text(InternetAddressList *list)
{
	char *s, *copy;

	if (list == NULL || internet_address_list_length(list) == 0)
		return NULL;
	s = internet_address_list_to_string(list, NULL, FALSE);
	copy = field_copy(s, MIME_MAX_HEADER_DEFAULT, false);
	g_free(s);
	return copy;
}

static void message_headers(struct parse_state *st, GMimeMessage *msg)
{
	st->m->header_bytes = header_list_bytes(g_mime_object_get_header_list(GMIME_OBJECT(msg)));
	st->m->subject = field_copy(g_mime_message_get_subject(msg), st->limits->max_header, false);
	st->m->from = address_list_text(g_mime_message_get_from(msg));
	st->m->to = address_list_text(g_mime_message_get_to(msg));
}

struct mime_message *mime_parse(const unsigned char *raw, size_t len,
				const struct mime_limits *limits, struct mime_magic *magic)
{
	const char *fallback_charsets[] = { "UTF-8", "windows-1252", NULL };
	struct mime_message *m = xcalloc(1, sizeof(*m));
	struct parse_state st = { .m = m, .limits = limits, .magic = magic, .stop = false };
	GMimeParserOptions *options = g_mime_parser_options_new();
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer((const char *)raw, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg;

	g_mime_parser_options_set_rfc2047_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_parameter_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_fallback_charsets(options, fallback_charsets);
	g_mime_parser_options_set_warning_callback(options, parser_warning, &st);
	msg = g_mime_parser_construct_message(parser, options);
	if (msg != NULL) {
		GMimeObject *body = g_mime_message_get_mime_part(msg);

		if (!header_over_limit(&st, GMIME_OBJECT(msg))) {
			message_headers(&st, msg);
			if (body != NULL)
				walk_object(&st, body, -1, 0);
		}
		g_object_unref(msg);
	}
	g_object_unref(parser);
	g_object_unref(stream);
	g_mime_parser_options_free(options);
	return m;
}

void mime_message_free(struct mime_message *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nparts; i++) {
		struct mime_part *p = &m->parts[i];

		free(p->type);
		free(p->subtype);
		free(p->charset);
		free(p->disposition);
		free(p->filename);
		free(p->encoding);
		free(p->magic_type);
		free(p->body);
		free(p->text);
		if (p->html != NULL) {
			html_doc_free(p->html);
			free(p->html);
		}
	}
	free(m->parts);
	free(m->subject);
	free(m->from);
	free(m->to);
	free(m);
}
