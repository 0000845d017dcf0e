/*
 * Outbound delivery against real servers: tests/tools/smtp_sink.py
 * (aiosmtpd, keeps what it receives), Postfix's smtp-sink, and
 * tests/tools/dnsd.py for the MX look-ups.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/context.h"
#include "dns/dns.h"
#include "queue/delivery.h"
#include "queue/envelope.h"
#include "smtp/tls.h"
#include "testpeer.h"
#include "unit.h"

#define DT_MAX_RCPTS 8

static const char dt_zone[] =
	"example.test MX 10 mx.example.test\n"
	"mx.example.test A 127.0.0.1\n"
	"implicit.test A 127.0.0.1\n"
	"nullmx.test MX 0 .\n"
	"broken.test SERVFAIL\n";

struct dt {
	struct event_base *base;
	struct config cfg;
	struct postern pt;
	pid_t dnsd;
	pid_t peers[4];
	size_t npeers;
	char sinkdir[PATH_MAX];
	/* the message */
	struct envelope env;
	struct envelope_rcpt rcpts[DT_MAX_RCPTS];
	size_t rcpt_index[DT_MAX_RCPTS];
	struct delivery_request req;
	int body_fd;
	/* what came back */
	int calls;
	struct delivery_rcpt_result results[DT_MAX_RCPTS];
	size_t nresults;
	struct hostport script_host;
};

static void dt_setup(struct dt *t)
{
	char servers[64], err[256] = "";
	unsigned port = 0;

	memset(t, 0, sizeof(*t));
	t->body_fd = -1;
	t->base = event_base_new();
	t->cfg.refcount = 1;
	t->cfg.hostname = "gateway.test";
	t->cfg.mx_port = 25;
	t->cfg.timeout_connect = 5;
	t->cfg.timeout_reply = 5;
	t->cfg.max_per_destination = 2;
	t->cfg.outbound_tls = true;
	t->dnsd = testpeer_dnsd(dt_zone, &port);
	CHECK(t->dnsd > 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
	t->pt.base = t->base;
	t->pt.cfg = &t->cfg;
	t->pt.dns = dns_resolver_new(t->base, servers, 1000, 2, err, sizeof(err));
	CHECK(t->pt.dns != NULL);
	t->pt.delivery = delivery_smtp_new(&t->pt);
	snprintf(t->sinkdir, sizeof(t->sinkdir), "%s/sink", unit_tmpdir());
	mkdir(t->sinkdir, 0700);
	snprintf(t->env.id, sizeof(t->env.id), "0000000000000000000A");
	t->env.arrival = time(NULL);
	t->env.sender = "sender@origin.test";
	t->env.rcpts = t->rcpts;
	t->req.env = &t->env;
	t->req.rcpt_index = t->rcpt_index;
}

static void dt_teardown(struct dt *t)
{
	delivery_smtp_free(t->pt.delivery);
	dns_resolver_free(t->pt.dns);
	event_base_free(t->base);
	for (size_t i = 0; i < t->npeers; i++)
		testpeer_stop(t->peers[i]);
	testpeer_stop(t->dnsd);
	if (t->body_fd >= 0)
		close(t->body_fd);
	CHECK_INT(t->cfg.refcount, 1);   /* every job dropped its reference */
}

static void dt_add_rcpt(struct dt *t, const char *addr)
{
	size_t i = t->env.nrcpts++;

	t->rcpts[i].addr = (char *)addr;
	t->rcpt_index[i] = i;
	t->req.nrcpts = t->env.nrcpts;
}

static void dt_body(struct dt *t, const char *data, size_t len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/body", unit_tmpdir());
	if (t->body_fd >= 0)
		close(t->body_fd);
	t->body_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(t->body_fd >= 0);
	CHECK(write(t->body_fd, data, len) == (ssize_t)len);
	t->req.body_fd = t->body_fd;
	t->req.body_len = len;
	t->env.size = len;
}

/* tests/tools/smtp_sink.py on a free port with extra options (or NULL); returns the port. */
static unsigned dt_sink(struct dt *t, const char *opt)
{
	char tool[PATH_MAX], port_s[16];
	unsigned port = testpeer_free_port();
	char *argv[] = { "/usr/bin/python3", tool, "--port", port_s, "--dir", t->sinkdir,
			 (char *)opt, NULL };

	CHECK(testpeer_tool("smtp_sink.py", tool, sizeof(tool)));
	snprintf(port_s, sizeof(port_s), "%u", port);
	t->peers[t->npeers] = testpeer_start(argv, "ready", 0);
	CHECK(t->peers[t->npeers] > 0);
	t->npeers++;
	return port;
}

/* Postfix's smtp-sink with one option (or NULL), dumping each transaction into <tmp>/dump/. */
static unsigned dt_postfix_sink(struct dt *t, const char *opt)
{
	char listen[64], dump[PATH_MAX];
	unsigned port = testpeer_free_port();
	char *argv[10];
	size_t n = 0;

	snprintf(dump, sizeof(dump), "%s/dump/", unit_tmpdir());
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	argv[n++] = "/usr/sbin/smtp-sink";
	if (geteuid() == 0) {
		/* it refuses to run as root; nobody must reach the dump directory */
		argv[n++] = "-u";
		argv[n++] = "nobody";
		chmod(unit_tmpdir(), 0711);
	}
	argv[n++] = "-d";
	argv[n++] = dump;
	if (opt != NULL)
		argv[n++] = (char *)opt;
	argv[n++] = listen;
	argv[n++] = "10";
	argv[n] = NULL;
	mkdir(dump, 0777);
	chmod(dump, 0777);
	t->peers[t->npeers] = testpeer_start(argv, NULL, port);
	CHECK(t->peers[t->npeers] > 0);
	t->npeers++;
	return port;
}

static void dt_done(void *arg, const struct delivery_rcpt_result *results, size_t n)
{
	struct dt *t = arg;

	t->calls++;
	t->nresults = n;
	for (size_t i = 0; i < n && i < DT_MAX_RCPTS; i++)
		t->results[i] = results[i];
}

/* Deliver and run the loop until the callback came (or 20 s passed). */
static void dt_deliver(struct dt *t)
{
	struct timeval tv = { 20, 0 };
	int calls = t->calls;

	delivery_smtp_start(t->pt.delivery, &t->req, dt_done, t);
	CHECK_INT(t->calls, calls);     /* never from inside start */
	event_base_loopexit(t->base, &tv);
	while (t->calls == calls && event_base_loop(t->base, EVLOOP_ONCE) == 0 &&
	       !event_base_got_exit(t->base))
		;
	CHECK_INT(t->calls, calls + 1);
	CHECK_INT(t->nresults, t->req.nrcpts);
}

/* The whole content of <sinkdir>/name, NUL-terminated; NULL when missing. */
static char *dt_read(const char *dir, const char *name, size_t *len)
{
	char path[PATH_MAX];
	struct stat st;
	char *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		return NULL;
	}
	buf[st.st_size] = '\0';
	if (len != NULL)
		*len = (size_t)st.st_size;
	close(fd);
	return buf;
}

