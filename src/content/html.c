/*
 * HTML text and links with gumbo. The tree is walked with an explicit
 * stack (no recursion on attacker-controlled depth), and input whose
 * nesting could be deep enough to hurt gumbo itself (its node destructor
 * recurses, and deep formatting nesting is quadratic) never reaches it.
 */
#include "content/html.h"

#include <gumbo.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/strbuf.h"

/*
 * Above this estimated element depth the input goes to the tag stripper.
 * Real mail stays far below it; gumbo's recursion and its quadratic cases
 * stay harmless up to it.
 */
#define HTML_SAFE_DEPTH 10000

struct text_out {
	struct strbuf sb;
	bool truncated;
	bool pending_space;
};

struct walk_frame {
	GumboNode *node;
	unsigned next_child;
	long link;            /* index of the anchor opened by this node, or -1 */
	size_t text_start;    /* text length when the node was entered */
};

void html_limits_default(struct html_limits *l)
{
	l->max_links = HTML_MAX_LINKS_DEFAULT;
	l->max_text = HTML_MAX_TEXT_DEFAULT;
	l->max_input = HTML_MAX_INPUT_DEFAULT;
}

const char *html_link_kind_name(enum html_link_kind kind)
{
	switch (kind) {
	case HTML_LINK_ANCHOR: return "a";
	case HTML_LINK_AREA: return "area";
	case HTML_LINK_FORM: return "form";
	case HTML_LINK_IMAGE: return "img";
	}
	return "?";
}

static bool html_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static void text_put(struct text_out *t, const char *s, size_t len)
{
	if (t->truncated)
		return;
	if (strbuf_append(&t->sb, s, len) < 0)
		t->truncated = true;
}

/* Collapse every run of white space to one space, as a browser renders it. */
static void text_emit(struct text_out *t, const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && !t->truncated) {
		size_t start;

		if (html_is_space((unsigned char)s[i])) {
			t->pending_space = true;
			i++;
			continue;
		}
		start = i;
		while (i < len && !html_is_space((unsigned char)s[i]))
			i++;
		if (t->pending_space && t->sb.len > 0 && t->sb.data[t->sb.len - 1] != '\n')
			text_put(t, " ", 1);
		t->pending_space = false;
		text_put(t, s + start, i - start);
	}
}

static void text_break(struct text_out *t)
{
	t->pending_space = false;
	if (t->sb.len > 0 && t->sb.data[t->sb.len - 1] != '\n')
		text_put(t, "\n", 1);
}

static bool tag_is_skipped(GumboTag tag)
{
	return tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_HEAD ||
	       tag == GUMBO_TAG_TEMPLATE || tag == GUMBO_TAG_NOEMBED || tag == GUMBO_TAG_NOFRAMES;
}

static bool tag_is_block(GumboTag tag)
{
	switch (tag) {
	case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_ASIDE:
	case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_BR: case GUMBO_TAG_CAPTION:
	case GUMBO_TAG_DD: case GUMBO_TAG_DIV: case GUMBO_TAG_DL: case GUMBO_TAG_DT:
	case GUMBO_TAG_FIELDSET: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FIGURE:
	case GUMBO_TAG_FOOTER: case GUMBO_TAG_FORM: case GUMBO_TAG_H1: case GUMBO_TAG_H2:
	case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6:
	case GUMBO_TAG_HEADER: case GUMBO_TAG_HR: case GUMBO_TAG_LI: case GUMBO_TAG_MAIN:
	case GUMBO_TAG_NAV: case GUMBO_TAG_OL: case GUMBO_TAG_P: case GUMBO_TAG_PRE:
	case GUMBO_TAG_SECTION: case GUMBO_TAG_TABLE: case GUMBO_TAG_TR: case GUMBO_TAG_UL:
		return true;
	default:
		return false;
	}
}

