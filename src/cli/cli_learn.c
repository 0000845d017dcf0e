/*
 * postern learn: teach the Bayesian filter from messages an operator has
 * sorted (spam and ham folders), take a mistake back (--forget), show what
 * the database holds (--stats) and drop stale rare tokens (--expire).
 * Learning the same message twice counts it once; learning it as the
 * other class moves it.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "content/bayes.h"
#include "content/fuzzy.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/config.h"
#include "store/bayes_store.h"
#include "store/fuzzy_store.h"

#define LEARN_MAX_SIZE ((uint64_t)64 * 1024 * 1024)
#define LEARN_MAX_DEPTH 32                 /* directory nesting followed */
#define LEARN_EXPIRE_MAX_COUNT 2           /* --expire drops tokens seen at most this often */

struct learn_options {
	const char *db;
	const char *fuzzy_db;                  /* --fuzzy, else [fuzzy] of the config when enabled */
	const char *config;
	bool forget;
	bool stats;
	bool verbose;
	long expire_days;                      /* -1: no --expire */
	bool is_spam;
};

struct learn_tally {
	unsigned long counts[BAYES_ERROR + 1];
	unsigned long unreadable;
	unsigned long fuzzy_stored;            /* spam signatures remembered */
	unsigned long fuzzy_forgotten;         /* entries dropped by ham or --forget spam */
};

/* What one run teaches: the Bayes filter, and the fuzzy store when there is one. */
struct learner {
	struct bayes *bayes;
	struct fuzzy *fuzzy;                   /* NULL: no fuzzy store */
};

static void learn_usage(FILE *out)
{
	fprintf(out,
		"usage: postern learn [--db PATH] [--fuzzy PATH] [-c CONFIG] [-v] spam|ham FILE|DIR...\n"
		"       postern learn --forget [--db PATH] [--fuzzy PATH] [-c CONFIG] spam|ham FILE|DIR...\n"
		"       postern learn --stats [--db PATH] [-c CONFIG]\n"
		"       postern learn --expire DAYS [--db PATH] [-c CONFIG]\n"
		"\n"
		"Teach the Bayesian filter: count each raw message FILE (directories are\n"
		"read recursively) as spam or ham. A message already learned as that\n"
		"class is skipped; one learned as the other class is moved.\n"
		"\n"
		"  --db PATH    the token database (default: [bayes] database of CONFIG,\n"
		"               or <data_dir>/bayes.db)\n"
		"  --fuzzy PATH also the fuzzy checksum database: spam is remembered there,\n"
		"               ham (and --forget spam) drops its near-duplicates (default:\n"
		"               [fuzzy] database of CONFIG when -c is given and [fuzzy] is on)\n"
		"  -c CONFIG    the configuration whose data_dir holds the databases\n"
		"               (default " POSTERN_DEFAULT_CONFIG ")\n"
		"  --forget     take back messages learned as spam|ham\n"
		"  --stats      print the messages learned and the tokens known\n"
		"  --expire DAYS  drop tokens not learned for DAYS days and seen in at most\n"
		"               %d messages\n"
		"  -v           one line per message\n", LEARN_EXPIRE_MAX_COUNT);
}

/*
 * The databases: --db and --fuzzy, else the configuration's ([bayes]
 * database or <data_dir>/bayes.db; [fuzzy] only with -c and [fuzzy] on).
 * -1 (reported) when the Bayes one cannot be found.
 */
static int learn_db_paths(const struct learn_options *o, char **bayes_db, char **fuzzy_db,
			  struct fuzzy_options *fo)
{
	const char *path = o->config != NULL ? o->config : POSTERN_DEFAULT_CONFIG;
	struct config_error err;
	struct config *cfg = NULL;
	char message[1024];

	*bayes_db = xstrdup_or_null(o->db);
	*fuzzy_db = xstrdup_or_null(o->fuzzy_db);
	if (*bayes_db != NULL && (*fuzzy_db != NULL || o->config == NULL))
		cfg = config_new();
	else
		cfg = config_load(path, &err);
	if (cfg == NULL) {
		config_error_format(&err, message, sizeof(message));
		fprintf(stderr, "postern learn: %s (or give --db PATH)\n", message);
		free(*bayes_db);
		free(*fuzzy_db);
		return -1;
	}
	if (*bayes_db == NULL)
		*bayes_db = config_store_path(cfg, cfg->bayes_database, "bayes.db");
	if (*fuzzy_db == NULL && o->config != NULL && cfg->fuzzy_enabled)
		*fuzzy_db = config_store_path(cfg, cfg->fuzzy_database, "fuzzy.db");
	/* The gateway's matching rules, so what is remembered here matches there. */
	fuzzy_options_from_config(cfg, fo);
	config_unref(cfg);
	return 0;
}