static int dt_sessions(struct dt *t)
{
	char *s = dt_read(t->sinkdir, "sessions", NULL);
	int n = 0;

	for (char *p = s; p != NULL && (p = strstr(p, "session ")) != NULL; p++)
		n++;
	free(s);
	return n;
}

static struct hostport dt_host(const char *host, unsigned port)
{
	struct hostport hp = { (char *)host, (uint16_t)port };

	return hp;
}

static const char dt_message[] =
	"From: <sender@origin.test>\r\n"
	"To: <rcpt@dest.test>\r\n"
	"Subject: test\r\n"
	"\r\n"
	"Hello.\r\n";

TEST(delivery_to_configured_host)
{
	struct dt t;
	struct hostport hosts[1];
	char *env, *msg, remote[64];
	unsigned port;

	dt_setup(&t);
	port = dt_sink(&t, NULL);
	hosts[0] = dt_host("127.0.0.1", port);
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_add_rcpt(&t, "two@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	snprintf(remote, sizeof(remote), "127.0.0.1[127.0.0.1]:%u", port);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(t.results[i].status, DELIVERY_OK);
		CHECK_INT(t.results[i].code, 250);
		CHECK(strncmp(t.results[i].reply, "250 2.0.0 Ok", 12) == 0);
		CHECK_STR(t.results[i].remote, remote);
	}
	env = dt_read(t.sinkdir, "1.env", NULL);
	msg = dt_read(t.sinkdir, "1.msg", NULL);
	CHECK(env != NULL && strstr(env, "from sender@origin.test\n") != NULL);
	CHECK(env != NULL && strstr(env, "rcpt one@dest.test\nrcpt two@dest.test\n") != NULL);
	CHECK(env != NULL && strstr(env, "SIZE=") != NULL);
	CHECK_STR(msg, dt_message);
	free(env);
	free(msg);
	dt_teardown(&t);
}

TEST(delivery_falls_back_to_the_second_host)
{
	struct dt t;
	struct hostport hosts[2];
	unsigned port;
	char remote[64];

	dt_setup(&t);
	port = dt_sink(&t, NULL);
	hosts[0] = dt_host("127.0.0.1", testpeer_free_port());   /* nothing listens */
	hosts[1] = dt_host("localhost", port);
	t.req.hosts = hosts;
	t.req.nhosts = 2;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	snprintf(remote, sizeof(remote), "localhost[127.0.0.1]:%u", port);
	if (strstr(t.results[0].remote, "::1") == NULL)
		CHECK_STR(t.results[0].remote, remote);
	dt_teardown(&t);
}

