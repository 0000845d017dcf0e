/*
 * The in-process virus engine on libclamav (see virus.h for the model).
 *
 * Concurrency: ve->db_lock guards only the current-db pointer and the
 * reference counts, and is held for a few instructions, never while a
 * database loads or a message is scanned. ve->reload_lock serialises
 * starting and joining the reload thread and owns the directory snapshot
 * (ve->stat, ve->dir_mtime).
 */
#include "content/virus.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <clamav.h>

#define LOG_MODULE "virus"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/log.h"

#define VIRUS_ENGINE_NAME "virus"
/* A virus is never wanted mail: SCL 9 even where the action only tags. */
#define VIRUS_SCORE 20.0

/* One compiled signature database and the scans using it. */
struct virus_db {
	struct cl_engine *cl;
	unsigned refs;                      /* guarded by ve->db_lock */
	unsigned sigs;
	char version[VIRUS_VERSION_MAX];
};

struct virus_engine {
	atomic_uint refs;                   /* the creator's and one per content engine */
	struct virus_options opts;          /* db_dir owned below */
	char *db_dir;
	struct cl_scan_options scan_opts;
	struct virus_sampling sampling;

	pthread_mutex_t db_lock;
	struct virus_db *db;

	pthread_mutex_t reload_lock;
	pthread_t reload_thread;
	bool reload_joinable;               /* reload_thread must be joined */
	atomic_bool reload_running;
	atomic_uint reloads;
	struct cl_stat stat;
	struct timespec dir_mtime;          /* catches removed files, which cl_stat misses */
};

static pthread_once_t virus_cl_once = PTHREAD_ONCE_INIT;
static cl_error_t virus_cl_init_rc;

/* libclamav prints to stderr unless told otherwise: route it to our log. */
static void virus_cl_message(enum cl_msg severity, const char *fullmsg, const char *msg,
			     void *context)
{
	int len = (int)strcspn(msg, "\n");

	switch (severity) {
	case CL_MSG_ERROR:
		log_error("libclamav: %.*s", len, msg);
		break;
	case CL_MSG_WARN:
		log_warn("libclamav: %.*s", len, msg);
		break;
	default:
		log_debug("libclamav: %.*s", len, msg);
		break;
	}
}

/* cl_init and the message callback must run once, before any thread scans. */
static void virus_cl_init_once(void)
{
	cl_set_clcb_msg(virus_cl_message);
	virus_cl_init_rc = cl_init(CL_INIT_DEFAULT);
}

static uint32_t virus_default_random(void *arg)
{
	return arc4random();
}

static void virus_format_time(time_t t, char *buf, size_t buflen)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool virus_set_limit(struct cl_engine *cl, enum cl_engine_field field, long long value,
			    const char *what, char *err, size_t errlen)
{
	cl_error_t rc = cl_engine_set_num(cl, field, value);

	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "cannot set %s: %s", what, cl_strerror(rc));
		return false;
	}
	return true;
}

static bool virus_set_limits(struct cl_engine *cl, const struct virus_options *o,
			     char *err, size_t errlen)
{
	return virus_set_limit(cl, CL_ENGINE_MAX_SCANSIZE, (long long)o->max_scansize,
			       "max scan size", err, errlen) &&
	       virus_set_limit(cl, CL_ENGINE_MAX_FILESIZE, (long long)o->max_filesize,
			       "max file size", err, errlen) &&
	       virus_set_limit(cl, CL_ENGINE_MAX_RECURSION, o->max_recursion,
			       "max recursion", err, errlen) &&
	       virus_set_limit(cl, CL_ENGINE_MAX_FILES, o->max_files,
			       "max files", err, errlen);
}

/* The official CVDs carry a version (daily's wins); our own files do not. */
static void virus_db_describe(struct virus_db *db)
{
	char when[32];
	long long dbver;
	int gerr = 0;

	virus_format_time(time(NULL), when, sizeof(when));
	dbver = cl_engine_get_num(db->cl, CL_ENGINE_DB_VERSION, &gerr);
	if (gerr == CL_SUCCESS && dbver > 0)
		snprintf(db->version, sizeof(db->version), "daily=%lld sigs=%u loaded=%s",
			 dbver, db->sigs, when);
	else
		snprintf(db->version, sizeof(db->version), "sigs=%u loaded=%s", db->sigs, when);
}