/* Spam is remembered by the fuzzy store; ham, or spam taken back, drops what it matches there. */
static void learn_fuzzy(struct fuzzy *f, const struct mime_message *m, const struct learn_options *o,
			struct learn_tally *t)
{
	int n;

	if (f == NULL || m == NULL)
		return;
	if (o->is_spam && !o->forget) {
		if (fuzzy_learn(f, m) > 0)
			t->fuzzy_stored++;
	} else if ((n = fuzzy_forget(f, m)) > 0) {
		t->fuzzy_forgotten += (unsigned long)n;
	}
}

static void learn_file(const struct learner *l, const char *path, const struct learn_options *o,
		       struct learn_tally *t)
{
	struct mime_limits limits;
	struct mime_message *m;
	enum bayes_learn_result r;
	char why[256];
	size_t len;
	char *raw = cli_read_file(path, LEARN_MAX_SIZE, &len, why, sizeof(why));

	if (raw == NULL) {
		fprintf(stderr, "postern learn: %s: %s\n", path, why);
		t->unreadable++;
		return;
	}
	mime_limits_default(&limits);
	m = mime_parse((const unsigned char *)raw, len, &limits, NULL);
	r = bayes_learn(l->bayes, m, (const unsigned char *)raw, len, o->is_spam, o->forget, bayes_store_today());
	learn_fuzzy(l->fuzzy, m, o, t);
	t->counts[r]++;
	if (o->verbose || r == BAYES_ERROR)
		printf("%s: %s\n", path, bayes_learn_result_name(r));
	mime_message_free(m);
	free(raw);
}

static int name_filter(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* A file, or every file under a directory in name order. */
static void learn_path(const struct learner *l, const char *path, int depth, const struct learn_options *o,
		       struct learn_tally *t)
{
	struct dirent **names;
	struct stat st;
	int n;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "postern learn: %s: %s\n", path, strerror(errno));
		t->unreadable++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		learn_file(l, path, o, t);
		return;
	}
	if (depth >= LEARN_MAX_DEPTH) {
		fprintf(stderr, "postern learn: %s: nested deeper than %d directories, skipped\n", path,
			LEARN_MAX_DEPTH);
		return;
	}
	if ((n = scandir(path, &names, name_filter, alphasort)) < 0) {
		fprintf(stderr, "postern learn: %s: %s\n", path, strerror(errno));
		t->unreadable++;
		return;
	}
	for (int i = 0; i < n; i++) {
		char *child = xasprintf("%s/%s", path, names[i]->d_name);

		learn_path(l, child, depth + 1, o, t);
		free(child);
		free(names[i]);
	}
	free(names);
}

static void print_stats(struct bayes_store *s)
{
	struct bayes_totals totals;

	s->ops->lookup(s->be, NULL, 0, NULL, &totals);
	printf("spam messages: %llu\nham messages: %llu\ntokens: %llu\n", (unsigned long long)totals.spam,
	       (unsigned long long)totals.ham, (unsigned long long)totals.tokens);
}

static void print_tally(const struct learn_options *o, const struct learn_tally *t)
{
	printf("%s %s:", o->forget ? "forget" : "learn", o->is_spam ? "spam" : "ham");
	for (int r = BAYES_LEARNED; r <= BAYES_ERROR; r++)
		if (t->counts[r] > 0)
			printf(" %lu %s,", t->counts[r], bayes_learn_result_name((enum bayes_learn_result)r));
	printf(" %lu unreadable\n", t->unreadable);
	if (t->fuzzy_stored > 0 || t->fuzzy_forgotten > 0)
		printf("fuzzy: %lu remembered, %lu forgotten\n", t->fuzzy_stored, t->fuzzy_forgotten);
}