TEST(delivery_all_hosts_down_is_tempfail)
{
	struct dt t;
	struct hostport hosts[2];

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", testpeer_free_port());
	hosts[1] = dt_host("127.0.0.1", testpeer_free_port());
	t.req.hosts = hosts;
	t.req.nhosts = 2;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_add_rcpt(&t, "two@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(t.results[i].status, DELIVERY_TEMPFAIL);
		CHECK_INT(t.results[i].code, 0);
		CHECK(strstr(t.results[i].reply, "Connection refused") != NULL);
		CHECK(strstr(t.results[i].reply, "4.4.1 connect to 127.0.0.1[127.0.0.1]:") == t.results[i].reply);
	}
	dt_teardown(&t);
}

/* Lines starting with '.' (and a lone '.') must arrive as they were. */
TEST(delivery_dot_stuffing)
{
	struct dt t;
	struct hostport hosts[1];
	struct strbuf_like { char *p; size_t len; } big = { NULL, 0 };
	const char *lines[] = { ".\r\n", "..two\r\n", ".start\r\n", "mid.dle\r\n", "\r\n" };
	char *msg;
	size_t len = 0;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	/* about 2 MiB, so the writer has to wait for the output to drain */
	big.p = malloc(3 * 1024 * 1024);
	big.len = (size_t)sprintf(big.p, "Subject: dots\r\n\r\n");
	for (int i = 0; big.len < 2 * 1024 * 1024; i++) {
		size_t l = strlen(lines[i % 5]);

		memcpy(big.p + big.len, lines[i % 5], l);
		big.len += l;
	}
	memcpy(big.p + big.len, ".last\r\n", 7);
	big.len += 7;
	dt_body(&t, big.p, big.len);
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	msg = dt_read(t.sinkdir, "1.msg", &len);
	CHECK(msg != NULL);
	CHECK_INT(len, big.len);
	CHECK(msg != NULL && memcmp(msg, big.p, big.len) == 0);
	free(msg);
	free(big.p);
	dt_teardown(&t);
}

TEST(delivery_message_without_final_crlf)
{
	struct dt t;
	struct hostport hosts[1];
	char *msg;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, "Subject: x\r\n\r\n.no end", 21);
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	msg = dt_read(t.sinkdir, "1.msg", NULL);
	CHECK_STR(msg, "Subject: x\r\n\r\n.no end\r\n");
	free(msg);
	dt_teardown(&t);
}

static void dt_per_recipient(bool pipelining)
{
	struct dt t;
	struct hostport hosts[1];
	char *env;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, pipelining ? "--pipelining" : NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "ok1@dest.test");
	dt_add_rcpt(&t, "reject1@dest.test");
	dt_add_rcpt(&t, "tempfail1@dest.test");
	dt_add_rcpt(&t, "ok2@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK_INT(t.results[1].status, DELIVERY_PERMFAIL);
	CHECK_INT(t.results[1].code, 550);
	CHECK_STR(t.results[1].reply, "550 5.1.1 <reject1@dest.test>: Recipient address rejected");
	CHECK_INT(t.results[2].status, DELIVERY_TEMPFAIL);
	CHECK_INT(t.results[2].code, 451);
	CHECK_INT(t.results[3].status, DELIVERY_OK);
	CHECK_INT(t.results[3].code, 250);
	env = dt_read(t.sinkdir, "1.env", NULL);
	CHECK(env != NULL && strstr(env, "rcpt ok1@dest.test\nrcpt ok2@dest.test\n") != NULL);
	CHECK(env != NULL && strstr(env, pipelining ? "pipelined 1" : "pipelined 0") != NULL);
	free(env);
	dt_teardown(&t);
}

TEST(delivery_per_recipient_results_pipelined)
{
	dt_per_recipient(true);
}

TEST(delivery_per_recipient_results_one_by_one)
{
	dt_per_recipient(false);
}

TEST(delivery_every_recipient_rejected)
{
	struct dt t;
	struct hostport hosts[1];
	char *env;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, "--pipelining"));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "reject1@dest.test");
	dt_add_rcpt(&t, "reject2@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_INT(t.results[1].status, DELIVERY_PERMFAIL);
	CHECK(strstr(t.results[1].reply, "reject2@dest.test") != NULL);
	env = dt_read(t.sinkdir, "1.env", NULL);
	CHECK(env == NULL);
	free(env);
	dt_teardown(&t);
}

TEST(delivery_helo_when_ehlo_is_refused)
{
	struct dt t;
	struct hostport hosts[1];

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, "--no-ehlo"));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	dt_teardown(&t);
}