/* Builds a complete, compiled database; slow (seconds with official CVDs). */
static struct virus_db *virus_db_load(const struct virus_options *o, char *err, size_t errlen)
{
	struct virus_db *db = xcalloc(1, sizeof(*db));
	cl_error_t rc;

	db->cl = cl_engine_new();
	if (db->cl == NULL) {
		snprintf(err, errlen, "cl_engine_new failed");
		free(db);
		return NULL;
	}
	if (!virus_set_limits(db->cl, o, err, errlen))
		goto fail;
	rc = cl_load(o->db_dir, db->cl, &db->sigs, CL_DB_STDOPT);
	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "cannot load signatures from %s: %s", o->db_dir,
			 cl_strerror(rc));
		goto fail;
	}
	rc = cl_engine_compile(db->cl);
	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "cannot compile signatures of %s: %s", o->db_dir,
			 cl_strerror(rc));
		goto fail;
	}
	db->refs = 1;
	virus_db_describe(db);
	return db;
fail:
	cl_engine_free(db->cl);
	free(db);
	return NULL;
}

static struct virus_db *virus_db_acquire(struct virus_engine *ve)
{
	struct virus_db *db;

	pthread_mutex_lock(&ve->db_lock);
	db = ve->db;
	db->refs++;
	pthread_mutex_unlock(&ve->db_lock);
	return db;
}

/* The last holder frees: a db replaced by a reload dies with its last scan. */
static void virus_db_release(struct virus_engine *ve, struct virus_db *db)
{
	bool last;

	pthread_mutex_lock(&ve->db_lock);
	last = --db->refs == 0;
	pthread_mutex_unlock(&ve->db_lock);
	if (last) {
		cl_engine_free(db->cl);
		free(db);
	}
}

static bool virus_dir_mtime(const char *dir, struct timespec *out)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return false;
	*out = st.st_mtim;
	return true;
}

/* Remembers the directory as it is now, so the next check sees later changes. */
static void virus_snapshot_dir(struct virus_engine *ve)
{
	if (ve->stat.dir != NULL)
		cl_statfree(&ve->stat);
	memset(&ve->stat, 0, sizeof(ve->stat));
	if (cl_statinidir(ve->db_dir, &ve->stat) != CL_SUCCESS) {
		log_warn("cannot watch %s for signature changes", ve->db_dir);
		memset(&ve->stat, 0, sizeof(ve->stat));
	}
	if (!virus_dir_mtime(ve->db_dir, &ve->dir_mtime))
		memset(&ve->dir_mtime, 0, sizeof(ve->dir_mtime));
}

static void virus_options_defaults(struct virus_options *o)
{
	if (o->max_scansize == 0)
		o->max_scansize = VIRUS_DEFAULT_MAX_SCANSIZE;
	if (o->max_filesize == 0)
		o->max_filesize = VIRUS_DEFAULT_MAX_FILESIZE;
	if (o->max_recursion == 0)
		o->max_recursion = VIRUS_DEFAULT_MAX_RECURSION;
	if (o->max_files == 0)
		o->max_files = VIRUS_DEFAULT_MAX_FILES;
	if (o->action == CONTENT_NONE)
		o->action = CONTENT_REJECT;
	if (o->sample_hot_seconds == 0)
		o->sample_hot_seconds = VIRUS_DEFAULT_HOT_SECONDS;
	if (o->random == NULL)
		o->random = virus_default_random;
}

/* Every parser on: mail arrives as anything, and a miss is worse than the CPU. */
static void virus_scan_options(struct cl_scan_options *so, const struct virus_options *o)
{
	memset(so, 0, sizeof(*so));
	so->general = CL_SCAN_GENERAL_HEURISTICS;
	so->parse = ~0u;
	if (o->alert_exceeds_max)
		so->heuristic |= CL_SCAN_HEURISTIC_EXCEEDS_MAX;
	if (o->alert_encrypted)
		so->heuristic |= CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
}

struct virus_engine *virus_engine_new(const struct virus_options *o, char *err, size_t errlen)
{
	struct virus_engine *ve;

