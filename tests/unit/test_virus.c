#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "content/clamd.h"
#include "content/engine.h"
#include "content/mime.h"
#include "content/virus.h"
#include "unit.h"

#define TESTFILES "/usr/share/clamav-testfiles"
#define HAM_CORPUS "/work/shared/corpus/mail/ham"
#define CLAMD_BIN "/usr/sbin/clamd"

/* EICAR, kept as hex so this source file itself is not flagged by scanners. */
static const char eicar_hex[] =
	"58354f2150254041505b345c505a58353428505e2937434329377d2445494341"
	"522d5354414e444152442d414e544956495255532d544553542d46494c452124"
	"482b482a";

static size_t hex_decode(const char *hex, unsigned char *out, size_t outlen)
{
	size_t n = 0;
	unsigned v;

	for (; hex[0] && hex[1] && n < outlen; hex += 2) {
		if (sscanf(hex, "%2x", &v) != 1)
			break;
		out[n++] = (unsigned char)v;
	}
	return n;
}

static size_t eicar(unsigned char *buf, size_t buflen)
{
	return hex_decode(eicar_hex, buf, buflen);
}

static bool has_db(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/tests/clamav-db/postern-test.ndb", dir);
	return access(path, R_OK) == 0;
}

/* The shipped database, wherever the tests run from (they run in /tmp). */
static bool find_db(char *out, size_t outlen)
{
	static const char self[] = "tests/unit/test_virus.c";
	const char *env = getenv("POSTERN_SRCDIR");
	const char *file = __FILE__;
	size_t flen = strlen(file);
	char dir[PATH_MAX];
	ssize_t n;

	dir[0] = '\0';
	if (env != NULL && has_db(env))
		snprintf(dir, sizeof(dir), "%s", env);
	else if (has_db("."))
		snprintf(dir, sizeof(dir), ".");
	else if (has_db(".."))
		snprintf(dir, sizeof(dir), "..");
	else if (flen > strlen(self) && strcmp(file + flen - strlen(self), self) == 0) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(flen - strlen(self)), file);
		if (!has_db(dir))
			dir[0] = '\0';
	}
	if (dir[0] == '\0') {
		n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
		if (n <= 0)
			return false;
		dir[n] = '\0';
		for (int up = 0; up < 3 && !has_db(dir); up++) {
			char *slash = strrchr(dir, '/');
			if (slash == NULL)
				return false;
			*slash = '\0';
		}
		if (!has_db(dir))
			return false;
	}
	snprintf(out, outlen, "%s/tests/clamav-db", dir);
	return true;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long size;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	buf = malloc((size_t)size + 1);
	if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = (size_t)size;
	return buf;
}

static bool write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	bool ok;

	if (f == NULL)
		return false;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok;
}

static bool copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *buf = read_file(from, &len);
	bool ok;

	if (buf == NULL)
		return false;
	ok = write_file(to, buf, len);
	free(buf);
	return ok;
}

/* A private copy of the database the test may change. */
static void make_db_copy(const char *src, char *dst, size_t dstlen)
{
	static const char *const files[] = { "postern-test.hdb", "postern-test.hsb", "postern-test.ndb" };
	char from[PATH_MAX], to[PATH_MAX];

	snprintf(dst, dstlen, "%s/db", unit_tmpdir());
	CHECK(mkdir(dst, 0700) == 0);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(from, sizeof(from), "%s/%s", src, files[i]);
		snprintf(to, sizeof(to), "%s/%s", dst, files[i]);
		CHECK(copy_file(from, to));
	}
}

static struct virus_engine *engine_for(const char *dir)
{
	struct virus_options o = { .db_dir = dir };
	char err[256] = "";
	struct virus_engine *ve = virus_engine_new(&o, err, sizeof(err));

	if (ve == NULL)
		fprintf(stderr, "  engine: %s\n", err);
	return ve;
}