TEST(delivery_smtputf8_needs_the_extension)
{
	struct dt t;
	struct hostport hosts[1];
	char *env;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	t.env.smtputf8 = true;
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_INT(t.results[0].code, 553);
	CHECK(strstr(t.results[0].reply, "553 5.6.7 ") == t.results[0].reply);
	dt_teardown(&t);

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, "--smtputf8"));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	t.env.smtputf8 = true;
	t.env.body = BODY_8BITMIME;
	dt_add_rcpt(&t, "d\xc3\xa9j\xc3\xa0@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	env = dt_read(t.sinkdir, "1.env", NULL);
	CHECK(env != NULL && strstr(env, "SMTPUTF8") != NULL);
	CHECK(env != NULL && strstr(env, "BODY=8BITMIME") != NULL);
	free(env);
	dt_teardown(&t);
}

TEST(delivery_via_mx_records)
{
	struct dt t;
	char *env, remote[64];

	dt_setup(&t);
	t.cfg.mx_port = dt_sink(&t, NULL);
	t.req.domain = "example.test";
	dt_add_rcpt(&t, "one@example.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	snprintf(remote, sizeof(remote), "mx.example.test[127.0.0.1]:%u", t.cfg.mx_port);
	CHECK_STR(t.results[0].remote, remote);
	env = dt_read(t.sinkdir, "1.env", NULL);
	CHECK(env != NULL && strstr(env, "rcpt one@example.test") != NULL);
	free(env);
	dt_teardown(&t);
}

TEST(delivery_implicit_mx)
{
	struct dt t;
	char remote[64];

	dt_setup(&t);
	t.cfg.mx_port = dt_sink(&t, NULL);
	t.req.domain = "implicit.test";
	dt_add_rcpt(&t, "one@implicit.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	snprintf(remote, sizeof(remote), "implicit.test[127.0.0.1]:%u", t.cfg.mx_port);
	CHECK_STR(t.results[0].remote, remote);
	dt_teardown(&t);
}

TEST(delivery_dns_failures)
{
	static const struct {
		const char *domain;
		enum delivery_status status;
		int code;
		const char *reply;
	} cases[] = {
		{ "nullmx.test", DELIVERY_PERMFAIL, 556, "556 5.1.10 domain nullmx.test does not accept mail (null MX)" },
		{ "nowhere.test", DELIVERY_PERMFAIL, 550, "550 5.1.2 domain nowhere.test not found" },
		{ "broken.test", DELIVERY_TEMPFAIL, 0, "4.4.3 MX lookup for broken.test failed: temporary failure" },
	};
	struct dt t;

	dt_setup(&t);
	dt_add_rcpt(&t, "one@x.test");
	dt_add_rcpt(&t, "two@x.test");
	dt_body(&t, dt_message, strlen(dt_message));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t.req.domain = cases[i].domain;
		dt_deliver(&t);
		for (size_t r = 0; r < 2; r++) {
			CHECK_INT(t.results[r].status, cases[i].status);
			CHECK_INT(t.results[r].code, cases[i].code);
			CHECK_STR(t.results[r].reply, cases[i].reply);
			CHECK_STR(t.results[r].remote, "");
		}
	}
	dt_teardown(&t);
}

static void dt_done_then_again(void *arg, const struct delivery_rcpt_result *results, size_t n)
{
	struct dt *t = arg;

	dt_done(arg, results, n);
	if (t->calls == 1)
		delivery_smtp_start(t->pt.delivery, &t->req, dt_done, t);
}

/* Two messages, one after the other from the callback: one session. */
TEST(delivery_reuses_the_connection)
{
	struct dt t;
	struct hostport hosts[1];
	struct timeval tv = { 20, 0 };
	char *env;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_sink(&t, "--pipelining"));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	delivery_smtp_start(t.pt.delivery, &t.req, dt_done_then_again, &t);
	event_base_loopexit(t.base, &tv);
	while (t.calls < 2 && event_base_loop(t.base, EVLOOP_ONCE) == 0 && !event_base_got_exit(t.base))
		;
	CHECK_INT(t.calls, 2);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	/* a third one later, after the callback returned */
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	env = dt_read(t.sinkdir, "3.env", NULL);
	CHECK(env != NULL && strstr(env, "session 1\n") != NULL);
	free(env);
	CHECK_INT(dt_sessions(&t), 1);
	delivery_smtp_close_idle(t.pt.delivery);
	event_base_loop(t.base, EVLOOP_NONBLOCK);
	dt_teardown(&t);
}

