/*
 * `postern spf`: run one SPF check the way the gateway would, and show
 * the result, the term that decided it, the explanation and the
 * Received-SPF header. For operators debugging a domain's policy and for
 * the RFC 7208 test-suite driver (--json, --dns pointing at a test server).
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/strbuf.h"
#include "dns/dns.h"
#include "dns/spf.h"

#define SPF_HEADER_MAX 4096

struct cli_spf_opts {
	const char *ip;
	const char *helo;
	const char *sender;
	const char *dns;
	const char *receiver;
	unsigned timeout_ms;
	bool json;
	bool helo_identity;
};

struct cli_spf_run {
	const struct cli_spf_opts *opts;
	bool done;
};

static void cli_spf_usage(FILE *out)
{
	fprintf(out,
		"usage: postern spf --ip ADDR --helo NAME [--sender ADDR] [options]\n"
		"  --ip ADDR         client IPv4 or IPv6 address\n"
		"  --helo NAME       HELO/EHLO name\n"
		"  --sender ADDR     MAIL FROM address (empty or absent: null sender)\n"
		"  --helo-identity   check the HELO identity instead of MAIL FROM\n"
		"  --receiver NAME   this host's name for %%{r} and the header\n"
		"  --dns SERVERS     \"127.0.0.1:5353,[::1]:53\" (default: /etc/resolv.conf)\n"
		"  --timeout MS      per-query timeout (default 2000)\n"
		"  --json            print one JSON object\n");
}

static void cli_spf_print_text(const struct spf_outcome *o, const char *header)
{
	printf("result: %s\n", spf_result_str(o->result));
	printf("identity: %s\n", o->identity);
	printf("domain: %s\n", o->domain);
	if (o->mechanism[0] != '\0')
		printf("mechanism: %s\n", o->mechanism);
	if (o->explanation[0] != '\0')
		printf("explanation: %s%s\n", o->explanation,
		       o->explanation_default ? " (default)" : "");
	if (o->problem[0] != '\0')
		printf("problem: %s\n", o->problem);
	for (const char *p = header; *p != '\0'; p++)
		if (*p != '\r')
			putchar(*p);
	putchar('\n');
}

static void cli_spf_print_json(const struct spf_outcome *o, const char *header)
{
	json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s}",
				"result", spf_result_str(o->result),
				"identity", o->identity,
				"domain", o->domain,
				"mechanism", o->mechanism,
				"explanation", o->explanation,
				"explanation_default", o->explanation_default,
				"problem", o->problem,
				"received_spf", header);
	char *text;

	if (obj == NULL) {
		fprintf(stderr, "postern spf: result not representable as JSON\n");
		return;
	}
	text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(obj);
	if (text != NULL) {
		printf("%s\n", text);
		free(text);
	}
}

static void cli_spf_done(void *arg, const struct spf_outcome *o)
{
	struct cli_spf_run *run = arg;
	struct strbuf sb;

	strbuf_init(&sb, SPF_HEADER_MAX);
	if (spf_received_header(o, &sb) < 0)
		strbuf_reset(&sb);
	if (run->opts->json)
		cli_spf_print_json(o, sb.data ? sb.data : "");
	else
		cli_spf_print_text(o, sb.data ? sb.data : "");
	strbuf_free(&sb);
	run->done = true;
}

/* 0 to run, 1 after --help, 2 after printing what is wrong with the command line. */
static int cli_spf_parse(int argc, char **argv, struct cli_spf_opts *o)
{
	static const struct option longopts[] = {
		{ "ip", required_argument, NULL, 'i' },
		{ "helo", required_argument, NULL, 'h' },
		{ "sender", required_argument, NULL, 's' },
		{ "dns", required_argument, NULL, 'd' },
		{ "receiver", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "helo-identity", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	long v;
	int c;

	memset(o, 0, sizeof(*o));
	o->sender = "";
	o->timeout_ms = 2000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': o->ip = optarg; break;
		case 'h': o->helo = optarg; break;
		case 's': o->sender = optarg; break;
		case 'd': o->dns = optarg; break;
		case 'r': o->receiver = optarg; break;
		case 'j': o->json = true; break;
		case 'H': o->helo_identity = true; break;
		case 'u':
			cli_spf_usage(stdout);
			return 1;
		case 't':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > 60000) {
				fprintf(stderr, "postern spf: --timeout wants 1..60000 ms\n");
				return 2;
			}
			o->timeout_ms = (unsigned)v;
			break;
		default:
			cli_spf_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || o->ip == NULL || o->helo == NULL) {
		cli_spf_usage(stderr);
		return 2;
	}
	return 0;
}

static int cli_spf_addr(const char *text, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

int cli_spf(int argc, char **argv)
{
	struct cli_spf_opts opts;
	struct cli_spf_run run = { &opts, false };
	struct sockaddr_storage ss;
	struct event_base *base;
	struct dns_resolver *r;
	char err[256];
	int rc;

	rc = cli_spf_parse(argc, argv, &opts);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (cli_spf_addr(opts.ip, &ss) < 0) {
		fprintf(stderr, "postern spf: --ip \"%s\" is not an IP address\n", opts.ip);
		return 2;
	}
	base = event_base_new();
	if (base == NULL) {
		fprintf(stderr, "postern spf: cannot create the event loop\n");
		return 1;
	}
	r = dns_resolver_new(base, opts.dns, opts.timeout_ms, 2, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "postern spf: %s\n", err);
		event_base_free(base);
		return opts.dns != NULL ? 2 : 1;
	}
	if (opts.helo_identity)
		spf_check_helo(base, r, (struct sockaddr *)&ss, opts.helo, opts.receiver,
			       cli_spf_done, &run);
	else
		spf_check(base, r, (struct sockaddr *)&ss, opts.helo, opts.sender, opts.receiver,
			  cli_spf_done, &run);
	while (!run.done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	dns_resolver_free(r);
	event_base_free(base);
	if (!run.done) {
		fprintf(stderr, "postern spf: the event loop ended before the check finished\n");
		return 1;
	}
	return 0;
}
