/*
 * The virus engine: libclamav in process.
 *
 * One compiled signature database (a "db") is shared by every scanning
 * thread. A reload builds a new db beside the old one on a background
 * thread and swaps it in; a scan holds a reference to the db it started
 * with, so a scan in flight never fails or waits, and the old db is freed
 * when its last scan returns.
 *
 * Every verdict carries the version of the signatures that gave it
 * ("daily=27000 sigs=N loaded=2026-11-25T21:00:00Z" with official CVDs,
 * "sigs=N loaded=..." without), for the X-header and the log.
 *
 * Sampling: scan only P% of messages while no virus was seen for T
 * seconds, every message for T seconds after a detection.
 */
#ifndef POSTERN_VIRUS_H
#define POSTERN_VIRUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "content/engine.h"

#define VIRUS_NAME_MAX 128          /* signature name or error text, NUL included */
#define VIRUS_VERSION_MAX 96        /* signature version, NUL included */

#define VIRUS_DEFAULT_MAX_SCANSIZE (100ULL << 20)
#define VIRUS_DEFAULT_MAX_FILESIZE (25ULL << 20)
#define VIRUS_DEFAULT_MAX_RECURSION 16
#define VIRUS_DEFAULT_MAX_FILES 10000
#define VIRUS_DEFAULT_HOT_SECONDS 3600

enum virus_status {
	VIRUS_CLEAN = 0,
	VIRUS_INFECTED,
	VIRUS_ERROR,                /* not scanned: the caller decides (defer, pass) */
};

/* One verdict, the same for the in-process engine and clamd. */
struct virus_result {
	enum virus_status status;
	char name[VIRUS_NAME_MAX];          /* INFECTED: signature; ERROR: what failed */
	char version[VIRUS_VERSION_MAX];    /* the signatures that gave the verdict */
};

/* Uniform 32-bit random numbers; must be thread-safe. */
typedef uint32_t (*virus_random_fn)(void *arg);

struct virus_options {
	const char *db_dir;                 /* every .cvd/.cld/.hdb/.ndb/... in it */
	uint64_t max_scansize;              /* bytes scanned per message; 0: default */
	uint64_t max_filesize;              /* largest single file looked at; 0: default */
	unsigned max_recursion;             /* archive nesting; 0: default */
	unsigned max_files;                 /* files per archive; 0: default */
	bool alert_exceeds_max;             /* a message over the limits is a virus */
	bool alert_encrypted;               /* encrypted archives/documents are viruses */
	bool pass_on_error;                 /* a part that cannot be scanned: pass, not defer */
	enum content_action action;         /* CONTENT_NONE: CONTENT_REJECT */
	unsigned sample_percent;            /* 0 or >= 100: scan every message */
	unsigned sample_hot_seconds;        /* 0: VIRUS_DEFAULT_HOT_SECONDS */
	virus_random_fn random;             /* NULL: arc4random */
	void *random_arg;
};

struct virus_engine;

/* Loads and compiles every signature of o->db_dir; NULL and err on failure (one reference). */
struct virus_engine *virus_engine_new(const struct virus_options *o, char *err, size_t errlen);
/* Another reference (thread-safe): each content engine holds one. */
struct virus_engine *virus_engine_ref(struct virus_engine *ve);
/*
 * Drops a reference; the last one waits for a reload in progress and
 * frees the engine (its scans must have returned).
 */
void virus_engine_free(struct virus_engine *ve);

/* Thread-safe. name (may be NULL) gets the signature or the error. */
enum virus_status virus_scan_buffer(struct virus_engine *ve, const void *data, size_t len,
				    char *name, size_t namelen);
/* The same with the signature version; filename may be NULL. */
enum virus_status virus_scan(struct virus_engine *ve, const void *data, size_t len,
			     const char *filename, struct virus_result *out);

/*
 * Called periodically (a timer on the loop thread): when a file of the
 * database directory was added, removed or changed, starts a reload in
 * the background and returns true. Never blocks on loading.
 */
bool virus_engine_check_reload(struct virus_engine *ve);
/* Starts a reload now (admin "reload"); false when one is already running. */
bool virus_engine_reload(struct virus_engine *ve);
/* The version of the signatures new scans use. */
void virus_engine_version(struct virus_engine *ve, char *buf, size_t buflen);
/* Completed reloads since virus_engine_new (failed ones included). */
unsigned virus_engine_reloads(struct virus_engine *ve);
/* The signature directory the engine loads from. */
const char *virus_engine_db_dir(const struct virus_engine *ve);
/* New sampling for scans starting from now (hot_seconds 0: the default); thread-safe. */
void virus_engine_set_sampling(struct virus_engine *ve, unsigned percent, unsigned hot_seconds);

/*
 * The engine of the content pipeline (content/engine.h). It scans every
 * decoded part of the parsed message, and the raw message as well when
 * the parse is missing or stopped at a limit (libclamav parses mail
 * itself). Results, all with category CATEGORY_VIRUS:
 *   VIRUS_FOUND     per infected part, the configured action,
 *                   reason "<virus name> in <part name>";
 *   VIRUS_SCANNED   score 0, reason "signatures <version>" (the X-header);
 *   VIRUS_SKIPPED   score 0, the message was sampled out;
 *   VIRUS_ERROR     a part could not be scanned: CONTENT_DEFER, or
 *                   CONTENT_NONE with pass_on_error.
 * The content engine holds its own reference to ve (its free() drops it),
 * so a pipeline keeps its scanner after the caller moved on to another.
 * virus_content_engine_with acts as told, whatever ve's options say, so
 * each pipeline (one config) brings its own action.
 */
struct content_engine *virus_content_engine_with(struct virus_engine *ve, enum content_action action,
						 bool pass_on_error);
/* With ve's own action and pass_on_error. */
struct content_engine *virus_content_engine(struct virus_engine *ve);

/* The sampling decision, shared by every thread scanning for one engine. */
struct virus_sampling {
	_Atomic unsigned percent;           /* 0 or >= 100: always scan */
	_Atomic unsigned hot_seconds;
	_Atomic long long last_detection;   /* seconds; LLONG_MIN: never */
	virus_random_fn random;
	void *random_arg;
};

void virus_sampling_init(struct virus_sampling *s, unsigned percent, unsigned hot_seconds,
			 virus_random_fn random, void *random_arg);
/* now: seconds on a clock that does not jump. */
bool virus_sampling_should_scan(struct virus_sampling *s, time_t now);
void virus_sampling_detected(struct virus_sampling *s, time_t now);
struct virus_sampling *virus_engine_sampling(struct virus_engine *ve);

#endif