/* A greeting of 4xx (Postfix's smtp-sink -r CONNECT) sends us to the next host. */
TEST(delivery_greeting_4xx_tries_next_host)
{
	struct dt t;
	struct hostport hosts[2];
	unsigned refusing, good;

	dt_setup(&t);
	refusing = dt_postfix_sink(&t, "-rCONNECT");
	good = dt_sink(&t, NULL);
	hosts[0] = dt_host("127.0.0.1", refusing);
	hosts[1] = dt_host("127.0.0.1", good);
	t.req.hosts = hosts;
	t.req.nhosts = 2;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK(strstr(t.results[0].remote, "]:") != NULL);
	dt_teardown(&t);

	/* the same alone: the 4xx is the reply reported */
	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_postfix_sink(&t, "-rCONNECT"));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(t.results[0].code >= 400 && t.results[0].code < 500);
	dt_teardown(&t);
}

/* Postfix's smtp-sink offers PIPELINING and DSN (not SIZE): check the parameters it got. */
TEST(delivery_dsn_parameters_to_postfix_sink)
{
	struct dt t;
	struct hostport hosts[1];
	char dumpdir[PATH_MAX];
	struct dirent *de;
	char *dump = NULL;
	DIR *dir;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_postfix_sink(&t, NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	t.env.ret = DSN_RET_HDRS;
	t.env.envid = "id+1=x";
	dt_add_rcpt(&t, "one@dest.test");
	dt_add_rcpt(&t, "two@dest.test");
	t.rcpts[0].notify = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE;
	t.rcpts[0].orcpt = "rfc822;One@Dest.test";
	t.rcpts[1].notify = DSN_NOTIFY_NEVER;
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK_INT(t.results[1].status, DELIVERY_OK);
	snprintf(dumpdir, sizeof(dumpdir), "%s/dump", unit_tmpdir());
	/* smtp-sink writes the dump after its reply: give it a moment */
	for (int tries = 0; tries < 50 && dump == NULL; tries++) {
		dir = opendir(dumpdir);
		while (dir != NULL && (de = readdir(dir)) != NULL)
			if (de->d_name[0] != '.')
				dump = dt_read(dumpdir, de->d_name, NULL);
		if (dir != NULL)
			closedir(dir);
		if (dump == NULL || strstr(dump, "Hello.") == NULL) {
			free(dump);
			dump = NULL;
			usleep(100000);
		}
	}
	CHECK(dump != NULL);
	CHECK(dump != NULL && strstr(dump, "X-Mail-Args: <sender@origin.test> RET=HDRS ENVID=id+2B1+3Dx\n") != NULL);
	CHECK(dump != NULL && strstr(dump, "X-Rcpt-Args: <one@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;One@Dest.test\n") != NULL);
	CHECK(dump != NULL && strstr(dump, "X-Rcpt-Args: <two@dest.test> NOTIFY=NEVER\n") != NULL);
	CHECK(dump != NULL && strstr(dump, "\nSubject: test\n\nHello.\n") != NULL);
	free(dump);
	dt_teardown(&t);
}

/* A listener that never answers: the greeting times out. */
static int dt_silent_listener(unsigned *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(listen(fd, 8) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

TEST(delivery_reply_timeout)
{
	struct dt t;
	struct hostport hosts[1];
	unsigned port;
	int fd;

	dt_setup(&t);
	t.cfg.timeout_reply = 1;
	fd = dt_silent_listener(&port);
	hosts[0] = dt_host("127.0.0.1", port);
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "timeout during greeting") != NULL);
	close(fd);
	dt_teardown(&t);
}

/* Freeing with a delivery in flight: no callback, nothing leaked (ASan). */
TEST(delivery_free_with_work_in_flight)
{
	struct dt t;
	struct hostport hosts[1];
	unsigned port;
	int fd;

	dt_setup(&t);
	fd = dt_silent_listener(&port);
	hosts[0] = dt_host("127.0.0.1", port);
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	delivery_smtp_start(t.pt.delivery, &t.req, dt_done, &t);
	t.req.domain = "example.test";
	t.req.hosts = NULL;
	delivery_smtp_start(t.pt.delivery, &t.req, dt_done, &t);
	t.req.nrcpts = 0;
	delivery_smtp_start(t.pt.delivery, &t.req, dt_done, &t);
	for (int i = 0; i < 5; i++)
		event_base_loop(t.base, EVLOOP_NONBLOCK);
	CHECK(t.calls <= 1);    /* only the empty request may be done */
	t.req.nrcpts = 1;
	close(fd);
	dt_teardown(&t);
}

/*
 * A scripted server in the test's own loop, for replies no real server
 * sends: steps[0] is the greeting, then each command line (the message
 * after a 354 or the chunk of a BDAT counts as one) gets the next step verbatim. "" sends nothing,
 * NULL closes, DT_CLOSE_ON_BYTES closes as soon as anything at all arrives
 * (a TLS ClientHello is no line). Sessions after the first follow `later`
 * when it is set.
 */
#define DT_CLOSE_ON_BYTES "<close on bytes>"

struct dt_script {
	struct evconnlistener *listener;
	const char *const *steps;
	const char *const *later;
	const char *const *cur;
	size_t i;
	bool in_data;
	size_t bdat_left;
	int sessions;
	struct bufferevent *bev;
	char last_command[128];
	char bdat_command[64];
};

static void dt_script_step(struct dt_script *s)
{
	const char *step = s->cur[s->i];

	if (step == NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		return;
	}
	s->i++;
	bufferevent_write(s->bev, step, strlen(step));
	s->in_data = strncmp(step, "354", 3) == 0;
}

static void dt_script_read(struct bufferevent *bev, void *arg)
{
	struct dt_script *s = arg;
	char *line;

	if (s->cur[s->i] != NULL && strcmp(s->cur[s->i], DT_CLOSE_ON_BYTES) == 0) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		return;
	}
	while (s->bev != NULL) {
		struct evbuffer *in = bufferevent_get_input(bev);

		if (s->bdat_left > 0) {
			size_t n = evbuffer_get_length(in) < s->bdat_left ? evbuffer_get_length(in) : s->bdat_left;

			evbuffer_drain(in, n);
			s->bdat_left -= n;
			if (s->bdat_left > 0)
				return;
			dt_script_step(s);
			continue;
		}
		line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			return;
		if (strncmp(line, "BDAT ", 5) == 0) {
			snprintf(s->bdat_command, sizeof(s->bdat_command), "%s", line);
			s->bdat_left = strtoul(line + 5, NULL, 10);
		} else if (!s->in_data || strcmp(line, ".") == 0) {
			snprintf(s->last_command, sizeof(s->last_command), "%s", line);
			dt_script_step(s);
		}
		free(line);
	}
}