static double mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(virus_engine_loads_shipped_db)
{
	char db[PATH_MAX], version[VIRUS_VERSION_MAX];
	struct virus_engine *ve;

	CHECK(find_db(db, sizeof(db)));
	ve = engine_for(db);
	CHECK(ve != NULL);
	if (ve == NULL)
		return;
	virus_engine_version(ve, version, sizeof(version));
	CHECK(strncmp(version, "sigs=", 5) == 0);
	CHECK(strstr(version, " loaded=") != NULL);
	CHECK_INT(virus_engine_reloads(ve), 0);
	virus_engine_free(ve);
}

TEST(virus_engine_missing_or_empty_dir_fails)
{
	struct virus_options o = { .db_dir = "/nonexistent/postern-clamav-db" };
	char err[256] = "", empty[PATH_MAX];

	CHECK(virus_engine_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "/nonexistent/postern-clamav-db") != NULL);

	snprintf(empty, sizeof(empty), "%s/empty", unit_tmpdir());
	CHECK(mkdir(empty, 0700) == 0);
	o.db_dir = empty;
	err[0] = '\0';
	CHECK(virus_engine_new(&o, err, sizeof(err)) == NULL);
	CHECK(err[0] != '\0');

	o.db_dir = NULL;
	CHECK(virus_engine_new(&o, err, sizeof(err)) == NULL);
}

TEST(virus_eicar_detected_in_buffer)
{
	char db[PATH_MAX], name[VIRUS_NAME_MAX];
	unsigned char buf[128], wrapped[256];
	struct virus_result r;
	struct virus_engine *ve;
	size_t n, wn;

	CHECK(find_db(db, sizeof(db)));
	ve = engine_for(db);
	if (ve == NULL)
		return;
	n = eicar(buf, sizeof(buf));
	CHECK_INT(n, 68);
	CHECK_INT(virus_scan_buffer(ve, buf, n, name, sizeof(name)), VIRUS_INFECTED);
	CHECK(strncmp(name, "Eicar-Test-Signature", 20) == 0);

	/* inside other text (the body signature, not the file hash) */
	wn = (size_t)snprintf((char *)wrapped, sizeof(wrapped), "hello\r\n%.*s\r\nbye\r\n",
			      (int)n, (const char *)buf);
	CHECK_INT(virus_scan(ve, wrapped, wn, "note.txt", &r), VIRUS_INFECTED);
	CHECK(strstr(r.name, "Eicar-Test-Signature") != NULL);
	CHECK(strncmp(r.version, "sigs=", 5) == 0);

	CHECK_INT(virus_scan_buffer(ve, "hello world\n", 12, name, sizeof(name)), VIRUS_CLEAN);
	CHECK_STR(name, "");
	CHECK_INT(virus_scan_buffer(ve, "", 0, NULL, 0), VIRUS_CLEAN);
	virus_engine_free(ve);
}

/* Every ClamAV test file (archives, packers, documents, mail) through the buffer API. */
TEST(virus_clamav_testfiles_detected)
{
	char db[PATH_MAX], path[PATH_MAX], name[VIRUS_NAME_MAX];
	struct virus_engine *ve;
	struct dirent *de;
	unsigned scanned = 0;
	unsigned char *buf;
	size_t len;
	DIR *d;

	d = opendir(TESTFILES);
	if (d == NULL) {
		fprintf(stderr, "  skipped: %s missing (install clamav-testfiles)\n", TESTFILES);
		return;
	}
	CHECK(find_db(db, sizeof(db)));
	ve = engine_for(db);
	CHECK(ve != NULL);
	while (ve != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", TESTFILES, de->d_name);
		buf = read_file(path, &len);
		CHECK(buf != NULL);
		if (buf == NULL)
			continue;
		if (virus_scan_buffer(ve, buf, len, name, sizeof(name)) != VIRUS_INFECTED)
			unit_fail(__FILE__, __LINE__, "%s not detected (%s)", de->d_name, name);
		else if (strstr(name, "Postern.Test.ClamAV-Test-File") == NULL)
			unit_fail(__FILE__, __LINE__, "%s: unexpected name %s", de->d_name, name);
		free(buf);
		scanned++;
	}
	closedir(d);
	CHECK(scanned >= 40);
	virus_engine_free(ve);
}

