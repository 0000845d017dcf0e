/*
 * The configuration file: reading it line by line into a struct config
 * through the key table (config_keys.c), the checks that span several keys,
 * the hot-path look-ups, and the life cycle of a loaded config.
 */
#define LOG_MODULE "config"
#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_LINE_MAX 8192
#define CONFIG_NAMED_MAX 50000        /* instances of one named section */
#define CONFIG_NAME_MAX 255           /* the NAME of [section "NAME"] */
#define CONFIG_WORD_MAX 32            /* section and key names */
#define CONFIG_DUMP_VALUE_MAX (1024 * 1024)
#define LIST_FILE_LINE_MAX 1024       /* a line of an allow_file, deny_file or list_file */
#define LIST_FILE_LINES_MAX 1000000   /* lines of one such file */

/* A section with many instances, each stored in an array of struct config. */
struct named_kind {
	const char *section;
	size_t size;
	size_t array_offset;
	size_t count_offset;
	size_t name_offset;
	size_t line_offset;
	int (*normalize)(char *name, char *why, size_t whylen);
};

static int normalize_domain(char *name, char *why, size_t whylen);
static int normalize_sni(char *name, char *why, size_t whylen);
static int normalize_zone(char *name, char *why, size_t whylen);

static const struct named_kind named_kinds[] = {
	{ "domain", sizeof(struct relay_domain), offsetof(struct config, domains),
	  offsetof(struct config, ndomains), offsetof(struct relay_domain, domain),
	  offsetof(struct relay_domain, line), normalize_domain },
	{ "user", sizeof(struct user_account), offsetof(struct config, users),
	  offsetof(struct config, nusers), offsetof(struct user_account, address),
	  offsetof(struct user_account, line), config_normalize_address },
	{ "tls", sizeof(struct tls_cert_spec), offsetof(struct config, tls_sni),
	  offsetof(struct config, ntls_sni), offsetof(struct tls_cert_spec, name),
	  offsetof(struct tls_cert_spec, line), normalize_sni },
	{ "dnsbl", sizeof(struct dnsbl_spec), offsetof(struct config, dnsbls),
	  offsetof(struct config, ndnsbls), offsetof(struct dnsbl_spec, zone),
	  offsetof(struct dnsbl_spec, line), normalize_zone },
	{ "rhsbl", sizeof(struct dnsbl_spec), offsetof(struct config, rhsbls),
	  offsetof(struct config, nrhsbls), offsetof(struct dnsbl_spec, zone),
	  offsetof(struct dnsbl_spec, line), normalize_zone },
};

#define NNAMED_KINDS (sizeof(named_kinds) / sizeof(named_kinds[0]))

static void lower_case(char *s)
{
	for (; *s; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static int normalize_domain(char *name, char *why, size_t whylen)
{
	if (!config_valid_hostname(name)) {
		snprintf(why, whylen, "\"%s\" is not a valid domain name", name);
		return -1;
	}
	lower_case(name);
	return 0;
}

/* SNI names may be a wildcard for one label: "*.example.org". */
static int normalize_sni(char *name, char *why, size_t whylen)
{
	const char *host = strncmp(name, "*.", 2) == 0 ? name + 2 : name;

	if (!config_valid_hostname(host)) {
		snprintf(why, whylen, "\"%s\" is not a valid host name or *.domain pattern", name);
		return -1;
	}
	lower_case(name);
	return 0;
}

static int normalize_zone(char *name, char *why, size_t whylen)
{
	if (!config_valid_hostname(name)) {
		snprintf(why, whylen, "\"%s\" is not a valid DNS zone name", name);
		return -1;
	}
	lower_case(name);
	return 0;
}

static const struct named_kind *named_kind_find(const char *section)
{
	for (size_t i = 0; i < NNAMED_KINDS; i++) {
		if (strcmp(named_kinds[i].section, section) == 0)
			return &named_kinds[i];
	}
	return NULL;
}

/* The arrays are typed struct pointers; memcpy reads them without type punning. */
static void *named_array(const struct config *cfg, const struct named_kind *nk)
{
	void *array;

	memcpy(&array, (const char *)cfg + nk->array_offset, sizeof(array));
	return array;
}

static size_t named_count(const struct config *cfg, const struct named_kind *nk)
{
	return *(const size_t *)((const char *)cfg + nk->count_offset);
}

static void *named_at(const struct config *cfg, const struct named_kind *nk, size_t i)
{
	return (char *)named_array(cfg, nk) + i * nk->size;
}

static const char *named_name(const void *inst, const struct named_kind *nk)
{
	return *(char *const *)((const char *)inst + nk->name_offset);
}

static unsigned named_line(const void *inst, const struct named_kind *nk)
{
	return *(const unsigned *)((const char *)inst + nk->line_offset);
}

/*
 * Append an instance owning name, with its keys' defaults. The parser keeps
 * the array's capacity in *cap and doubles it; without cap (config_set on a
 * config of unknown origin) the array grows by exactly one.
 */
static void *named_add(struct config *cfg, const struct named_kind *nk, char *name, unsigned line, size_t *cap)
{
	size_t *count = (size_t *)((char *)cfg + nk->count_offset);
	void *array = named_array(cfg, nk);
	char *inst;
	char why[256];

	if (cap == NULL || *count == *cap) {
		size_t want = cap == NULL ? *count + 1 : *cap ? *cap * 2 : 16;

		array = xreallocarray(array, want, nk->size);
		memcpy((char *)cfg + nk->array_offset, &array, sizeof(array));
		if (cap != NULL)
			*cap = want;
	}
	inst = (char *)array + *count * nk->size;
	memset(inst, 0, nk->size);
	*(char **)(inst + nk->name_offset) = name;
	*(unsigned *)(inst + nk->line_offset) = line;
	(*count)++;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->named && k->def != NULL && strcmp(k->section, nk->section) == 0 &&
		    config_key_set(k, inst, k->def, why, sizeof(why)) < 0)
			panic("default of [%s] %s: %s", k->section, k->name, why);
	}
	return inst;
}