static void dt_script_event(struct bufferevent *bev, short what, void *arg)
{
	struct dt_script *s = arg;

	bufferevent_free(s->bev);
	s->bev = NULL;
}

static void dt_script_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			     int len, void *arg)
{
	struct dt_script *s = arg;

	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->sessions++;
	s->cur = s->sessions > 1 && s->later != NULL ? s->later : s->steps;
	s->i = 0;
	s->in_data = false;
	s->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, dt_script_read, NULL, dt_script_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	dt_script_step(s);
}

static unsigned dt_script_start(struct dt *t, struct dt_script *s, const char *const *steps)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(s, 0, sizeof(*s));
	s->steps = steps;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->listener = evconnlistener_new_bind(t->base, dt_script_accept, s,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8,
					      (struct sockaddr *)&sin, sizeof(sin));
	CHECK(s->listener != NULL);
	getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static void dt_script_stop(struct dt_script *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	evconnlistener_free(s->listener);
}

/* One message to the scripted server alone. */
static void dt_scripted(struct dt *t, struct dt_script *s, const char *const *steps,
			const char *const *later)
{
	t->script_host = dt_host("127.0.0.1", dt_script_start(t, s, steps));
	s->later = later;
	t->req.hosts = &t->script_host;
	t->req.nhosts = 1;
	t->req.domain = "dest.test";
	dt_body(t, dt_message, strlen(dt_message));
	dt_deliver(t);
}

#define EHLO_PIPELINING "250-script.test\r\n250 PIPELINING\r\n"

TEST(delivery_malformed_replies_are_tempfail)
{
	static const char *const garbage_greeting[] = { "hello there\r\n", NULL };
	static const char *const bad_continuation[] = { "220 hi\r\n", "250-a\r\n251 b\r\n", NULL };
	struct dt_script s;
	struct dt t;
	char long_ehlo[2100];
	const char *const long_line[] = { "220 hi\r\n", long_ehlo, NULL };

	dt_setup(&t);
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, garbage_greeting, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "malformed reply during greeting: hello there") != NULL);
	dt_script_stop(&s);

	dt_scripted(&t, &s, bad_continuation, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "malformed reply during EHLO") != NULL);
	dt_script_stop(&s);

	memset(long_ehlo, 'x', sizeof(long_ehlo) - 1);
	memcpy(long_ehlo, "250 ", 4);
	long_ehlo[sizeof(long_ehlo) - 1] = '\0';
	dt_scripted(&t, &s, long_line, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "reply line too long during EHLO") != NULL);
	dt_script_stop(&s);
	dt_teardown(&t);
}

TEST(delivery_too_many_reply_lines)
{
	struct dt_script s;
	struct dt t;
	static char ehlo[102 * 9 + 16];
	const char *const steps[] = { "220 hi\r\n", ehlo, NULL };

	ehlo[0] = '\0';
	for (int i = 0; i < 101; i++)
		strcat(ehlo, "250-abc\r\n");
	strcat(ehlo, "250 end\r\n");
	dt_setup(&t);
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, steps, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "malformed reply during EHLO") != NULL);
	dt_script_stop(&s);
	dt_teardown(&t);
}