TEST(virus_ham_corpus_clean)
{
	char db[PATH_MAX], path[PATH_MAX], name[VIRUS_NAME_MAX];
	struct virus_engine *ve;
	struct dirent *de;
	unsigned seen = 0, scanned = 0;
	unsigned char *buf;
	size_t len;
	DIR *d;

	d = opendir(HAM_CORPUS);
	if (d == NULL) {
		fprintf(stderr, "  skipped: corpus %s missing\n", HAM_CORPUS);
		return;
	}
	CHECK(find_db(db, sizeof(db)));
	ve = engine_for(db);
	CHECK(ve != NULL);
	while (ve != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || seen++ % 25 != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", HAM_CORPUS, de->d_name);
		buf = read_file(path, &len);
		if (buf == NULL)
			continue;
		if (virus_scan_buffer(ve, buf, len, name, sizeof(name)) != VIRUS_CLEAN)
			unit_fail(__FILE__, __LINE__, "%s: %s", de->d_name, name);
		free(buf);
		scanned++;
	}
	closedir(d);
	CHECK(scanned >= 20);
	virus_engine_free(ve);
}

/* Enough extra signatures that compiling them takes a visible moment. */
static void write_filler_db(const char *path, unsigned count)
{
	FILE *f = fopen(path, "w");
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	CHECK(f != NULL);
	if (f == NULL)
		return;
	for (unsigned i = 0; i < count; i++) {
		fprintf(f, "Postern.Test.Filler.%u:0:*:", i);
		for (int b = 0; b < 3; b++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			fprintf(f, "%016llx", (unsigned long long)x);
		}
		fputc('\n', f);
	}
	fclose(f);
}

struct burst {
	struct virus_engine *ve;
	const unsigned char *sample;
	size_t sample_len;
	atomic_bool stop;
	atomic_uint scans;
	atomic_uint failures;
	_Atomic double reload_started;      /* 0: not yet */
	_Atomic double reload_ended;
	atomic_uint scans_during_reload;
	_Atomic double max_latency;
};

static void *burst_thread(void *arg)
{
	struct burst *b = arg;
	struct virus_result r;
	double t0, t1, max;

	while (!atomic_load(&b->stop)) {
		t0 = mono_seconds();
		if (virus_scan(b->ve, b->sample, b->sample_len, NULL, &r) != VIRUS_INFECTED)
			atomic_fetch_add(&b->failures, 1);
		t1 = mono_seconds();
		atomic_fetch_add(&b->scans, 1);
		if (atomic_load(&b->reload_started) > 0 && t0 > atomic_load(&b->reload_started) &&
		    atomic_load(&b->reload_ended) == 0)
			atomic_fetch_add(&b->scans_during_reload, 1);
		max = atomic_load(&b->max_latency);
		while (t1 - t0 > max && !atomic_compare_exchange_weak(&b->max_latency, &max, t1 - t0))
			;
	}
	return NULL;
}

static bool wait_reloads(struct virus_engine *ve, unsigned want, double timeout)
{
	double deadline = mono_seconds() + timeout;
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	while (virus_engine_reloads(ve) < want) {
		if (mono_seconds() > deadline)
			return false;
		nanosleep(&ts, NULL);
	}
	return true;
}