static void named_free_one(const struct named_kind *nk, char *inst)
{
	for (size_t j = 0; j < config_nkeys; j++) {
		if (config_keys[j].named && strcmp(config_keys[j].section, nk->section) == 0)
			config_key_clear(&config_keys[j], inst);
	}
	free(*(char **)(inst + nk->name_offset));
}

static void named_free_all(struct config *cfg, const struct named_kind *nk)
{
	for (size_t i = 0; i < named_count(cfg, nk); i++)
		named_free_one(nk, named_at(cfg, nk, i));
	free(named_array(cfg, nk));
}

/* The hot-path look-up: config_check sorted the array by name, case-insensitively. */
static void *named_find(const struct config *cfg, const struct named_kind *nk, const char *name)
{
	size_t lo = 0, hi = named_count(cfg, nk);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		void *inst = named_at(cfg, nk, mid);
		int c = strcasecmp(name, named_name(inst, nk));

		if (c == 0)
			return inst;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int named_cmp(const void *a, const void *b, void *arg)
{
	const struct named_kind *nk = arg;
	int c = strcasecmp(named_name(a, nk), named_name(b, nk));

	if (c != 0)
		return c;
	return named_line(a, nk) < named_line(b, nk) ? -1 : named_line(a, nk) > named_line(b, nk);
}

static char *system_hostname(void)
{
	char buf[256];

	if (gethostname(buf, sizeof(buf)) < 0)
		return xstrdup("localhost");
	buf[sizeof(buf) - 1] = '\0';
	return xstrdup(config_valid_hostname(buf) ? buf : "localhost");
}

char *config_store_path(const struct config *cfg, const char *configured, const char *file)
{
	return configured != NULL ? xstrdup(configured) : xasprintf("%s/%s", cfg->data_dir, file);
}

struct config *config_new(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	char why[256];

	cfg->refcount = 1;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (!k->named && k->def != NULL && config_key_set(k, cfg, k->def, why, sizeof(why)) < 0)
			panic("default of [%s] %s: %s", k->section, k->name, why);
	}
	cfg->hostname = system_hostname();
	return cfg;
}

static void string_array_free(char **items, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(items[i]);
	free(items);
}

static void config_free(struct config *cfg)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (!config_keys[i].named)
			config_key_clear(&config_keys[i], cfg);
	}
	cidr_list_free(&cfg->ip_allow);
	cidr_list_free(&cfg->ip_deny);
	string_array_free(cfg->rcpt_list, cfg->nrcpt_list);
	for (size_t i = 0; i < NNAMED_KINDS; i++)
		named_free_all(cfg, &named_kinds[i]);
	free(cfg->path);
	free(cfg);
}

struct config *config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refcount, 1, __ATOMIC_RELAXED);
	return cfg;
}