TEST(delivery_mail_replies_apply_to_all)
{
	static const char *const temp[] = { "220 hi\r\n", EHLO_PIPELINING, "452 4.3.1 full\r\n",
					    "503 no\r\n", "503 no\r\n", "503 no\r\n", "250 reset\r\n", "" };
	static const char *const perm[] = { "220 hi\r\n", "250 script.test\r\n",
					    "553 5.7.1 sender refused\r\n", "250 reset\r\n", "" };
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	dt_add_rcpt(&t, "one@dest.test");
	dt_add_rcpt(&t, "two@dest.test");
	dt_scripted(&t, &s, temp, NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(t.results[i].status, DELIVERY_TEMPFAIL);
		CHECK_STR(t.results[i].reply, "452 4.3.1 full");
	}
	CHECK_STR(s.last_command, "RSET");
	dt_script_stop(&s);

	dt_scripted(&t, &s, perm, NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(t.results[i].status, DELIVERY_PERMFAIL);
		CHECK_STR(t.results[i].reply, "553 5.7.1 sender refused");
	}
	dt_script_stop(&s);
	dt_teardown(&t);
}

TEST(delivery_data_and_final_replies)
{
	static const char *const data_refused[] = {
		"220 hi\r\n", EHLO_PIPELINING, "250 ok\r\n", "550 5.1.1 no\r\n", "250 ok\r\n",
		"554 5.5.1 no valid recipients\r\n", "250 reset\r\n", "" };
	static const char *const final_refused[] = {
		"220 hi\r\n", "250 script.test\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
		"552-5.3.4 too big\r\n552 5.3.4 really\r\n", "250 reset\r\n", "" };
	/* RFC 2920: 354 although no recipient was accepted; we send just "." */
	static const char *const lone_354[] = {
		"220 hi\r\n", EHLO_PIPELINING, "250 ok\r\n", "550 5.1.1 no\r\n", "354 go\r\n",
		"250 empty message\r\n", "250 reset\r\n", "" };
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	dt_add_rcpt(&t, "one@dest.test");
	dt_add_rcpt(&t, "two@dest.test");
	dt_scripted(&t, &s, data_refused, NULL);
	CHECK_STR(t.results[0].reply, "550 5.1.1 no");
	CHECK_INT(t.results[1].status, DELIVERY_PERMFAIL);
	CHECK_STR(t.results[1].reply, "554 5.5.1 no valid recipients");
	dt_script_stop(&s);

	t.env.nrcpts = t.req.nrcpts = 1;
	dt_scripted(&t, &s, final_refused, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_INT(t.results[0].code, 552);
	CHECK_STR(t.results[0].reply, "552 5.3.4 too big");
	dt_script_stop(&s);

	dt_scripted(&t, &s, lone_354, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_STR(t.results[0].reply, "550 5.1.1 no");
	CHECK_STR(s.last_command, "RSET");
	dt_script_stop(&s);
	dt_teardown(&t);
}

/* 421 in the middle: the server is going away; the next address gets the message. */
TEST(delivery_421_during_transaction_tries_next_host)
{
	static const char *const steps[] = { "220 hi\r\n", "250 script.test\r\n", "421 4.3.2 bye\r\n", NULL };
	struct hostport hosts[2];
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	hosts[0] = dt_host("127.0.0.1", dt_script_start(&t, &s, steps));
	hosts[1] = dt_host("127.0.0.1", dt_sink(&t, NULL));
	t.req.hosts = hosts;
	t.req.nhosts = 2;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK_INT(s.sessions, 1);
	dt_script_stop(&s);

	/* alone, the 421 is what is reported */
	t.req.nhosts = 1;
	hosts[0] = dt_host("127.0.0.1", dt_script_start(&t, &s, steps));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK_INT(t.results[0].code, 421);
	CHECK_STR(t.results[0].reply, "421 4.3.2 bye");
	dt_script_stop(&s);
	dt_teardown(&t);
}

TEST(delivery_size_limit_of_the_server)
{
	static const char *const steps[] = { "220 hi\r\n", "250-script.test\r\n250 SIZE 10\r\n", "221 bye\r\n", NULL };
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, steps, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_STR(t.results[0].reply, "552 5.3.4 message size exceeds the fixed limit of the remote server");
	dt_script_stop(&s);
	dt_teardown(&t);
}

/* A TLS context of our own: the self-signed pair it generates serves the sink too. */
static struct tls_context *dt_tls(struct dt *t, char *cert, char *key, size_t len)
{
	char err[256] = "";
	struct tls_context *tls;

	t->cfg.data_dir = (char *)unit_tmpdir();
	tls = tls_context_new(&t->cfg, err, sizeof(err));
	CHECK(tls != NULL);
	if (tls == NULL)
		fprintf(stderr, "  %s\n", err);
	snprintf(cert, len, "%s/tls/selfsigned.crt", unit_tmpdir());
	snprintf(key, len, "%s/tls/selfsigned.key", unit_tmpdir());
	t->pt.tls = tls;
	return tls;
}

TEST(delivery_opportunistic_starttls)
{
	char tool[PATH_MAX], port_s[16], cert[PATH_MAX], key[PATH_MAX];
	unsigned port = testpeer_free_port();
	char *argv[] = { "/usr/bin/python3", tool, "--port", port_s, "--dir", NULL, "--tls", cert, key, NULL };
	struct hostport hosts[1];
	struct tls_context *tls;
	struct dt t;
	char *env;

	dt_setup(&t);
	tls = dt_tls(&t, cert, key, sizeof(cert));
	argv[5] = t.sinkdir;
	CHECK(testpeer_tool("smtp_sink.py", tool, sizeof(tool)));
	snprintf(port_s, sizeof(port_s), "%u", port);
	t.peers[t.npeers++] = testpeer_start(argv, "ready", 0);
	hosts[0] = dt_host("127.0.0.1", port);
	t.req.hosts = hosts;
	t.req.nhosts = 1;
	t.req.domain = "dest.test";
	dt_add_rcpt(&t, "one@dest.test");
	dt_body(&t, dt_message, strlen(dt_message));
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	env = dt_read(t.sinkdir, "1.env", NULL);
	CHECK(env != NULL && strstr(env, "tls 1\n") != NULL);
	free(env);

	/* outbound_tls off: the same server, in the clear */
	t.cfg.outbound_tls = false;
	delivery_smtp_close_idle(t.pt.delivery);
	dt_deliver(&t);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	env = dt_read(t.sinkdir, "2.env", NULL);
	CHECK(env != NULL && strstr(env, "tls 0\n") != NULL);
	free(env);
	dt_teardown(&t);
	tls_context_free(tls);
}

/* The handshake dies: the same address again, without STARTTLS. */
TEST(delivery_tls_failure_retries_in_the_clear)
{
	static const char *const first[] = { "220 hi\r\n", "250-s\r\n250 STARTTLS\r\n", "220 go\r\n",
					     DT_CLOSE_ON_BYTES };
	static const char *const later[] = { "220 hi\r\n", "250-s\r\n250 STARTTLS\r\n", "250 ok\r\n",
					     "250 ok\r\n", "354 go\r\n", "250 queued\r\n", "250 reset\r\n", "" };
	char cert[PATH_MAX], key[PATH_MAX];
	struct tls_context *tls;
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	tls = dt_tls(&t, cert, key, sizeof(cert));
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, first, later);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK_STR(t.results[0].reply, "250 queued");
	CHECK_INT(s.sessions, 2);
	dt_script_stop(&s);
	dt_teardown(&t);
	tls_context_free(tls);
}

/* RFC 3207 5: a reply smuggled in behind "220" to STARTTLS ends the session. */
TEST(delivery_starttls_injection_refused)
{
	static const char *const steps[] = { "220 hi\r\n", "250-s\r\n250 STARTTLS\r\n",
					     "220 go\r\n250 injected\r\n", NULL };
	char cert[PATH_MAX], key[PATH_MAX];
	struct tls_context *tls;
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	tls = dt_tls(&t, cert, key, sizeof(cert));
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, steps, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_TEMPFAIL);
	CHECK(strstr(t.results[0].reply, "data after the reply to STARTTLS") != NULL);
	CHECK_INT(s.sessions, 1);
	dt_script_stop(&s);
	dt_teardown(&t);
	tls_context_free(tls);
}