	if (o->db_dir == NULL || o->db_dir[0] == '\0') {
		snprintf(err, errlen, "no signature directory configured");
		return NULL;
	}
	pthread_once(&virus_cl_once, virus_cl_init_once);
	if (virus_cl_init_rc != CL_SUCCESS) {
		snprintf(err, errlen, "cl_init failed: %s", cl_strerror(virus_cl_init_rc));
		return NULL;
	}
	ve = xcalloc(1, sizeof(*ve));
	atomic_init(&ve->refs, 1);
	ve->opts = *o;
	virus_options_defaults(&ve->opts);
	ve->db_dir = xstrdup(o->db_dir);
	ve->opts.db_dir = ve->db_dir;
	virus_scan_options(&ve->scan_opts, &ve->opts);
	virus_sampling_init(&ve->sampling, ve->opts.sample_percent, ve->opts.sample_hot_seconds,
			    ve->opts.random, ve->opts.random_arg);
	virus_snapshot_dir(ve);
	ve->db = virus_db_load(&ve->opts, err, errlen);
	if (ve->db == NULL) {
		if (ve->stat.dir != NULL)
			cl_statfree(&ve->stat);
		free(ve->db_dir);
		free(ve);
		return NULL;
	}
	pthread_mutex_init(&ve->db_lock, NULL);
	pthread_mutex_init(&ve->reload_lock, NULL);
	log_info("signatures loaded dir=%s %s", ve->db_dir, ve->db->version);
	return ve;
}

struct virus_engine *virus_engine_ref(struct virus_engine *ve)
{
	atomic_fetch_add(&ve->refs, 1);
	return ve;
}

void virus_engine_free(struct virus_engine *ve)
{
	if (ve == NULL || atomic_fetch_sub(&ve->refs, 1) > 1)
		return;
	pthread_mutex_lock(&ve->reload_lock);
	if (ve->reload_joinable)
		pthread_join(ve->reload_thread, NULL);
	ve->reload_joinable = false;
	pthread_mutex_unlock(&ve->reload_lock);
	virus_db_release(ve, ve->db);
	if (ve->stat.dir != NULL)
		cl_statfree(&ve->stat);
	pthread_mutex_destroy(&ve->reload_lock);
	pthread_mutex_destroy(&ve->db_lock);
	free(ve->db_dir);
	free(ve);
}

static void virus_result_set(struct virus_result *out, enum virus_status status,
			     const char *name, const struct virus_db *db)
{
	out->status = status;
	snprintf(out->name, sizeof(out->name), "%s", name ? name : "");
	snprintf(out->version, sizeof(out->version), "%s", db->version);
}

enum virus_status virus_scan(struct virus_engine *ve, const void *data, size_t len,
			     const char *filename, struct virus_result *out)
{
	struct virus_db *db = virus_db_acquire(ve);
	struct cl_scan_options so = ve->scan_opts;
	const char *virname = NULL;
	unsigned long scanned = 0;
	cl_fmap_t *map;
	cl_error_t rc;

	if (len == 0) {
		virus_result_set(out, VIRUS_CLEAN, NULL, db);
		goto done;
	}
	map = cl_fmap_open_memory(data, len);
	if (map == NULL) {
		virus_result_set(out, VIRUS_ERROR, "cannot map the buffer", db);
		goto done;
	}
	rc = cl_scanmap_callback(map, filename, &virname, &scanned, db->cl, &so, NULL);
	cl_fmap_close(map);
	if (rc == CL_VIRUS)
		virus_result_set(out, VIRUS_INFECTED, virname ? virname : "unknown", db);
	else if (rc == CL_CLEAN)
		virus_result_set(out, VIRUS_CLEAN, NULL, db);
	else
		virus_result_set(out, VIRUS_ERROR, cl_strerror(rc), db);
done:
	virus_db_release(ve, db);
	return out->status;
}

enum virus_status virus_scan_buffer(struct virus_engine *ve, const void *data, size_t len,
				    char *name, size_t namelen)
{
	struct virus_result r;

	virus_scan(ve, data, len, NULL, &r);
	if (name != NULL && namelen > 0)
		snprintf(name, namelen, "%s", r.name);
	return r.status;
}

/* The new db goes live for the next scan; scans in flight keep the old one. */
static void *virus_reload_thread(void *arg)
{
	struct virus_engine *ve = arg;
	struct virus_db *db, *old;
	char err[256];

	db = virus_db_load(&ve->opts, err, sizeof(err));
	if (db != NULL) {
		pthread_mutex_lock(&ve->db_lock);
		old = ve->db;
		ve->db = db;
		pthread_mutex_unlock(&ve->db_lock);
		log_info("signatures reloaded dir=%s %s", ve->db_dir, db->version);
		virus_db_release(ve, old);
	} else {
		log_error("signature reload failed, keeping the loaded ones: %s", err);
	}
	atomic_fetch_add(&ve->reloads, 1);
	atomic_store(&ve->reload_running, false);
	return NULL;
}