/* Parse options; returns the index of the first operand, or -1 (usage error, reported). */
static int learn_parse(int argc, char **argv, struct learn_options *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--db") == 0 || strcmp(a, "--fuzzy") == 0 || strcmp(a, "-c") == 0 ||
		    strcmp(a, "--expire") == 0) {
			char *end;

			if (i + 1 == argc) {
				fprintf(stderr, "postern learn: %s needs a value\n", a);
				return -1;
			}
			if (strcmp(a, "--db") == 0) {
				o->db = argv[++i];
			} else if (strcmp(a, "--fuzzy") == 0) {
				o->fuzzy_db = argv[++i];
			} else if (strcmp(a, "-c") == 0) {
				o->config = argv[++i];
			} else {
				errno = 0;
				o->expire_days = strtol(argv[++i], &end, 10);
				if (errno != 0 || *end != '\0' || end == argv[i] || o->expire_days < 1) {
					fprintf(stderr, "postern learn: --expire needs a number of days\n");
					return -1;
				}
			}
		} else if (strcmp(a, "--forget") == 0) {
			o->forget = true;
		} else if (strcmp(a, "--stats") == 0) {
			o->stats = true;
		} else if (strcmp(a, "-v") == 0) {
			o->verbose = true;
		} else if (strcmp(a, "--") == 0) {
			return i + 1;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "postern learn: unknown option '%s'\n", a);
			return -1;
		} else {
			return i;
		}
	}
	return i;
}

/* --stats and --expire: the Bayes database only. */
static int learn_maintain(struct bayes_store *store, const struct learn_options *o)
{
	long n;

	if (o->stats) {
		print_stats(store);
		bayes_store_close(store);
		return 0;
	}
	n = store->ops->expire(store->be, bayes_store_today(), (uint32_t)o->expire_days, LEARN_EXPIRE_MAX_COUNT);
	if (n >= 0)
		printf("expired %ld tokens\n", n);
	bayes_store_close(store);
	return n >= 0 ? 0 : 1;
}

/* The fuzzy store of path, or NULL (reported) when it cannot be opened. */
static struct fuzzy *learn_open_fuzzy(const char *path, const struct fuzzy_options *fo)
{
	struct fuzzy_store *store;
	char err[512];

	if ((store = fuzzy_store_open_sqlite(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "postern learn: fuzzy database %s: %s\n", path, err);
		return NULL;
	}
	return fuzzy_new(store, fo);
}

int cli_learn(int argc, char **argv)
{
	struct learn_options o = { .expire_days = -1 };
	struct learn_tally t = { { 0 }, 0, 0, 0 };
	struct fuzzy_options fo;
	struct learner l = { NULL, NULL };
	struct bayes_store *store;
	char err[1024];
	char *db, *fuzzy_db;
	int first, status = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			learn_usage(stdout);
			return 0;
		}
	}
	if ((first = learn_parse(argc, argv, &o)) < 0) {
		learn_usage(stderr);
		return 2;
	}
	if (!o.stats && o.expire_days < 0) {
		if (first >= argc || (strcmp(argv[first], "spam") != 0 && strcmp(argv[first], "ham") != 0)) {
			fprintf(stderr, "postern learn: say spam or ham\n");
			learn_usage(stderr);
			return 2;
		}
		o.is_spam = strcmp(argv[first], "spam") == 0;
		if (++first >= argc) {
			fprintf(stderr, "postern learn: no message to learn\n");
			learn_usage(stderr);
			return 2;
		}
	} else if (first < argc) {
		fprintf(stderr, "postern learn: --stats and --expire take no files\n");
		learn_usage(stderr);
		return 2;
	}
	if (learn_db_paths(&o, &db, &fuzzy_db, &fo) < 0)
		return 1;
	if ((store = bayes_store_open_sqlite(db, err, sizeof(err))) == NULL) {
		fprintf(stderr, "postern learn: %s\n", err);
		free(db);
		free(fuzzy_db);
		return 1;
	}
	free(db);
	if (o.stats || o.expire_days > 0) {
		free(fuzzy_db);
		return learn_maintain(store, &o);
	}
	if (fuzzy_db != NULL && (l.fuzzy = learn_open_fuzzy(fuzzy_db, &fo)) == NULL) {
		free(fuzzy_db);
		bayes_store_close(store);
		return 1;
	}
	free(fuzzy_db);
	mime_global_init();
	l.bayes = bayes_new(store, NULL);
	for (int i = first; i < argc; i++)
		learn_path(&l, argv[i], 0, &o, &t);
	if (store->ops->flush(store->be) < 0)
		status = 1;
	print_tally(&o, &t);
	bayes_free(l.bayes);
	fuzzy_free(l.fuzzy);
	mime_global_shutdown();
	if (t.unreadable > 0 || t.counts[BAYES_ERROR] > 0)
		status = 1;
	return status;
}
