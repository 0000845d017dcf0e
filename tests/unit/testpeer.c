#include "testpeer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#define TESTPEER_READY_MS 10000

unsigned testpeer_free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	unsigned port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return 0;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static long testpeer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static bool testpeer_port_open(unsigned port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool open_ = false;

	if (fd < 0)
		return false;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	open_ = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return open_;
}

/* Read the peer's stdout until ready_line shows up as a whole line. */
static bool testpeer_wait_line(int fd, const char *ready_line)
{
	char buf[4096];
	size_t used = 0;
	long deadline = testpeer_now_ms() + TESTPEER_READY_MS;

	while (testpeer_now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		char *line, *nl;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(fd, buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			return false;
		used += (size_t)n;
		buf[used] = '\0';
		for (line = buf; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
			*nl = '\0';
			if (strcmp(line, ready_line) == 0)
				return true;
		}
		used = strlen(line);
		memmove(buf, line, used);
		if (used == sizeof(buf) - 1)
			used = 0;
	}
	return false;
}

static bool testpeer_wait_port(pid_t pid, unsigned port)
{
	long deadline = testpeer_now_ms() + TESTPEER_READY_MS;

	while (testpeer_now_ms() < deadline) {
		if (testpeer_port_open(port))
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(20000);
	}
	return false;
}

pid_t testpeer_start(char *const argv[], const char *ready_line, unsigned port)
{
	int out[2];
	pid_t pid;
	bool ready;

	if (pipe(out) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (ready_line == NULL) {
			int null = open("/dev/null", O_WRONLY);

			if (null >= 0)
				dup2(null, out[1]);
		}
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	ready = ready_line != NULL ? testpeer_wait_line(out[0], ready_line)
				   : testpeer_wait_port(pid, port);
	/* peers say nothing on stdout after "ready" (a write would now fail) */
	close(out[0]);
	if (!ready) {
		testpeer_stop(pid);
		return -1;
	}
	return pid;
}

void testpeer_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

bool testpeer_write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	FILE *f;
	bool ok;

	snprintf(path, pathlen, "%s/%s", unit_tmpdir(), name);
	f = fopen(path, "w");
	if (f == NULL)
		return false;
	ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static bool testpeer_exists(char *path, size_t pathlen, const char *dir, const char *name)
{
	snprintf(path, pathlen, "%s/tests/tools/%s", dir, name);
	return access(path, R_OK) == 0;
}

bool testpeer_tool(const char *name, char *path, size_t pathlen)
{
	static const char self[] = "tests/unit/testpeer.c";
	char exe[PATH_MAX];
	size_t flen = strlen(__FILE__);
	ssize_t n;
	const char *env = getenv("POSTERN_SRCDIR");

	if (env != NULL && testpeer_exists(path, pathlen, env, name))
		return true;
	if (testpeer_exists(path, pathlen, ".", name) || testpeer_exists(path, pathlen, "..", name))
		return true;
	/* the source tree this file was compiled from (relative to the build directory) */
	if (flen > strlen(self) && strcmp(__FILE__ + flen - strlen(self), self) == 0) {
		snprintf(exe, sizeof(exe), "%.*s", (int)(flen - strlen(self)), __FILE__);
		if (testpeer_exists(path, pathlen, exe, name))
			return true;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(exe, '/');

		if (slash == NULL)
			return false;
		*slash = '\0';
		if (testpeer_exists(path, pathlen, exe[0] ? exe : "/", name))
			return true;
	}
	return false;
}

pid_t testpeer_dnsd(const char *zone, unsigned *port)
{
	char zone_path[512], tool[PATH_MAX], port_s[16];
	char *argv[] = { "/usr/bin/python3", tool, "--port", port_s, "--zone", zone_path, NULL };

	if (!testpeer_tool("dnsd.py", tool, sizeof(tool)) ||
	    !testpeer_write_file("zone.txt", zone, zone_path, sizeof(zone_path)))
		return -1;
	*port = testpeer_free_port();
	snprintf(port_s, sizeof(port_s), "%u", *port);
	return testpeer_start(argv, "ready", 0);
}