/* Called with reload_lock held. */
static bool virus_start_reload(struct virus_engine *ve)
{
	int rc;

	if (atomic_load(&ve->reload_running))
		return false;
	if (ve->reload_joinable) {
		pthread_join(ve->reload_thread, NULL);
		ve->reload_joinable = false;
	}
	virus_snapshot_dir(ve);
	atomic_store(&ve->reload_running, true);
	rc = pthread_create(&ve->reload_thread, NULL, virus_reload_thread, ve);
	if (rc != 0) {
		atomic_store(&ve->reload_running, false);
		log_error("cannot start the signature reload thread: %s", strerror(rc));
		return false;
	}
	ve->reload_joinable = true;
	return true;
}

bool virus_engine_reload(struct virus_engine *ve)
{
	bool started;

	pthread_mutex_lock(&ve->reload_lock);
	started = virus_start_reload(ve);
	pthread_mutex_unlock(&ve->reload_lock);
	return started;
}

static bool virus_dir_changed(struct virus_engine *ve)
{
	struct timespec now;

	if (!virus_dir_mtime(ve->db_dir, &now))
		return false;
	if (now.tv_sec != ve->dir_mtime.tv_sec || now.tv_nsec != ve->dir_mtime.tv_nsec)
		return true;
	return ve->stat.dir != NULL && cl_statchkdir(&ve->stat) == 1;
}

bool virus_engine_check_reload(struct virus_engine *ve)
{
	bool started = false;

	pthread_mutex_lock(&ve->reload_lock);
	if (!atomic_load(&ve->reload_running) && virus_dir_changed(ve)) {
		log_info("signature directory %s changed, reloading", ve->db_dir);
		started = virus_start_reload(ve);
	}
	pthread_mutex_unlock(&ve->reload_lock);
	return started;
}

void virus_engine_version(struct virus_engine *ve, char *buf, size_t buflen)
{
	struct virus_db *db = virus_db_acquire(ve);

	snprintf(buf, buflen, "%s", db->version);
	virus_db_release(ve, db);
}

unsigned virus_engine_reloads(struct virus_engine *ve)
{
	return atomic_load(&ve->reloads);
}

const char *virus_engine_db_dir(const struct virus_engine *ve)
{
	return ve->db_dir;
}

/* A config reload changes the sampling of scans that start from now on. */
void virus_engine_set_sampling(struct virus_engine *ve, unsigned percent, unsigned hot_seconds)
{
	atomic_store(&ve->sampling.percent, percent);
	atomic_store(&ve->sampling.hot_seconds, hot_seconds ? hot_seconds : VIRUS_DEFAULT_HOT_SECONDS);
}

void virus_sampling_init(struct virus_sampling *s, unsigned percent, unsigned hot_seconds,
			 virus_random_fn random, void *random_arg)
{
	atomic_init(&s->percent, percent);
	atomic_init(&s->hot_seconds, hot_seconds);
	atomic_init(&s->last_detection, LLONG_MIN);
	s->random = random ? random : virus_default_random;
	s->random_arg = random_arg;
}

/* Sampling saves CPU while mail is quiet, never while an outbreak is running. */
bool virus_sampling_should_scan(struct virus_sampling *s, time_t now)
{
	long long last = atomic_load(&s->last_detection);
	unsigned percent = atomic_load(&s->percent);

	if (percent == 0 || percent >= 100)
		return true;
	if (last != LLONG_MIN && (long long)now < last + (long long)atomic_load(&s->hot_seconds))
		return true;
	return s->random(s->random_arg) % 100 < percent;
}

void virus_sampling_detected(struct virus_sampling *s, time_t now)
{
	long long last = atomic_load(&s->last_detection);

	/* Keep the latest detection when threads report out of order. */
	while ((last == LLONG_MIN || last < (long long)now) &&
	       !atomic_compare_exchange_weak(&s->last_detection, &last, (long long)now))
		;
}

struct virus_sampling *virus_engine_sampling(struct virus_engine *ve)
{
	return &ve->sampling;
}