static char *trimmed_copy(const char *s, size_t len, size_t max)
{
	while (len > 0 && html_is_space((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && html_is_space((unsigned char)s[len - 1]))
		len--;
	if (len > max) {
		len = max;
		/* do not cut a UTF-8 sequence in two */
		while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
			len--;
	}
	return xstrndup(s, len);
}

static const char *attr_value(GumboNode *node, const char *name)
{
	GumboAttribute *a = gumbo_get_attribute(&node->v.element.attributes, name);

	return a != NULL ? a->value : NULL;
}

/* Record a link; returns its index, or -1 when there is no URL or no room. */
static long link_add(struct html_doc *doc, const struct html_limits *limits,
		     enum html_link_kind kind, const char *url, const char *text)
{
	struct html_link *l;
	char *u;

	if (url == NULL)
		return -1;
	u = trimmed_copy(url, strlen(url), HTML_LINK_TEXT_MAX * 16);
	if (u[0] == '\0') {
		free(u);
		return -1;
	}
	if (doc->nlinks == limits->max_links) {
		doc->links_truncated = true;
		free(u);
		return -1;
	}
	doc->links = xreallocarray(doc->links, doc->nlinks + 1, sizeof(*doc->links));
	l = &doc->links[doc->nlinks];
	l->kind = kind;
	l->url = u;
	l->text = text != NULL ? trimmed_copy(text, strlen(text), HTML_LINK_TEXT_MAX) : xstrdup("");
	return (long)doc->nlinks++;
}

/* What entering an element adds: a line break, a link. Returns the anchor's link index or -1. */
static long element_enter(struct html_doc *doc, const struct html_limits *limits,
			  struct text_out *t, GumboNode *node)
{
	GumboTag tag = node->v.element.tag;

	if (tag_is_block(tag))
		text_break(t);
	switch (tag) {
	case GUMBO_TAG_A:
		return link_add(doc, limits, HTML_LINK_ANCHOR, attr_value(node, "href"), NULL);
	case GUMBO_TAG_AREA:
		link_add(doc, limits, HTML_LINK_AREA, attr_value(node, "href"), attr_value(node, "alt"));
		break;
	case GUMBO_TAG_FORM:
		link_add(doc, limits, HTML_LINK_FORM, attr_value(node, "action"), NULL);
		break;
	case GUMBO_TAG_IMG:
		link_add(doc, limits, HTML_LINK_IMAGE, attr_value(node, "src"), attr_value(node, "alt"));
		break;
	default:
		break;
	}
	return -1;
}

static void element_leave(struct html_doc *doc, struct text_out *t, const struct walk_frame *f)
{
	if (tag_is_block(f->node->v.element.tag))
		text_break(t);
	if (f->link >= 0 && t->sb.len > f->text_start) {
		struct html_link *l = &doc->links[f->link];

		free(l->text);
		l->text = trimmed_copy(t->sb.data + f->text_start, t->sb.len - f->text_start,
				       HTML_LINK_TEXT_MAX);
	}
}

static void walk_tree(GumboNode *root, struct html_doc *doc, const struct html_limits *limits,
		      struct text_out *t)
{
	struct walk_frame *stack = NULL;
	size_t depth = 0, cap = 0;

	stack = xreallocarray(stack, cap = 64, sizeof(*stack));
	stack[depth++] = (struct walk_frame){ root, 0, -1, 0 };
	while (depth > 0) {
		struct walk_frame *f = &stack[depth - 1];
		const GumboVector *children = f->node->type == GUMBO_NODE_DOCUMENT ?
			&f->node->v.document.children : &f->node->v.element.children;
		GumboNode *child;

		if (f->next_child == children->length) {
			if (f->node->type == GUMBO_NODE_ELEMENT)
				element_leave(doc, t, f);
			depth--;
			continue;
		}
		child = children->data[f->next_child++];
		switch (child->type) {
		case GUMBO_NODE_TEXT:
		case GUMBO_NODE_CDATA:
			text_emit(t, child->v.text.text, strlen(child->v.text.text));
			break;
		case GUMBO_NODE_WHITESPACE:
			t->pending_space = true;
			break;
		case GUMBO_NODE_ELEMENT:
			if (tag_is_skipped(child->v.element.tag))
				break;
			if (depth == cap)
				stack = xreallocarray(stack, cap *= 2, sizeof(*stack));
			stack[depth] = (struct walk_frame){ child, 0, -1, 0 };
			stack[depth].link = element_enter(doc, limits, t, child);
			stack[depth].text_start = t->sb.len;
			depth++;
			break;
		default:
			break;
		}
	}
	free(stack);
}

/*
 * An upper estimate of element nesting: start tags minus end tags, void
 * elements and self-closed tags not counted. Unclosed <p> or <td> make it
 * overestimate, which only sends odd input to the stripper.
 */
static size_t estimate_depth(const char *s, size_t len)
{
	static const char *const voids[] = { "area", "base", "br", "col", "embed", "hr", "img",
		"input", "link", "meta", "param", "source", "track", "wbr" };
	size_t depth = 0, max = 0;

	for (size_t i = 0; i + 1 < len; i++) {
		size_t n = 0;
		bool is_void = false;

		if (s[i] != '<')
			continue;
		if (s[i + 1] == '/') {
			if (depth > 0)
				depth--;
			continue;
		}
		if (!((s[i + 1] | 0x20) >= 'a' && (s[i + 1] | 0x20) <= 'z'))
			continue;
		while (i + 1 + n < len && ((s[i + 1 + n] | 0x20) >= 'a' && (s[i + 1 + n] | 0x20) <= 'z'))
			n++;
		for (size_t v = 0; v < sizeof(voids) / sizeof(voids[0]) && !is_void; v++)
			is_void = strlen(voids[v]) == n && strncasecmp(s + i + 1, voids[v], n) == 0;
		if (!is_void && ++depth > max)
			max = depth;
	}
	return max;
}

/* The fallback for hostile nesting: text outside tags, nothing else. */
static void strip_tags(const char *s, size_t len, struct text_out *t)
{
	size_t i = 0;

	while (i < len && !t->truncated) {
		const char *lt = memchr(s + i, '<', len - i);
		size_t end = lt != NULL ? (size_t)(lt - s) : len;
		const char *gt;

		text_emit(t, s + i, end - i);
		if (lt == NULL)
			break;
		gt = memchr(lt, '>', len - end);
		if (gt == NULL)
			break;
		t->pending_space = true;
		i = (size_t)(gt - s) + 1;
	}
}

void html_extract(const char *html, size_t len, const struct html_limits *limits, struct html_doc *out)
{
	struct text_out t = { .truncated = false, .pending_space = false };

	memset(out, 0, sizeof(*out));
	strbuf_init(&t.sb, limits->max_text);
	if (len > limits->max_input) {
		len = limits->max_input;
		out->text_truncated = true;
	}
	if (estimate_depth(html, len) > HTML_SAFE_DEPTH) {
		out->too_deep = true;
		strip_tags(html, len, &t);
	} else {
		GumboOptions options = kGumboDefaultOptions;
		GumboOutput *output;

		options.max_errors = 0;
		output = gumbo_parse_with_options(&options, html, len);
		walk_tree(output->document, out, limits, &t);
		gumbo_destroy_output(&options, output);
	}
	while (t.sb.len > 0 && t.sb.data[t.sb.len - 1] == '\n')
		t.sb.data[--t.sb.len] = '\0';
	if (t.truncated)
		out->text_truncated = true;
	out->text = strbuf_detach(&t.sb, &out->text_len);
}

void html_doc_free(struct html_doc *doc)
{
	for (size_t i = 0; i < doc->nlinks; i++) {
		free(doc->links[i].url);
		free(doc->links[i].text);
	}
	free(doc->links);
	free(doc->text);
	memset(doc, 0, sizeof(*doc));
}