/* A reload under a burst of scans from 4 threads: none fails, none waits for it. */
TEST(virus_reload_during_scan_burst)
{
	static const char marker_sig[] =
		"Postern.Test.Reload-Marker:0:*:504f535445524e2d52454c4f41442d4d41524b4552\n";
	char src[PATH_MAX], db[1024], path[PATH_MAX], before[VIRUS_VERSION_MAX],
		after[VIRUS_VERSION_MAX], name[VIRUS_NAME_MAX];
	unsigned char sample[128];
	struct burst b;
	pthread_t threads[4];
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	double reload_time;

	CHECK(find_db(src, sizeof(src)));
	make_db_copy(src, db, sizeof(db));
	snprintf(path, sizeof(path), "%s/filler.ndb", db);
	write_filler_db(path, 40000);
	memset(&b, 0, sizeof(b));
	b.ve = engine_for(db);
	CHECK(b.ve != NULL);
	if (b.ve == NULL)
		return;
	b.sample_len = eicar(sample, sizeof(sample));
	b.sample = sample;
	virus_engine_version(b.ve, before, sizeof(before));
	CHECK(!virus_engine_check_reload(b.ve));
	CHECK_INT(virus_scan_buffer(b.ve, "POSTERN-RELOAD-MARKER", 21, name, sizeof(name)), VIRUS_CLEAN);

	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, burst_thread, &b);
	nanosleep(&pause, NULL);

	snprintf(path, sizeof(path), "%s/marker.ndb", db);
	CHECK(write_file(path, marker_sig, strlen(marker_sig)));
	atomic_store(&b.reload_started, mono_seconds());
	CHECK(virus_engine_check_reload(b.ve));
	CHECK(!virus_engine_reload(b.ve));              /* one reload at a time */
	CHECK(wait_reloads(b.ve, 1, 120));
	atomic_store(&b.reload_ended, mono_seconds());
	nanosleep(&pause, NULL);
	atomic_store(&b.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);

	reload_time = atomic_load(&b.reload_ended) - atomic_load(&b.reload_started);
	fprintf(stderr, "  reload %.3f s, %u scans (%u during the reload), max scan %.3f s\n",
		reload_time, atomic_load(&b.scans), atomic_load(&b.scans_during_reload),
		atomic_load(&b.max_latency));
	CHECK_INT(atomic_load(&b.failures), 0);
	CHECK(atomic_load(&b.scans_during_reload) > 0);
	/* Scans went on at their own speed: none waited for the whole load. */
	CHECK(atomic_load(&b.max_latency) < reload_time);

	virus_engine_version(b.ve, after, sizeof(after));
	CHECK(strcmp(before, after) != 0);
	CHECK_INT(virus_scan_buffer(b.ve, "POSTERN-RELOAD-MARKER", 21, name, sizeof(name)),
		  VIRUS_INFECTED);
	CHECK(strstr(name, "Postern.Test.Reload-Marker") != NULL);
	CHECK(!virus_engine_check_reload(b.ve));        /* nothing changed since */
	virus_engine_free(b.ve);
}

/* A broken signature file keeps the loaded signatures working. */
TEST(virus_failed_reload_keeps_old_db)
{
	static const char broken[] = "this is not a signature\n";
	char src[PATH_MAX], db[1024], path[PATH_MAX], before[VIRUS_VERSION_MAX],
		after[VIRUS_VERSION_MAX];
	unsigned char sample[128];
	struct virus_engine *ve;
	size_t n;

	CHECK(find_db(src, sizeof(src)));
	make_db_copy(src, db, sizeof(db));
	ve = engine_for(db);
	if (ve == NULL)
		return;
	virus_engine_version(ve, before, sizeof(before));
	snprintf(path, sizeof(path), "%s/broken.ndb", db);
	CHECK(write_file(path, broken, strlen(broken)));
	CHECK(virus_engine_check_reload(ve));
	CHECK(wait_reloads(ve, 1, 60));
	virus_engine_version(ve, after, sizeof(after));
	CHECK_STR(after, before);
	n = eicar(sample, sizeof(sample));
	CHECK_INT(virus_scan_buffer(ve, sample, n, NULL, 0), VIRUS_INFECTED);
	CHECK(!virus_engine_check_reload(ve));          /* no retry until the next change */

	CHECK(unlink(path) == 0);
	CHECK(virus_engine_check_reload(ve));           /* a removed file counts too */
	CHECK(wait_reloads(ve, 2, 60));
	virus_engine_version(ve, after, sizeof(after));
	CHECK(strncmp(after, "sigs=5 ", 7) == 0);
	virus_engine_free(ve);
}

/* Random numbers 0, 1, 2, ... 99, 0, ...: exactly `percent` of each hundred pass. */
static uint32_t counting_random(void *arg)
{
	unsigned *next = arg;

	return (*next)++ % 100;
}

static unsigned count_scans(struct virus_sampling *s, time_t now, unsigned n)
{
	unsigned yes = 0;

	for (unsigned i = 0; i < n; i++)
		yes += virus_sampling_should_scan(s, now);
	return yes;
}