/* BINARYMIME goes raw in one BDAT LAST chunk, and only where it is offered. */
TEST(delivery_binarymime_with_bdat)
{
	static const char *const offered[] = {
		"220 hi\r\n", "250-s\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 BINARYMIME\r\n",
		"250 ok\r\n", "250 ok\r\n", "250 2.0.0 chunk queued\r\n", "250 reset\r\n", "" };
	static const char *const not_offered[] = {
		"220 hi\r\n", "250-s\r\n250 CHUNKING\r\n", "221 bye\r\n", NULL };
	char want[64];
	struct dt_script s;
	struct dt t;

	dt_setup(&t);
	t.env.body = BODY_BINARYMIME;
	dt_add_rcpt(&t, "one@dest.test");
	dt_scripted(&t, &s, offered, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_OK);
	CHECK_STR(t.results[0].reply, "250 2.0.0 chunk queued");
	snprintf(want, sizeof(want), "BDAT %zu LAST", strlen(dt_message));
	CHECK_STR(s.bdat_command, want);
	dt_script_stop(&s);

	dt_scripted(&t, &s, not_offered, NULL);
	CHECK_INT(t.results[0].status, DELIVERY_PERMFAIL);
	CHECK_INT(t.results[0].code, 554);
	dt_script_stop(&s);
	dt_teardown(&t);
}
