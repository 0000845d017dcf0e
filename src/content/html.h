/*
 * HTML to what a reader sees: the visible text (script and style dropped,
 * block elements on their own lines, entities decoded) and the links a
 * reader could follow or a client would fetch (a/area href with the
 * link's text, form action, img src). Built on gumbo; every output is
 * bounded, and input too deeply nested for gumbo to be safe is reduced to
 * its text by a plain tag stripper instead.
 */
#ifndef POSTERN_CONTENT_HTML_H
#define POSTERN_CONTENT_HTML_H

#include <stdbool.h>
#include <stddef.h>

#define HTML_MAX_LINKS_DEFAULT 1000
#define HTML_MAX_TEXT_DEFAULT  (4u * 1024 * 1024)
#define HTML_MAX_INPUT_DEFAULT (8u * 1024 * 1024)
#define HTML_LINK_TEXT_MAX     256     /* bytes of visible text kept per link */

enum html_link_kind {
	HTML_LINK_ANCHOR,     /* <a href> */
	HTML_LINK_AREA,       /* <area href> */
	HTML_LINK_FORM,       /* <form action> */
	HTML_LINK_IMAGE,      /* <img src> */
};

struct html_link {
	enum html_link_kind kind;
	char *url;            /* as written, entities decoded, surrounding space trimmed */
	char *text;           /* visible text of the link (anchor), alt (area, img); "" if none */
};

struct html_limits {
	size_t max_links;
	size_t max_text;      /* bytes of visible text */
	size_t max_input;     /* bytes of HTML looked at; the rest is ignored (text_truncated) */
};

struct html_doc {
	char *text;           /* UTF-8, NUL-terminated, never NULL after html_extract */
	size_t text_len;
	struct html_link *links;
	size_t nlinks;
	bool text_truncated;  /* max_text or max_input reached */
	bool links_truncated; /* max_links reached */
	bool too_deep;        /* nesting beyond what gumbo is given: text stripped, no links */
};

void html_limits_default(struct html_limits *l);
/* Extract text and links of UTF-8 `html`; always fills `out` (free it with html_doc_free). */
void html_extract(const char *html, size_t len, const struct html_limits *limits, struct html_doc *out);
void html_doc_free(struct html_doc *doc);
const char *html_link_kind_name(enum html_link_kind kind);

#endif