/* Sessions on worker threads may drop the last reference of an old config. */
void config_unref(struct config *cfg)
{
	if (cfg != NULL && __atomic_sub_fetch(&cfg->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

static int error_set(struct config_error *err, unsigned line, const char *section, const char *key,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int error_set(struct config_error *err, unsigned line, const char *section, const char *key,
		     const char *fmt, ...)
{
	va_list ap;

	err->line = line;
	snprintf(err->section, sizeof(err->section), "%s", section ? section : "");
	snprintf(err->key, sizeof(err->key), "%s", key ? key : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

void config_error_format(const struct config_error *err, char *buf, size_t len)
{
	char line[16] = "";
	char where[sizeof(err->section) + sizeof(err->key) + 8] = "";

	if (err->line > 0)
		snprintf(line, sizeof(line), ":%u", err->line);
	if (err->section[0] && err->key[0])
		snprintf(where, sizeof(where), "[%s] %s: ", err->section, err->key);
	else if (err->section[0])
		snprintf(where, sizeof(where), "[%s]: ", err->section);
	else if (err->key[0])
		snprintf(where, sizeof(where), "%s: ", err->key);
	if (len > 0)
		snprintf(buf, len, "%s%s: %s%s", err->file[0] ? err->file : "(config)", line, where, err->message);
}

static void section_text(char *buf, size_t len, const char *section, const char *name)
{
	if (name != NULL)
		snprintf(buf, len, "%s \"%s\"", section, name);
	else
		snprintf(buf, len, "%s", section);
}

/* Copy a double-quoted string starting at the quote; \" and \\ are the escapes. */
static int unquote(const char **pp, char *out, size_t outlen, char *why, size_t whylen)
{
	const char *p = *pp + 1;
	size_t n = 0;

	for (;;) {
		char c = *p++;

		if (c == '\0') {
			snprintf(why, whylen, "missing closing quote");
			return -1;
		}
		if (c == '"')
			break;
		if (c == '\\') {
			c = *p++;
			if (c != '"' && c != '\\') {
				snprintf(why, whylen, "unknown escape in quotes (only \\\" and \\\\)");
				return -1;
			}
		}
		if (n + 1 >= outlen) {
			snprintf(why, whylen, "quoted text too long (at most %zu characters)", outlen - 1);
			return -1;
		}
		out[n++] = c;
	}
	out[n] = '\0';
	*pp = p;
	return 0;
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static const char *skip_blanks(const char *p)
{
	return p + strspn(p, " \t");
}

/*
 * `section` or `section "name"`, as inside the brackets of a header and as
 * config_set takes it; *end is left after the spec and trailing blanks.
 */
static int parse_section_spec(const char *s, char *kind, char *name, bool *named, const char **end,
			      char *why, size_t whylen)
{
	const char *p = skip_blanks(s);
	size_t n = 0;

	while (is_word_char(p[n]))
		n++;
	if (n == 0 || n >= CONFIG_WORD_MAX) {
		snprintf(why, whylen, "expected a section name of a-z, 0-9 and _");
		return -1;
	}
	memcpy(kind, p, n);
	kind[n] = '\0';
	p = skip_blanks(p + n);
	*named = *p == '"';
	if (*named) {
		if (unquote(&p, name, CONFIG_NAME_MAX + 1, why, whylen) < 0)
			return -1;
		if (name[0] == '\0') {
			snprintf(why, whylen, "empty section name");
			return -1;
		}
		p = skip_blanks(p);
	}
	*end = p;
	return 0;
}

/* The table's own string for a plain section, so the parser can keep a pointer. */
static const char *plain_section_name(const char *section)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (!config_keys[i].named && strcmp(config_keys[i].section, section) == 0)
			return config_keys[i].section;
	}
	return NULL;
}

/* Why a section spec names nothing we know, or NULL when it is fine. */
static const char *section_problem(const char *kind, bool named)
{
	const struct named_kind *nk = named_kind_find(kind);
	bool plain = plain_section_name(kind) != NULL;

	if (named && nk == NULL)
		return plain ? "this section takes no name" : "unknown section";
	if (!named && !plain)
		return nk != NULL ? "this section needs a name in quotes, e.g. [domain \"example.com\"]" :
				    "unknown section";
	return NULL;
}

int config_set(struct config *cfg, const char *section, const char *key, const char *value,
	       char *why, size_t whylen)
{
	char kind[CONFIG_WORD_MAX], name[CONFIG_NAME_MAX + 1];
	const struct config_key *k;
	const struct named_kind *nk = NULL;
	const char *end, *problem;
	bool named, created = false;
	void *base = cfg;

	if (parse_section_spec(section, kind, name, &named, &end, why, whylen) < 0)
		return -1;
	if (*end != '\0') {
		snprintf(why, whylen, "unexpected text after the section");
		return -1;
	}
	if ((problem = section_problem(kind, named)) != NULL) {
		snprintf(why, whylen, "%s", problem);
		return -1;
	}
	if ((k = config_key_find(kind, named, key)) == NULL) {
		snprintf(why, whylen, "unknown key");
		return -1;
	}
	if (named) {
		nk = named_kind_find(kind);
		if (nk->normalize(name, why, whylen) < 0)
			return -1;
		base = NULL;
		for (size_t i = 0; i < named_count(cfg, nk) && base == NULL; i++) {
			if (strcasecmp(named_name(named_at(cfg, nk, i), nk), name) == 0)
				base = named_at(cfg, nk, i);
		}
		if (base == NULL) {
			base = named_add(cfg, nk, xstrdup(name), 0, NULL);
			created = true;
		}
	}
	if (config_key_set(k, base, value, why, whylen) < 0) {
		/* A failed set leaves no half-made instance behind. */
		if (created) {
			named_free_one(nk, base);
			(*(size_t *)((char *)cfg + nk->count_offset))--;
		}
		return -1;
	}
	return 0;
}

/* The parser's place in the file. */
struct parser {
	struct config *cfg;
	struct config_error *err;
	unsigned line;
	const char *section;              /* table string; NULL before the first header */
	const struct named_kind *nk;      /* set inside a named section */
	size_t instance;                  /* its index in the array */
	char section_text[CONFIG_NAME_MAX + CONFIG_WORD_MAX + 4];
	unsigned *key_lines;              /* per config_keys entry: line that set it */
	const char **plain_seen;          /* plain sections met so far ... */
	unsigned *plain_seen_line;        /* ... and their header lines */
	size_t nplain_seen;
	size_t named_cap[NNAMED_KINDS];   /* capacity of each named array */
};


/* Forget which keys the previous instance of this named section set. */
static void parser_reset_named_keys(struct parser *p, const char *section)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].named && strcmp(config_keys[i].section, section) == 0)
			p->key_lines[i] = 0;
	}
}

/* Duplicates are found after sorting, in config_check, with both lines. */
static int parse_named_header(struct parser *p, const char *kind, char *name)
{
	const struct named_kind *nk = named_kind_find(kind);
	char why[256];

	if (nk->normalize(name, why, sizeof(why)) < 0)
		return error_set(p->err, p->line, p->section_text, NULL, "%s", why);
	if (named_count(p->cfg, nk) >= CONFIG_NAMED_MAX)
		return error_set(p->err, p->line, p->section_text, NULL,
				 "too many [%s] sections (at most %d)", nk->section, CONFIG_NAMED_MAX);
	section_text(p->section_text, sizeof(p->section_text), kind, name);
	named_add(p->cfg, nk, xstrdup(name), p->line, &p->named_cap[nk - named_kinds]);
	p->nk = nk;
	p->section = nk->section;
	p->instance = named_count(p->cfg, nk) - 1;
	parser_reset_named_keys(p, nk->section);
	return 0;
}

static int parse_header(struct parser *p, const char *s)
{
	char kind[CONFIG_WORD_MAX], name[CONFIG_NAME_MAX + 1], why[256];
	const char *end, *problem;
	bool named;

	if (parse_section_spec(s + 1, kind, name, &named, &end, why, sizeof(why)) < 0)
		return error_set(p->err, p->line, NULL, NULL, "bad section header: %s", why);
	if (*end != ']' || *skip_blanks(end + 1) != '\0')
		return error_set(p->err, p->line, NULL, NULL,
				 "bad section header: expected [section] or [section \"name\"]");
	section_text(p->section_text, sizeof(p->section_text), kind, named ? name : NULL);
	if ((problem = section_problem(kind, named)) != NULL)
		return error_set(p->err, p->line, p->section_text, NULL, "%s", problem);
	if (named)
		return parse_named_header(p, kind, name);
	for (size_t i = 0; i < p->nplain_seen; i++) {
		if (strcmp(p->plain_seen[i], kind) == 0)
			return error_set(p->err, p->line, p->section_text, NULL,
					 "section appears twice (first at line %u)", p->plain_seen_line[i]);
	}
	p->nk = NULL;
	p->section = plain_section_name(kind);
	p->plain_seen[p->nplain_seen] = p->section;
	p->plain_seen_line[p->nplain_seen++] = p->line;
	return 0;
}

/* `key = value`; the value is quoted or runs to the end of the line. */
static int parse_assignment(struct parser *p, const char *s, char *value)
{
	char key[CONFIG_WORD_MAX], why[512];
	size_t n = strcspn(s, " \t=");
	const struct config_key *k;
	const char *v;
	void *base;

	if (n == 0 || n >= sizeof(key))
		return error_set(p->err, p->line, NULL, NULL, "expected key = value");
	memcpy(key, s, n);
	key[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (!is_word_char(key[i]))
			return error_set(p->err, p->line, NULL, NULL,
					 "bad key name \"%s\" (keys use a-z, 0-9 and _)", key);
	}
	v = skip_blanks(s + n);
	if (*v != '=')
		return error_set(p->err, p->line, NULL, key, "expected '=' after the key");
	v = skip_blanks(v + 1);
	if (*v == '"') {
		if (unquote(&v, value, CONFIG_LINE_MAX + 1, why, sizeof(why)) < 0)
			return error_set(p->err, p->line, p->section ? p->section_text : NULL, key, "%s", why);
		if (*skip_blanks(v) != '\0')
			return error_set(p->err, p->line, p->section ? p->section_text : NULL, key,
					 "unexpected text after the closing quote");
	} else {
		n = strlen(v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		memmove(value, v, n);
		value[n] = '\0';
	}
	if (p->section == NULL)
		return error_set(p->err, p->line, NULL, key, "key before the first [section]");
	if ((k = config_key_find(p->section, p->nk != NULL, key)) == NULL)
		return error_set(p->err, p->line, p->section_text, key, "unknown key");
	if (p->key_lines[k - config_keys] != 0)
		return error_set(p->err, p->line, p->section_text, key, "duplicate key (first set at line %u)",
				 p->key_lines[k - config_keys]);
	base = p->nk != NULL ? named_at(p->cfg, p->nk, p->instance) : (void *)p->cfg;
	if (config_key_set(k, base, value, why, sizeof(why)) < 0)
		return error_set(p->err, p->line, p->section_text, key, "%s", why);
	p->key_lines[k - config_keys] = p->line;
	return 0;
}

/* Control bytes in a config file are a mistake or an attack: never pass them on. */
static int check_line_bytes(struct parser *p, const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return error_set(p->err, p->line, NULL, NULL,
					 "control character 0x%02x in column %zu", c, i + 1);
	}
	return 0;
}

/* line is a writable copy; scratch has room for a whole line. */
static int parse_line(struct parser *p, char *line, size_t len, char *scratch)
{
	const char *s;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (check_line_bytes(p, line, len) < 0)
		return -1;
	s = skip_blanks(line);
	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[')
		return parse_header(p, s);
	return parse_assignment(p, s, scratch);
}

static int parse_text(struct parser *p, const char *text, size_t len)
{
	char *line = xmalloc(CONFIG_LINE_MAX + 2);
	char *scratch = xmalloc(CONFIG_LINE_MAX + 2);
	size_t pos = 0;
	int r = 0;

	while (pos < len && r == 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;

		p->line++;
		if (n > CONFIG_LINE_MAX) {
			r = error_set(p->err, p->line, NULL, NULL, "line too long (at most %d bytes)", CONFIG_LINE_MAX);
			break;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		/* Some editors start a UTF-8 file with a byte order mark. */
		if (p->line == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
			r = parse_line(p, line + 3, n - 3, scratch);
		else
			r = parse_line(p, line, n, scratch);
		pos += n + 1;
	}
	free(line);
	free(scratch);
	return r;
}

static unsigned key_line(const unsigned *key_lines, const char *section, const char *name)
{
	const struct config_key *k = config_key_find(section, false, name);

	return key_lines != NULL && k != NULL ? key_lines[k - config_keys] : 0;
}

static int check_named(struct config *cfg, const struct named_kind *nk, struct config_error *err)
{
	size_t n = named_count(cfg, nk);
	char sect[CONFIG_NAME_MAX + CONFIG_WORD_MAX + 4];

	if (n > 1)
		qsort_r(named_array(cfg, nk), n, nk->size, named_cmp, (void *)nk);
	for (size_t i = 0; i < n; i++) {
		const void *inst = named_at(cfg, nk, i);

		section_text(sect, sizeof(sect), nk->section, named_name(inst, nk));
		if (i > 0 && strcasecmp(named_name(inst, nk), named_name(named_at(cfg, nk, i - 1), nk)) == 0)
			return error_set(err, named_line(inst, nk), sect, NULL, "section appears twice (first at line %u)",
					 named_line(named_at(cfg, nk, i - 1), nk));
		for (size_t j = 0; j < config_nkeys; j++) {
			const struct config_key *k = &config_keys[j];
			struct strbuf sb;
			int unset;

			if (!k->named || !(k->flags & CONFIG_KEY_REQUIRED) || strcmp(k->section, nk->section) != 0)
				continue;
			strbuf_init(&sb, CONFIG_DUMP_VALUE_MAX);
			unset = config_key_format(k, inst, &sb) < 0 || sb.len == 0;
			strbuf_free(&sb);
			if (unset)
				return error_set(err, named_line(inst, nk), sect, k->name, "missing (required)");
		}
	}
	return 0;
}

/* [local] domains is kept sorted by its setter, so this is a binary search too. */
static int local_domain_index(const struct config *cfg, const char *domain, size_t *index)
{
	size_t lo = 0, hi = cfg->nlocal_domains;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcasecmp(domain, cfg->local_domains[mid]);

		if (c == 0) {
			*index = mid;
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* Mail for a local domain must have somewhere to go. */
static int check_mailboxes(const struct config *cfg, const unsigned *key_lines, struct config_error *err)
{
	size_t *users_with_maildir;
	int r = 0;

	if (cfg->maildir_template != NULL || cfg->nlocal_domains == 0)
		return 0;
	users_with_maildir = xcalloc(cfg->nlocal_domains, sizeof(*users_with_maildir));
	for (size_t i = 0; i < cfg->nusers && r == 0; i++) {
		const struct user_account *u = &cfg->users[i];
		size_t d;

		if (local_domain_index(cfg, strchr(u->address, '@') + 1, &d) < 0)
			continue;
		if (u->maildir == NULL) {
			char sect[CONFIG_NAME_MAX + CONFIG_WORD_MAX + 4];

			section_text(sect, sizeof(sect), "user", u->address);
			r = error_set(err, u->line, sect, "maildir",
				      "missing: the domain is local and [local] has no maildir template");
		}
		users_with_maildir[d]++;
	}
	for (size_t d = 0; d < cfg->nlocal_domains && r == 0; d++) {
		if (users_with_maildir[d] == 0)
			r = error_set(err, key_line(key_lines, "local", "domains"), "local", "domains",
				      "local domain \"%s\" has no mailbox: set [local] maildir or add a [user] "
				      "of that domain with a maildir", cfg->local_domains[d]);
	}
	free(users_with_maildir);
	return r;
}

/* Where the entries of a list file go; -1 with why when an entry is malformed. */
typedef int (*list_entry_fn)(void *arg, const char *entry, char *why, size_t whylen);

/* '#' starts a comment at the start of a line or after a blank ("a#b@x" is an address). */
static char *list_line_entry(char *line)
{
	char *end;

	for (char *p = line; *p; p++) {
		if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	line += strspn(line, " \t");
	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return line;
}

static int list_file_line(const char *path, unsigned lineno, char *line, list_entry_fn add, void *arg,
			  char *why, size_t whylen)
{
	char reason[512];
	char *entry = list_line_entry(line);

	if (*entry == '\0')
		return 0;
	if (entry[strcspn(entry, " \t")] != '\0') {
		snprintf(why, whylen, "%s:%u: one entry per line", path, lineno);
		return -1;
	}
	if (add(arg, entry, reason, sizeof(reason)) < 0) {
		snprintf(why, whylen, "%s:%u: %s", path, lineno, reason);
		return -1;
	}
	return 0;
}

/*
 * An allow, deny or recipient list kept in its own file: one entry per
 * line, blank lines and comments skipped. Read as a stream with a bounded
 * line, so a large list costs no more memory than its entries.
 */
static int read_list_file(const char *path, list_entry_fn add, void *arg, char *why, size_t whylen)
{
	char line[LIST_FILE_LINE_MAX + 2];
	unsigned lineno = 0;
	struct stat st;
	FILE *f;
	int r = 0;
	/* O_NONBLOCK: a FIFO named by mistake must not hang the reload. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (f = fdopen(fd, "r")) == NULL) {
		snprintf(why, whylen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);

		lineno++;
		if (lineno > LIST_FILE_LINES_MAX) {
			snprintf(why, whylen, "%s: more than %d lines", path, LIST_FILE_LINES_MAX);
			r = -1;
		} else if (n > 0 && line[n - 1] == '\n') {
			line[n - 1] = '\0';
			r = list_file_line(path, lineno, line, add, arg, why, whylen);
		} else if (n > LIST_FILE_LINE_MAX) {
			snprintf(why, whylen, "%s:%u: line too long (at most %d bytes)", path, lineno, LIST_FILE_LINE_MAX);
			r = -1;
		} else {
			r = list_file_line(path, lineno, line, add, arg, why, whylen);
		}
	}
	if (r == 0 && ferror(f)) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		r = -1;
	}
	fclose(f);
	return r;
}

static int add_network(void *arg, const char *entry, char *why, size_t whylen)
{
	if (cidr_list_add(arg, entry) < 0) {
		snprintf(why, whylen, "bad network \"%.60s\": expected an IPv4 or IPv6 address or a prefix"
			 " like 192.0.2.0/24", entry);
		return -1;
	}
	return 0;
}

struct pattern_array {
	char **items;
	size_t count;
	size_t cap;
};

static void pattern_array_push(struct pattern_array *a, char *item)
{
	if (a->count == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->items = xreallocarray(a->items, a->cap, sizeof(*a->items));
	}
	a->items[a->count++] = item;
}

static int add_pattern(void *arg, const char *entry, char *why, size_t whylen)
{
	char *pattern = config_normalize_pattern(entry, why, whylen);

	if (pattern == NULL)
		return -1;
	pattern_array_push(arg, pattern);
	return 0;
}

static int string_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The written networks plus those of the file; *out is replaced only on success. */
static int build_network_list(const struct cidr_list *written, const char *file, struct cidr_list *out,
			      char *why, size_t whylen)
{
	struct cidr_list list = { 0 };

	if (written->count > 0) {
		list.ranges = xreallocarray(NULL, written->count, sizeof(*list.ranges));
		memcpy(list.ranges, written->ranges, written->count * sizeof(*list.ranges));
		list.count = list.cap = written->count;
	}
	if (file != NULL && read_list_file(file, add_network, &list, why, whylen) < 0) {
		cidr_list_free(&list);
		return -1;
	}
	cidr_list_finish(&list);
	cidr_list_free(out);
	*out = list;
	return 0;
}

/* The same for recipients: sorted, a recipient in both the file and the key kept once. */
static int build_rcpt_list(struct config *cfg, char *why, size_t whylen)
{
	struct pattern_array a = { 0 };
	size_t n = 0;

	for (size_t i = 0; i < cfg->nrcpt_list_written; i++)
		pattern_array_push(&a, xstrdup(cfg->rcpt_list_written[i]));
	if (cfg->rcpt_list_file != NULL && read_list_file(cfg->rcpt_list_file, add_pattern, &a, why, whylen) < 0) {
		string_array_free(a.items, a.count);
		return -1;
	}
	if (a.count > 1)
		qsort(a.items, a.count, sizeof(*a.items), string_cmp);
	for (size_t i = 0; i < a.count; i++) {
		if (n > 0 && strcmp(a.items[n - 1], a.items[i]) == 0)
			free(a.items[i]);
		else
			a.items[n++] = a.items[i];
	}
	string_array_free(cfg->rcpt_list, cfg->nrcpt_list);
	cfg->rcpt_list = a.items;
	cfg->nrcpt_list = n;
	return 0;
}

/* Build ip_allow, ip_deny and rcpt_list from the keys and the list files. */
static int build_lists(struct config *cfg, const unsigned *key_lines, struct config_error *err)
{
	char why[1024];

	if (build_network_list(&cfg->ip_allow_written, cfg->ip_allow_file, &cfg->ip_allow, why, sizeof(why)) < 0)
		return error_set(err, key_line(key_lines, "iplist", "allow_file"), "iplist", "allow_file", "%s", why);
	if (build_network_list(&cfg->ip_deny_written, cfg->ip_deny_file, &cfg->ip_deny, why, sizeof(why)) < 0)
		return error_set(err, key_line(key_lines, "iplist", "deny_file"), "iplist", "deny_file", "%s", why);
	if (build_rcpt_list(cfg, why, sizeof(why)) < 0)
		return error_set(err, key_line(key_lines, "recipients", "list_file"), "recipients", "list_file",
				 "%s", why);
	return 0;
}

/* The defence engines' rules that tie keys together. */
static int check_policy(const struct config *cfg, const unsigned *key_lines, struct config_error *err)
{
	if (strcmp(cfg->rcpt_validation, "list") == 0 && cfg->nrcpt_list_written == 0 && cfg->rcpt_list_file == NULL)
		return error_set(err, key_line(key_lines, "recipients", "validation"), "recipients", "validation",
				 "validation = list needs a list or a list_file of valid recipients");
	if (strcmp(cfg->rcpt_validation, "ldap") == 0 && (cfg->ldap_uri == NULL || cfg->ldap_base == NULL))
		return error_set(err, key_line(key_lines, "recipients", "validation"), "recipients", "validation",
				 "validation = ldap needs ldap_uri and ldap_base");
	if (cfg->greylist_window <= cfg->greylist_delay) {
		unsigned ldelay = key_line(key_lines, "greylist", "delay");
		unsigned lwindow = key_line(key_lines, "greylist", "window");

		return error_set(err, lwindow > ldelay ? lwindow : ldelay, "greylist",
				 lwindow > ldelay ? "window" : "delay",
				 "window (%us) must be longer than delay (%us)", cfg->greylist_window,
				 cfg->greylist_delay);
	}
	return 0;
}

/* The rules that tie keys together; key_lines (may be NULL) locates errors. */
static int config_check(struct config *cfg, const unsigned *key_lines, struct config_error *err)
{
	for (size_t i = 0; i < NNAMED_KINDS; i++) {
		if (check_named(cfg, &named_kinds[i], err) < 0)
			return -1;
	}
	if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
		const char *set = cfg->tls_cert_file != NULL ? "cert" : "key";

		return error_set(err, key_line(key_lines, "tls", set), "tls", set,
				 "cert and key go together: set both or neither");
	}
	if (cfg->retry_min > cfg->retry_max) {
		unsigned lmin = key_line(key_lines, "queue", "retry_min");
		unsigned lmax = key_line(key_lines, "queue", "retry_max");

		return error_set(err, lmax > lmin ? lmax : lmin, "queue", lmax > lmin ? "retry_max" : "retry_min",
				 "retry_min (%us) is longer than retry_max (%us)", cfg->retry_min, cfg->retry_max);
	}
	for (size_t i = 0; i < cfg->ndomains; i++) {
		size_t d;

		if (local_domain_index(cfg, cfg->domains[i].domain, &d) == 0) {
			char sect[CONFIG_NAME_MAX + CONFIG_WORD_MAX + 4];

			section_text(sect, sizeof(sect), "domain", cfg->domains[i].domain);
			return error_set(err, cfg->domains[i].line, sect, NULL,
					 "also listed in [local] domains: a domain is either relayed or local");
		}
	}
	if (check_mailboxes(cfg, key_lines, err) < 0 || check_policy(cfg, key_lines, err) < 0)
		return -1;
	return build_lists(cfg, key_lines, err);
}

int config_finish(struct config *cfg, struct config_error *err)
{
	memset(err, 0, sizeof(*err));
	if (cfg->path != NULL)
		snprintf(err->file, sizeof(err->file), "%s", cfg->path);
	return config_check(cfg, NULL, err);
}

struct config *config_parse(const char *name, const char *text, size_t len, struct config_error *err)
{
	struct parser p = { 0 };
	struct config *cfg;
	int r;

	memset(err, 0, sizeof(*err));
	snprintf(err->file, sizeof(err->file), "%s", name);
	if (len > CONFIG_FILE_MAX) {
		error_set(err, 0, NULL, NULL, "file too large (%zu bytes, at most %d)", len, CONFIG_FILE_MAX);
		return NULL;
	}
	cfg = config_new();
	cfg->path = xstrdup(name);
	p.cfg = cfg;
	p.err = err;
	p.key_lines = xcalloc(config_nkeys, sizeof(*p.key_lines));
	p.plain_seen = xcalloc(config_nkeys, sizeof(*p.plain_seen));
	p.plain_seen_line = xcalloc(config_nkeys, sizeof(*p.plain_seen_line));
	r = parse_text(&p, text, len);
	if (r == 0)
		r = config_check(cfg, p.key_lines, err);
	free(p.key_lines);
	free(p.plain_seen);
	free(p.plain_seen_line);
	if (r < 0) {
		config_unref(cfg);
		return NULL;
	}
	return cfg;
}

/* Read at most CONFIG_FILE_MAX + 1 bytes so an oversized file is reported, not truncated. */
static char *read_config_file(const char *path, size_t *len, struct config_error *err)
{
	struct stat st;
	char *buf;
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		error_set(err, 0, NULL, NULL, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		error_set(err, 0, NULL, NULL, "not a regular file");
		close(fd);
		return NULL;
	}
	buf = xmalloc(CONFIG_FILE_MAX + 2);
	for (;;) {
		ssize_t r = read(fd, buf + n, CONFIG_FILE_MAX + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			error_set(err, 0, NULL, NULL, "cannot read: %s", strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0 || (n += (size_t)r) == CONFIG_FILE_MAX + 1)
			break;
	}
	close(fd);
	*len = n;
	return buf;
}

struct config *config_load(const char *path, struct config_error *err)
{
	struct config *cfg;
	size_t len;
	char *text;

	memset(err, 0, sizeof(*err));
	snprintf(err->file, sizeof(err->file), "%s", path);
	if ((text = read_config_file(path, &len, err)) == NULL)
		return NULL;
	cfg = config_parse(path, text, len, err);
	free(text);
	return cfg;
}

const struct relay_domain *config_find_domain(const struct config *cfg, const char *domain)
{
	if (cfg == NULL || domain == NULL)
		return NULL;
	return named_find(cfg, named_kind_find("domain"), domain);
}

bool config_is_local_domain(const struct config *cfg, const char *domain)
{
	size_t index;

	return cfg != NULL && domain != NULL && local_domain_index(cfg, domain, &index) == 0;
}

const struct user_account *config_find_user(const struct config *cfg, const char *address)
{
	if (cfg == NULL || address == NULL)
		return NULL;
	return named_find(cfg, named_kind_find("user"), address);
}

/* Quote what the parser would otherwise trim or take for a quoted value. */
static void dump_value(FILE *out, const char *v)
{
	size_t len = strlen(v);
	bool quote = len > 0 && (v[0] == '"' || v[0] == ' ' || v[0] == '\t' ||
				 v[len - 1] == ' ' || v[len - 1] == '\t');

	if (!quote) {
		fputs(v, out);
		return;
	}
	fputc('"', out);
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			fputc('\\', out);
		fputc(*v, out);
	}
	fputc('"', out);
}

static void dump_keys(FILE *out, const char *section, bool named, const void *base)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		struct strbuf sb;

		if (k->named != named || strcmp(k->section, section) != 0)
			continue;
		strbuf_init(&sb, CONFIG_DUMP_VALUE_MAX);
		if (config_key_format(k, base, &sb) < 0) {
			fprintf(out, "# %s is not set\n", k->name);
		} else {
			fprintf(out, "%s =%s", k->name, sb.len > 0 ? " " : "");
			dump_value(out, sb.data ? sb.data : "");
			fputc('\n', out);
		}
		strbuf_free(&sb);
	}
}

int config_dump(const struct config *cfg, FILE *out)
{
	const char *section = NULL;

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->named || (section != NULL && strcmp(section, k->section) == 0))
			continue;
		fprintf(out, "%s[%s]\n", section != NULL ? "\n" : "", k->section);
		section = k->section;
		dump_keys(out, section, false, cfg);
	}
	for (size_t i = 0; i < NNAMED_KINDS; i++) {
		const struct named_kind *nk = &named_kinds[i];

		for (size_t j = 0; j < named_count(cfg, nk); j++) {
			const void *inst = named_at(cfg, nk, j);

			fprintf(out, "\n[%s \"%s\"]\n", nk->section, named_name(inst, nk));
			dump_keys(out, nk->section, true, inst);
		}
	}
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