TEST(virus_sampling_with_injected_clock)
{
	struct virus_sampling s;
	unsigned next = 0;

	virus_sampling_init(&s, 10, 300, counting_random, &next);
	CHECK_INT(count_scans(&s, 1000, 100), 10);      /* quiet: 10 % */
	CHECK_INT(count_scans(&s, 1000, 200), 20);

	virus_sampling_detected(&s, 2000);
	CHECK_INT(count_scans(&s, 2000, 100), 100);     /* hot: everything */
	CHECK_INT(count_scans(&s, 2299, 100), 100);
	CHECK_INT(count_scans(&s, 2300, 100), 10);      /* T seconds later: back to 10 % */

	virus_sampling_detected(&s, 1500);              /* a late report of an older detection */
	CHECK_INT(count_scans(&s, 2300, 100), 10);
	virus_sampling_detected(&s, 2400);
	CHECK_INT(count_scans(&s, 2500, 100), 100);
	CHECK_INT(count_scans(&s, 2700, 100), 10);

	virus_sampling_init(&s, 100, 300, counting_random, &next);
	CHECK_INT(count_scans(&s, 1, 50), 50);
	virus_sampling_init(&s, 0, 300, counting_random, &next);
	CHECK_INT(count_scans(&s, 1, 50), 50);
	virus_sampling_init(&s, 50, 300, NULL, NULL);   /* arc4random: about half */
	{
		unsigned yes = count_scans(&s, 1, 10000);
		CHECK(yes > 4000 && yes < 6000);
	}
}

TEST(virus_engine_sampling_from_options)
{
	struct virus_options o = { .sample_percent = 25, .sample_hot_seconds = 60,
				   .random = counting_random };
	char db[PATH_MAX], err[256];
	struct virus_engine *ve;
	unsigned next = 0;

	CHECK(find_db(db, sizeof(db)));
	o.db_dir = db;
	o.random_arg = &next;
	ve = virus_engine_new(&o, err, sizeof(err));
	CHECK(ve != NULL);
	if (ve == NULL)
		return;
	CHECK_INT(count_scans(virus_engine_sampling(ve), 10, 100), 25);
	virus_sampling_detected(virus_engine_sampling(ve), 10);
	CHECK_INT(count_scans(virus_engine_sampling(ve), 69, 100), 100);
	CHECK_INT(count_scans(virus_engine_sampling(ve), 70, 100), 25);
	virus_engine_free(ve);
}

TEST(clamd_address_parsing)
{
	struct clamd_options o = { 0 };
	struct clamd_client *c;
	struct virus_result r;
	char err[256];

	CHECK(clamd_client_new(&o, err, sizeof(err)) == NULL);
	o.address = "localhost";
	CHECK(clamd_client_new(&o, err, sizeof(err)) == NULL);
	o.address = "[::1]3310";
	CHECK(clamd_client_new(&o, err, sizeof(err)) == NULL);
	o.address = "[::1]:3310";
	c = clamd_client_new(&o, err, sizeof(err));
	CHECK(c != NULL);
	clamd_client_free(c);

	o.address = "unix:/nonexistent/clamd.sock";
	o.timeout_ms = 500;
	c = clamd_client_new(&o, err, sizeof(err));
	CHECK(c != NULL);
	if (c == NULL)
		return;
	CHECK_INT(clamd_scan_buffer(c, "x", 1, &r), VIRUS_ERROR);
	CHECK(strstr(r.name, "/nonexistent/clamd.sock") != NULL);
	clamd_client_free(c);
}

