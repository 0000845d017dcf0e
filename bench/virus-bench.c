/*
 * The driver of bench/scan-vs-clamd: loads every file named (directories
 * are walked) into memory, then scans all of them once with the
 * in-process engine and once through clamd's INSTREAM, each with the
 * same number of threads, and prints both rates and the ratio.
 *
 *   virus-bench -d DBDIR -c CLAMD_ADDRESS [-t THREADS] PATH...
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "content/clamd.h"
#include "content/virus.h"
#include "core/alloc.h"

#define BENCH_MAX_FILE (64u << 20)

struct sample {
	unsigned char *data;
	size_t len;
};

struct corpus {
	struct sample *items;
	size_t count;
	size_t cap;
	size_t bytes;
};

enum backend { BACKEND_INPROCESS, BACKEND_CLAMD };

struct run {
	const struct corpus *corpus;
	enum backend backend;
	struct virus_engine *ve;
	struct clamd_client *clamd;
	atomic_size_t next;
	atomic_uint infected;
	atomic_uint errors;
};

static bool corpus_add_file(struct corpus *c, const char *path)
{
	struct sample s;
	struct stat st;
	FILE *f;

	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
	    (unsigned long long)st.st_size > BENCH_MAX_FILE)
		return false;
	f = fopen(path, "rb");
	if (f == NULL)
		return false;
	s.len = (size_t)st.st_size;
	s.data = xmalloc(s.len);
	if (fread(s.data, 1, s.len, f) != s.len) {
		fprintf(stderr, "virus-bench: short read of %s\n", path);
		free(s.data);
		fclose(f);
		return false;
	}
	fclose(f);
	if (c->count == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->items = xreallocarray(c->items, c->cap, sizeof(*c->items));
	}
	c->items[c->count++] = s;
	c->bytes += s.len;
	return true;
}

static void corpus_add_path(struct corpus *c, const char *path, unsigned depth)
{
	char child[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "virus-bench: cannot read %s\n", path);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		corpus_add_file(c, path);
		return;
	}
	if (depth > 8 || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(child, sizeof(child), "%s/%s", path, de->d_name) < sizeof(child))
			corpus_add_path(c, child, depth + 1);
	}
	closedir(d);
}

static void corpus_free(struct corpus *c)
{
	for (size_t i = 0; i < c->count; i++)
		free(c->items[i].data);
	free(c->items);
}

static void *run_thread(void *arg)
{
	struct run *r = arg;
	struct virus_result res;
	const struct sample *s;
	size_t i;

	while ((i = atomic_fetch_add(&r->next, 1)) < r->corpus->count) {
		s = &r->corpus->items[i];
		if (r->backend == BACKEND_INPROCESS)
			virus_scan(r->ve, s->data, s->len, NULL, &res);
		else
			clamd_scan_buffer(r->clamd, s->data, s->len, &res);
		if (res.status == VIRUS_INFECTED)
			atomic_fetch_add(&r->infected, 1);
		else if (res.status == VIRUS_ERROR)
			atomic_fetch_add(&r->errors, 1);
	}
	return NULL;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Messages per second of one backend over the whole corpus. */
static double run_backend(struct run *r, unsigned nthreads, const char *label)
{
	pthread_t *threads = xcalloc(nthreads, sizeof(*threads));
	double start, elapsed, rate;
	unsigned started = 0;

	start = now_seconds();
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, run_thread, r) == 0)
			started++;
	if (started == 0)
		run_thread(r);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	elapsed = now_seconds() - start;
	free(threads);
	rate = (double)r->corpus->count / (elapsed > 0 ? elapsed : 1e-9);
	printf("%s: %zu messages (%.1f MB) in %.2f s = %.1f msg/s, %u infected, %u errors\n",
	       label, r->corpus->count, (double)r->corpus->bytes / 1e6, elapsed, rate,
	       atomic_load(&r->infected), atomic_load(&r->errors));
	fflush(stdout);
	return rate;
}

static void usage(void)
{
	fprintf(stderr, "usage: virus-bench -d DBDIR -c CLAMD_ADDRESS [-t THREADS] PATH...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct virus_options vo = { 0 };
	struct clamd_options co = { 0 };
	struct corpus corpus = { 0 };
	struct run inproc = { 0 }, viaclamd = { 0 };
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	double rate_in, rate_clamd;
	char err[256];
	int opt, rc = 0;

	while ((opt = getopt(argc, argv, "d:c:t:")) != -1) {
		switch (opt) {
		case 'd': vo.db_dir = optarg; break;
		case 'c': co.address = optarg; break;
		case 't': nthreads = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (vo.db_dir == NULL || co.address == NULL || optind == argc || nthreads < 1)
		usage();
	for (int i = optind; i < argc; i++)
		corpus_add_path(&corpus, argv[i], 0);
	if (corpus.count == 0) {
		fprintf(stderr, "virus-bench: nothing to scan\n");
		return 1;
	}
	inproc.ve = virus_engine_new(&vo, err, sizeof(err));
	viaclamd.clamd = clamd_client_new(&co, err, sizeof(err));
	if (inproc.ve == NULL || viaclamd.clamd == NULL) {
		fprintf(stderr, "virus-bench: %s\n", err);
		virus_engine_free(inproc.ve);
		clamd_client_free(viaclamd.clamd);
		corpus_free(&corpus);
		return 1;
	}
	printf("threads: %ld, signatures: %s\n", nthreads, vo.db_dir);
	inproc.corpus = viaclamd.corpus = &corpus;
	inproc.backend = BACKEND_INPROCESS;
	viaclamd.backend = BACKEND_CLAMD;
	rate_in = run_backend(&inproc, (unsigned)nthreads, "in-process");
	rate_clamd = run_backend(&viaclamd, (unsigned)nthreads, "clamd");
	if (atomic_load(&inproc.infected) != atomic_load(&viaclamd.infected) ||
	    atomic_load(&viaclamd.errors) != 0) {
		fprintf(stderr, "virus-bench: the backends disagree\n");
		rc = 1;
	}
	printf("ratio: %.2f\n", rate_in / rate_clamd);
	virus_engine_free(inproc.ve);
	clamd_client_free(viaclamd.clamd);
	corpus_free(&corpus);
	return rc;
}