static time_t virus_monotonic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void virus_add_result(struct engine_results *out, const char *symbol, double score,
			     enum content_action action, int part, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void virus_add_result(struct engine_results *out, const char *symbol, double score,
			     enum content_action action, int part, const char *fmt, ...)
{
	struct engine_result *res = engine_results_add(out, VIRUS_ENGINE_NAME, symbol);
	va_list ap;

	res->score = score;
	res->category = CATEGORY_VIRUS;
	res->action = action;
	res->part_index = part;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

/* The content engine of one pipeline: the shared scanner, this config's actions. */
struct virus_content {
	struct virus_engine *ve;            /* a reference of its own */
	enum content_action action;
	bool pass_on_error;
};

/* Scans one buffer and reports a detection or failure; true if infected. */
static bool virus_check_one(const struct virus_content *vc, const unsigned char *data, size_t len,
			    int part, const char *part_name, struct engine_results *out,
			    struct virus_result *r)
{
	switch (virus_scan(vc->ve, data, len, part_name, r)) {
	case VIRUS_INFECTED:
		virus_add_result(out, "VIRUS_FOUND", VIRUS_SCORE, vc->action, part,
				 "%s in %s", r->name, part_name);
		log_info("virus found name=%s part=%s %s", r->name, part_name, r->version);
		return true;
	case VIRUS_ERROR:
		virus_add_result(out, "VIRUS_ERROR", 0,
				 vc->pass_on_error ? CONTENT_NONE : CONTENT_DEFER, part,
				 "cannot scan %s: %s", part_name, r->name);
		log_warn("scan failed part=%s: %s", part_name, r->name);
		return false;
	case VIRUS_CLEAN:
		break;
	}
	return false;
}

static void virus_part_name(const struct mime_message *mime, size_t i, char *buf, size_t buflen)
{
	const struct mime_part *p = &mime->parts[i];

	if (p->filename != NULL && p->filename[0] != '\0')
		snprintf(buf, buflen, "part %zu (%s)", i + 1, p->filename);
	else
		snprintf(buf, buflen, "part %zu (%s/%s)", i + 1, p->type ? p->type : "text",
			 p->subtype ? p->subtype : "plain");
}

/* Decoded parts are what a recipient opens; the raw message covers what the parse gave up on. */
static void virus_content_check(void *state, const struct content_message *m,
				struct engine_results *out)
{
	const struct virus_content *vc = state;
	struct virus_engine *ve = vc->ve;
	const struct mime_message *mime = m->mime;
	struct virus_result r = { .status = VIRUS_CLEAN };
	bool infected = false, whole;
	time_t now = virus_monotonic_now();
	char name[128];

	if (!virus_sampling_should_scan(&ve->sampling, now)) {
		virus_add_result(out, "VIRUS_SKIPPED", 0, CONTENT_NONE, -1,
				 "not sampled (%u%% while quiet)", atomic_load(&ve->sampling.percent));
		return;
	}
	whole = mime == NULL || mime->nparts == 0 || mime->limit_exceeded != 0;
	for (size_t i = 0; mime != NULL && i < mime->nparts; i++) {
		if (mime->parts[i].body == NULL || mime->parts[i].body_len == 0)
			continue;
		virus_part_name(mime, i, name, sizeof(name));
		infected |= virus_check_one(vc, mime->parts[i].body, mime->parts[i].body_len,
					    (int)i, name, out, &r);
	}
	if (whole)
		infected |= virus_check_one(vc, m->raw, m->raw_len, -1, "message", out, &r);
	if (r.version[0] == '\0')
		virus_engine_version(ve, r.version, sizeof(r.version));
	virus_add_result(out, "VIRUS_SCANNED", 0, CONTENT_NONE, -1, "signatures %s", r.version);
	if (infected)
		virus_sampling_detected(&ve->sampling, now);
}

static void virus_content_free(void *state)
{
	struct virus_content *vc = state;

	virus_engine_free(vc->ve);
	free(vc);
}

struct content_engine *virus_content_engine_with(struct virus_engine *ve, enum content_action action,
						 bool pass_on_error)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));
	struct virus_content *vc = xcalloc(1, sizeof(*vc));

	vc->ve = virus_engine_ref(ve);
	vc->action = action == CONTENT_NONE ? CONTENT_REJECT : action;
	vc->pass_on_error = pass_on_error;
	e->name = VIRUS_ENGINE_NAME;
	e->state = vc;
	e->check = virus_content_check;
	e->free = virus_content_free;
	return e;
}

struct content_engine *virus_content_engine(struct virus_engine *ve)
{
	return virus_content_engine_with(ve, ve->opts.action, ve->opts.pass_on_error);
}
