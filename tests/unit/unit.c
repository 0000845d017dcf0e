#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNIT_MAX 1024

static struct {
	struct { const char *name; unit_fn fn; } tests[UNIT_MAX];
	int count;
	int failures;          /* in the child: failures of the running test */
	char tmpdir[256];
} unit;

void unit_register(const char *name, unit_fn fn)
{
	if (unit.count == UNIT_MAX) {
		fprintf(stderr, "unit: too many tests\n");
		exit(2);
	}
	unit.tests[unit.count].name = name;
	unit.tests[unit.count].fn = fn;
	unit.count++;
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	unit.failures++;
}

const char *unit_tmpdir(void)
{
	if (unit.tmpdir[0] == '\0') {
		snprintf(unit.tmpdir, sizeof(unit.tmpdir), "/tmp/postern-unit-XXXXXX");
		if (mkdtemp(unit.tmpdir) == NULL) {
			perror("mkdtemp");
			exit(2);
		}
	}
	return unit.tmpdir;
}

/* Fork so that a crash or abort in one test is reported, not fatal to the run. */
static int unit_run_one(int i)
{
	pid_t pid = fork();
	int status;

	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0) {
		unit.tests[i].fn();
		if (unit.tmpdir[0]) {
			char cmd[300];
			snprintf(cmd, sizeof(cmd), "rm -rf '%s'", unit.tmpdir);
			(void)!system(cmd);
		}
		fflush(NULL);
		/* exit(), not _exit(): LeakSanitizer runs its check at exit. */
		exit(unit.failures ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	if (WIFSIGNALED(status))
		fprintf(stderr, "  killed by signal %d\n", WTERMSIG(status));
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;

	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (int i = 0; i < unit.count; i++)
			printf("%s\n", unit.tests[i].name);
		return 0;
	}
	for (int i = 0; i < unit.count; i++) {
		int wanted = argc == 1;
		for (int a = 1; a < argc && !wanted; a++)
			wanted = strcmp(argv[a], unit.tests[i].name) == 0;
		if (!wanted)
			continue;
		fflush(NULL);
		if (unit_run_one(i) == 0) {
			printf("ok   %s\n", unit.tests[i].name);
			passed++;
		} else {
			printf("FAIL %s\n", unit.tests[i].name);
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
