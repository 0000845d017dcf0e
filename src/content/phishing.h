/*
 * The "phishing" content engine: links that lie about where they go.
 * It looks at every link of the message — HTML anchors, areas and forms
 * (content/html.h) and bare URLs of text parts — and names what phishing
 * mail does and honest mail rarely does:
 *
 *   PHISH_TEXT_MISMATCH  the link's visible text shows one domain, the href
 *                        goes to another registrable domain (libpsl)
 *   PHISH_IP_LINK        the link's host is an IPv4/IPv6 literal (also
 *                        decimal/hex/octal-encoded IPv4; content/url_host.h)
 *   PHISH_LOOKALIKE      a host that imitates a protected brand domain
 *                        without being it: the same skeleton after
 *                        confusable folding (IDN homographs, punycode
 *                        decoded; 0/o, 1/l, rn/m), one edit away, or the
 *                        brand's name in front of another registrable domain
 *                        ("paypal.com.example.net", "paypal-secure.net";
 *                        content/lookalike.h)
 *   PHISH_SHORTENER      a link through a URL shortener
 *   PHISH_FORM           a <form> in the mail (its action, if any, named)
 *   PHISH_FORM_SECRETS   an <input> for a password, PIN or card data: a
 *                        subscribe or search form asks none of them
 *   PHISH_USERINFO       "http://paypal.com@evil.example/" style URLs
 *
 * Each symbol counts once per message with the engine's score for it, in
 * category spam; the reason names the first offending URL (cut to fit).
 * Bounded work: at most PHISHING_MAX_LINKS links per message are looked at.
 */
#ifndef POSTERN_CONTENT_PHISHING_H
#define POSTERN_CONTENT_PHISHING_H

#include <stdbool.h>
#include <stddef.h>

#include "content/engine.h"

#define PHISHING_MAX_LINKS 2000

struct phishing_options {
	const char *const *brands;       /* protected brand domains; NULL: phishing_default_brands */
	size_t nbrands;
	const char *const *shorteners;   /* NULL: phishing_default_shorteners */
	size_t nshorteners;
	double mismatch_score;           /* 0 in every score: the defaults below */
	double ip_link_score;
	double lookalike_score;
	double shortener_score;
	double form_score;
	double form_secrets_score;
	double userinfo_score;
};

#define PHISHING_MISMATCH_SCORE 4.0
#define PHISHING_IP_LINK_SCORE 2.5
#define PHISHING_LOOKALIKE_SCORE 6.0
#define PHISHING_SHORTENER_SCORE 1.0
#define PHISHING_FORM_SCORE 1.5
#define PHISHING_FORM_SECRETS_SCORE 3.5
#define PHISHING_USERINFO_SCORE 4.0

/* NULL-terminated built-in lists. */
extern const char *const phishing_default_brands[];
extern const char *const phishing_default_shorteners[];

struct content_engine *phishing_engine_create(const struct phishing_options *o);

#endif