/* A private clamd on the shipped database; 0 when it cannot start. */
static pid_t start_clamd(const char *db, const char *dir, char *sock, size_t socklen)
{
	char conf[PATH_MAX], log[PATH_MAX], version[VIRUS_VERSION_MAX];
	struct clamd_options o = { .timeout_ms = 2000 };
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	struct clamd_client *c;
	char err[256];
	pid_t pid;
	int status;
	FILE *f;

	snprintf(sock, socklen, "%s/clamd.sock", dir);
	snprintf(conf, sizeof(conf), "%s/clamd.conf", dir);
	snprintf(log, sizeof(log), "%s/clamd.log", dir);
	f = fopen(conf, "w");
	if (f == NULL)
		return 0;
	fprintf(f, "LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s\n"
		"TemporaryDirectory %s\nMaxThreads 4\n%s",
		sock, db, log, dir, geteuid() == 0 ? "User root\n" : "");
	if (fclose(f) != 0)
		return 0;
	pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		execl(CLAMD_BIN, "clamd", "-c", conf, (char *)NULL);
		_exit(127);
	}
	o.address = sock;
	c = clamd_client_new(&o, err, sizeof(err));
	for (int i = 0; i < 600; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (c != NULL && clamd_version(c, version, sizeof(version)) == 0) {
			clamd_client_free(c);
			return pid;
		}
		nanosleep(&pause, NULL);
	}
	clamd_client_free(c);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	return 0;
}

static void stop_clamd(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
}

TEST(clamd_instream_backend)
{
	char db[PATH_MAX], sock[PATH_MAX], path[PATH_MAX];
	static const char *const files[] = { "clam.exe", "clam.zip", "clam.7z", "clam.pdf",
					     "clam.ole.doc", "clam.mail", "clam-upx.exe",
					     "clam_ISmsi_ext.exe" };
	struct clamd_options o = { .chunk_size = 1000 };
	unsigned char sample[128], *buf;
	struct clamd_client *c;
	struct virus_result r;
	char err[256];
	size_t n;
	pid_t pid;

	if (access(CLAMD_BIN, X_OK) != 0) {
		fprintf(stderr, "  skipped: %s missing (install clamav-daemon)\n", CLAMD_BIN);
		return;
	}
	CHECK(find_db(db, sizeof(db)));
	pid = start_clamd(db, unit_tmpdir(), sock, sizeof(sock));
	if (pid == 0) {
		fprintf(stderr, "  skipped: clamd did not start (see its log in the test dir)\n");
		return;
	}
	o.address = sock;
	c = clamd_client_new(&o, err, sizeof(err));
	CHECK(c != NULL);
	if (c == NULL) {
		stop_clamd(pid);
		return;
	}
	n = eicar(sample, sizeof(sample));
	CHECK_INT(clamd_scan_buffer(c, sample, n, &r), VIRUS_INFECTED);
	CHECK(strstr(r.name, "Eicar-Test-Signature") != NULL);
	CHECK(strncmp(r.version, "ClamAV ", 7) == 0);
	CHECK_INT(clamd_scan_buffer(c, "hello\r\n", 7, &r), VIRUS_CLEAN);
	CHECK_STR(r.name, "");
	CHECK_INT(clamd_scan_buffer(c, "", 0, &r), VIRUS_CLEAN);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", TESTFILES, files[i]);
		buf = read_file(path, &n);
		if (buf == NULL)
			continue;
		if (clamd_scan_buffer(c, buf, n, &r) != VIRUS_INFECTED ||
		    strstr(r.name, "Postern.Test.ClamAV-Test-File") == NULL)
			unit_fail(__FILE__, __LINE__, "%s via clamd: %d %s", files[i], r.status, r.name);
		free(buf);
	}
	clamd_client_free(c);
	stop_clamd(pid);
}

static const struct engine_result *find_result(const struct engine_results *r, const char *symbol)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->items[i].symbol, symbol) == 0)
			return &r->items[i];
	return NULL;
}

