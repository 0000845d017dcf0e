/*
 * `postern serve`: bring the gateway up in a careful order.
 *
 *   config → log → directories (owned by the service user) → TLS (may
 *   generate a certificate) → bind listeners and the admin socket (root) →
 *   drop privileges → spool, workers, DNS, delivery, queue recovery →
 *   accept connections.
 *
 * Nothing is accepted before the spool and the queue can take the mail,
 * and nothing that parses network input ever runs as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin/admin.h"
#include "cli/cli.h"
#include "content/content_stage.h"
#include "content/mime.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/context.h"
#include "core/workpool.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "queue/delivery.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtp/smtp_server.h"
#include "smtp/tls.h"

#define LOG_MODULE "serve"
#include "core/log.h"

struct serve_identity {
	uid_t uid;
	gid_t gid;
	bool drop;
};

static void serve_configure_log(const struct config *cfg)
{
	struct log_options lo = {
		.level = cfg->log_level,
		.file = cfg->log_file,
		.to_stderr = cfg->log_stderr,
		.to_syslog = cfg->log_syslog,
	};

	if (log_configure(&lo) < 0)
		log_error("cannot open log file %s: %s", cfg->log_file, strerror(errno));
}

/* mkdir -p with a mode; existing directories are fine. */
static int serve_mkdirs(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The service user's directories must be its own, recursively (spool, state, TLS). */
static int serve_chown_tree(const char *path, const struct serve_identity *id)
{
	char cmd[4200];

	if (!id->drop)
		return 0;
	if (chown(path, id->uid, id->gid) < 0)
		return -1;
	/* Only our own directories, created by us: a plain recursive chown is enough. */
	snprintf(cmd, sizeof(cmd), "chown -R %u:%u '%s'", (unsigned)id->uid, (unsigned)id->gid, path);
	return system(cmd) == 0 ? 0 : -1;
}

static int serve_resolve_identity(const struct config *cfg, struct serve_identity *id)
{
	struct passwd *pw;

	id->drop = getuid() == 0 && cfg->user != NULL && strcmp(cfg->user, "root") != 0;
	if (!id->drop)
		return 0;
	pw = getpwnam(cfg->user);
	if (pw == NULL) {
		log_error("user %s does not exist (scripts/install-deps.sh creates it)", cfg->user);
		return -1;
	}
	id->uid = pw->pw_uid;
	id->gid = pw->pw_gid;
	if (cfg->group != NULL) {
		struct group *gr = getgrnam(cfg->group);
		if (gr == NULL) {
			log_error("group %s does not exist", cfg->group);
			return -1;
		}
		id->gid = gr->gr_gid;
	}
	return 0;
}

static int serve_drop_privileges(const struct serve_identity *id)
{
	if (!id->drop)
		return 0;
	if (setgroups(0, NULL) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
	    setresuid(id->uid, id->uid, id->uid) < 0) {
		log_error("cannot drop privileges: %s", strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_error("privileges could be regained after dropping them");
		return -1;
	}
	/* Core dumps after setuid would hold mail and keys: keep them off. */
	prctl(PR_SET_DUMPABLE, 0);
	log_info("running as uid=%u gid=%u", (unsigned)id->uid, (unsigned)id->gid);
	return 0;
}

/* 10,000 sessions need 10,000 descriptors: take what the hard limit allows. */
static void serve_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int postern_reload(struct postern *pt, char *err, size_t errlen)
{
	struct config_error cerr;
	struct config *cfg = config_load(pt->config_path, &cerr);
	struct tls_context *tls;
	struct policy *policy;
	struct content_stage *content;

	if (cfg == NULL) {
		config_error_format(&cerr, err, errlen);
		log_error("reload refused, keeping the running configuration: %s", err);
		return -1;
	}
	tls = tls_context_new(cfg, err, errlen);
	if (tls == NULL) {
		log_error("reload refused, keeping the running configuration: %s", err);
		config_unref(cfg);
		return -1;
	}
	policy = policy_new(pt, cfg, err, errlen);
	if (policy == NULL) {
		log_error("reload refused, keeping the running configuration: %s", err);
		tls_context_free(tls);
		config_unref(cfg);
		return -1;
	}
	err[0] = '\0';
	content = content_stage_new(pt, cfg, err, errlen);
	if (content == NULL && err[0] != '\0') {
		log_error("reload refused, keeping the running configuration: %s", err);
		policy_unref(policy);
		tls_context_free(tls);
		config_unref(cfg);
		return -1;
	}
	content_stage_unref(pt->content);
	pt->content = content;
	policy_unref(pt->policy);
	pt->policy = policy;
	if (cfg->nlistens != pt->cfg->nlistens)
		log_warn("reload: listener changes take effect at the next restart");
	tls_context_free(pt->tls);
	pt->tls = tls;
	config_unref(pt->cfg);
	pt->cfg = cfg;
	content_stage_watch_signatures(pt);
	content_spam_watch(pt);
	serve_configure_log(cfg);
	delivery_smtp_close_idle(pt->delivery);
	pt->stats.reloads++;
	log_info("reloaded configuration from %s", pt->config_path);
	return 0;
}

static void serve_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct postern *pt = arg;
	char err[1024];

	switch (sig) {
	case SIGHUP:
		postern_reload(pt, err, sizeof(err));
		break;
	case SIGUSR1:
		log_reopen();
		break;
	default:
		log_info("signal %d: shutting down", (int)sig);
		event_base_loopbreak(pt->base);
	}
}

static void serve_usage(void)
{
	fprintf(stderr, "usage: postern serve [-c FILE] [-f]\n"
			"  -c FILE  configuration file (default %s)\n"
			"  -f       stay in the foreground (the default; for service managers)\n",
		POSTERN_DEFAULT_CONFIG);
}

static int serve_prepare_dirs(const struct config *cfg, const struct serve_identity *id)
{
	const char *dirs[] = { cfg->spool_dir, cfg->data_dir };

	for (size_t i = 0; i < 2; i++) {
		if (serve_mkdirs(dirs[i], 0750) < 0 || serve_chown_tree(dirs[i], id) < 0) {
			log_error("cannot prepare directory %s: %s", dirs[i], strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void serve_teardown(struct postern *pt, struct event **sigs, size_t nsigs)
{
	for (size_t i = 0; i < nsigs; i++) {
		if (sigs[i])
			event_free(sigs[i]);
	}
	/*
	 * Producers of callbacks go first (sessions, deliveries, workers),
	 * then the spool (finishing its last group commit into the queue),
	 * then the queue itself.
	 */
	admin_server_free(pt->admin);
	smtp_server_free(pt->smtp);
	if (pt->delivery)
		delivery_smtp_free(pt->delivery);
	if (pt->workers)
		workpool_free(pt->workers);
	if (pt->spool)
		spool_close(pt->spool);
	queue_free(pt->queue);
	quarantine_free(pt->quarantine);
	if (pt->policy)
		policy_unref(pt->policy);
	policy_state_free(pt->policy_state);
	content_stage_unref(pt->content);
	content_stage_shutdown(pt);
	mime_global_shutdown();
	if (pt->dns)
		dns_resolver_free(pt->dns);
	tls_context_free(pt->tls);
	config_unref(pt->cfg);
	if (pt->base)
		event_base_free(pt->base);
	free(pt->config_path);
}

/* Everything after the privilege drop; returns the exit status. */
static int serve_run(struct postern *pt)
{
	char err[1024];
	const struct config *cfg = pt->cfg;

	pt->spool = spool_open(cfg->spool_dir, pt->base, cfg->spool_syncfs, err, sizeof(err));
	if (pt->spool == NULL) {
		log_error("spool: %s", err);
		return 1;
	}
	pt->workers = workpool_new(pt->base, 4);
	pt->dns = dns_resolver_new(pt->base, cfg->dns_servers, cfg->dns_timeout_ms, cfg->dns_tries,
				   err, sizeof(err));
	if (pt->dns == NULL) {
		log_error("dns: %s", err);
		return 1;
	}
	pt->delivery = delivery_smtp_new(pt);
	pt->policy_state = policy_state_new(pt);
	pt->policy = policy_new(pt, pt->cfg, err, sizeof(err));
	if (pt->policy == NULL) {
		log_error("policy: %s", err);
		return 1;
	}
	err[0] = '\0';
	pt->content = content_stage_new(pt, pt->cfg, err, sizeof(err));
	if (pt->content == NULL && err[0] != '\0') {
		log_error("content: %s", err);
		return 1;
	}
	content_stage_watch_signatures(pt);
	content_spam_watch(pt);
	pt->quarantine = quarantine_new(pt, err, sizeof(err));
	if (pt->quarantine == NULL) {
		log_error("quarantine: %s", err);
		return 1;
	}
	pt->queue = queue_new(pt);
	if (queue_recover(pt->queue) < 0) {
		log_error("spool recovery failed; refusing to start");
		return 1;
	}
	smtp_server_enable(pt->smtp);
	log_info("ready hostname=%s pid=%d", cfg->hostname, (int)getpid());
	event_base_dispatch(pt->base);
	return 0;
}

int serve_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct event *sigs[4] = { NULL };
	struct postern pt;
	struct serve_identity id;
	struct config_error cerr;
	const char *path = POSTERN_DEFAULT_CONFIG;
	char err[1024];
	int c, status = 1;

	while ((c = getopt_long(argc, argv, "c:fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			break;
		case 'h':
			serve_usage();
			return 0;
		default:
			serve_usage();
			return 2;
		}
	}
	memset(&pt, 0, sizeof(pt));
	/* Absolute, so a reload finds the file whatever the working directory. */
	pt.config_path = realpath(path, NULL);
	if (pt.config_path == NULL)
		pt.config_path = xstrdup(path);
	pt.started = time(NULL);
	pt.cfg = config_load(path, &cerr);
	if (pt.cfg == NULL) {
		config_error_format(&cerr, err, sizeof(err));
		fprintf(stderr, "postern: %s\n", err);
		free(pt.config_path);
		return 1;
	}
	serve_configure_log(pt.cfg);
	mime_global_init();
	signal(SIGPIPE, SIG_IGN);
	serve_raise_nofile();
	evthread_use_pthreads();
	pt.base = event_base_new();
	if (pt.base == NULL || serve_resolve_identity(pt.cfg, &id) < 0 || serve_prepare_dirs(pt.cfg, &id) < 0)
		goto out;
	pt.tls = tls_context_new(pt.cfg, err, sizeof(err));
	if (pt.tls == NULL) {
		log_error("tls: %s", err);
		goto out;
	}
	if (serve_chown_tree(pt.cfg->data_dir, &id) < 0)
		log_warn("cannot give %s to the service user: %s", pt.cfg->data_dir, strerror(errno));
	pt.smtp = smtp_server_new(&pt, err, sizeof(err));
	if (pt.smtp == NULL) {
		log_error("%s", err);
		goto out;
	}
	pt.admin = admin_server_new(&pt, pt.cfg->admin_socket, err, sizeof(err));
	if (pt.admin == NULL) {
		log_error("admin socket: %s", err);
		goto out;
	}
	if (id.drop && chown(pt.cfg->admin_socket, id.uid, id.gid) < 0)
		log_warn("cannot chown %s: %s", pt.cfg->admin_socket, strerror(errno));
	if (serve_drop_privileges(&id) < 0)
		goto out;
	for (size_t i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(pt.base, signals[i], serve_signal_cb, &pt);
		event_add(sigs[i], NULL);
	}
	status = serve_run(&pt);
	log_info("stopped");
out:
	serve_teardown(&pt, sigs, 4);
	return status;
}