/* The pipeline's view: decoded parts when parsed, the raw message when not. */
TEST(virus_content_engine_results)
{
	char db[PATH_MAX], path[PATH_MAX];
	unsigned char sample[128], *mail;
	struct mime_part parts[2];
	struct mime_message mime;
	struct content_message m = { 0 };
	struct engine_results out = { 0 };
	const struct engine_result *res;
	struct content_engine *e;
	struct virus_engine *ve;
	size_t n, mail_len = 0;

	CHECK(find_db(db, sizeof(db)));
	ve = engine_for(db);
	if (ve == NULL)
		return;
	e = virus_content_engine(ve);
	CHECK_STR(e->name, "virus");

	/* parsed: EICAR in the second part, found there */
	n = eicar(sample, sizeof(sample));
	memset(parts, 0, sizeof(parts));
	memset(&mime, 0, sizeof(mime));
	parts[0].parent = -1;
	parts[0].type = "text";
	parts[0].subtype = "plain";
	parts[0].body = (unsigned char *)"Hello, see the attachment.\n";
	parts[0].body_len = strlen((char *)parts[0].body);
	parts[1].parent = -1;
	parts[1].filename = "eicar.com";
	parts[1].body = sample;
	parts[1].body_len = n;
	mime.parts = parts;
	mime.nparts = 2;
	m.raw = (const unsigned char *)"irrelevant";
	m.raw_len = 10;
	m.mime = &mime;
	e->check(e->state, &m, &out);
	res = find_result(&out, "VIRUS_FOUND");
	CHECK(res != NULL);
	if (res != NULL) {
		CHECK_INT(res->category, CATEGORY_VIRUS);
		CHECK_INT(res->action, CONTENT_REJECT);
		CHECK_INT(res->part_index, 1);
		CHECK(strncmp(res->reason, "Eicar-Test-Signature", 20) == 0);
		CHECK(strstr(res->reason, " in part 2 (eicar.com)") != NULL);
	}
	res = find_result(&out, "VIRUS_SCANNED");
	CHECK(res != NULL && strncmp(res->reason, "signatures sigs=", 16) == 0);
	engine_results_free(&out);

	/* clean parts: only the version */
	parts[1].body = (unsigned char *)"just text";
	parts[1].body_len = 9;
	e->check(e->state, &m, &out);
	CHECK_INT(out.count, 1);
	CHECK(find_result(&out, "VIRUS_SCANNED") != NULL);
	engine_results_free(&out);

	/* not parsed: libclamav reads the raw mail itself */
	snprintf(path, sizeof(path), "%s/clam.mail", TESTFILES);
	mail = read_file(path, &mail_len);
	if (mail != NULL) {
		m.mime = NULL;
		m.raw = mail;
		m.raw_len = mail_len;
		e->check(e->state, &m, &out);
		res = find_result(&out, "VIRUS_FOUND");
		CHECK(res != NULL && res->part_index == -1 && strstr(res->reason, " in message"));
		engine_results_free(&out);
		free(mail);
	}
	e->free(e->state);
	free(e);
	virus_engine_free(ve);
}

static uint32_t always_99(void *arg)
{
	return 99;
}

TEST(virus_content_engine_sampling)
{
	struct virus_options o = { .sample_percent = 10, .sample_hot_seconds = 3600,
				   .random = always_99, .action = CONTENT_QUARANTINE };
	struct content_message m = { 0 };
	struct engine_results out = { 0 };
	const struct engine_result *res;
	unsigned char sample[128];
	struct content_engine *e;
	struct virus_engine *ve;
	char db[PATH_MAX], err[256];

	CHECK(find_db(db, sizeof(db)));
	o.db_dir = db;
	ve = virus_engine_new(&o, err, sizeof(err));
	CHECK(ve != NULL);
	if (ve == NULL)
		return;
	e = virus_content_engine(ve);
	m.raw = sample;
	m.raw_len = eicar(sample, sizeof(sample));
	e->check(e->state, &m, &out);
	CHECK_INT(out.count, 1);
	CHECK(find_result(&out, "VIRUS_SKIPPED") != NULL);
	engine_results_free(&out);

	/* after a detection every message is scanned */
	virus_sampling_detected(virus_engine_sampling(ve), mono_seconds());
	e->check(e->state, &m, &out);
	res = find_result(&out, "VIRUS_FOUND");
	CHECK(res != NULL && res->action == CONTENT_QUARANTINE);
	engine_results_free(&out);
	e->free(e->state);
	free(e);

	/* a reload's pipeline: its own action, new sampling on the shared engine */
	e = virus_content_engine_with(ve, CONTENT_TAG, false);
	virus_engine_free(ve);
	virus_engine_set_sampling(ve, 100, 0);
	e->check(e->state, &m, &out);
	res = find_result(&out, "VIRUS_FOUND");
	CHECK(res != NULL && res->action == CONTENT_TAG);
	engine_results_free(&out);
	e->free(e->state);
	free(e);
}
