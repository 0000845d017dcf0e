/*
 * `postern dkim`: verify the DKIM signatures of a message file (keys from
 * DNS or from a key file in Mail::DKIM's FAKE_DNS format), optionally
 * evaluate DMARC and print the Authentication-Results field; or sign a
 * message for outbound mail. For operators checking a domain's set-up and
 * for the test-suite driver (--json).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "content/auth_results.h"
#include "content/dkim.h"
#include "content/dmarc.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define CLI_DKIM_MSG_MAX (64u << 20)

struct cli_dkim_verify_opts {
	const char *file, *dns, *keys, *authserv, *spf, *mailfrom;
	unsigned timeout_ms;
	long long now;
	bool json, dmarc, legacy;
};

static void cli_dkim_usage(FILE *out)
{
	fprintf(out,
		"usage: postern dkim verify FILE [--dns SERVERS | --keys FILE] [options]\n"
		"       postern dkim sign --domain D --selector S --key PEM [options] FILE\n"
		"verify options:\n"
		"  --dns SERVERS     \"127.0.0.1:5353\" (default: /etc/resolv.conf)\n"
		"  --keys FILE       key records from a file (\"name  TXT value\" per line)\n"
		"  --timeout MS      per-query timeout (default 2000)\n"
		"  --now UNIXTIME    the clock for x= expiry\n"
		"  --legacy          accept pre-RFC draft signatures (no v=, v=0.5)\n"
		"  --dmarc           evaluate DMARC for the From domain too\n"
		"  --spf RESULT      SPF result for DMARC and the header (pass, fail, ...)\n"
		"  --mailfrom DOMAIN the domain SPF checked\n"
		"  --authserv-id ID  this host's name in Authentication-Results\n"
		"  --json            print one JSON object\n"
		"sign options:\n"
		"  --headers LIST    fields to sign, \"from:to:subject\" (default: a common set)\n"
		"  --oversign LIST   fields signed once more than present (default from:subject)\n"
		"  --time UNIXTIME   t= (default now)\n"
		"  --expire SECS     add x= = t + SECS\n"
		"  --message         print the signed message, not only the field\n");
}

static unsigned char *cli_dkim_read(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;

	if (fp == NULL) {
		fprintf(stderr, "postern dkim: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(CLI_DKIM_MSG_MAX);
	*len = fread(buf, 1, CLI_DKIM_MSG_MAX, fp);
	if (ferror(fp) || *len == CLI_DKIM_MSG_MAX) {
		fprintf(stderr, "postern dkim: %s: unreadable or larger than %u bytes\n", path,
			CLI_DKIM_MSG_MAX);
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	return buf;
}

static json_t *cli_dkim_verdict_json(const struct dkim_verdict *v)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:I, s:I, s:s}",
			 "result", dkim_result_str(v->result), "domain", v->domain,
			 "selector", v->selector, "auid", v->auid, "alg", v->alg,
			 "weak", v->weak, "testing", v->testing, "partial_body", v->partial_body,
			 "signed_body", (json_int_t)v->signed_body, "body_len", (json_int_t)v->body_len,
			 "reason", v->reason);
}

/* The message's DKIM result in one word: the best verdict (pass > fail > errors). */
static const char *cli_dkim_summary(const struct dkim_verdict *v, size_t n)
{
	static const enum dkim_result order[] = {
		DKIM_PASS, DKIM_FAIL, DKIM_TEMPERROR, DKIM_PERMERROR, DKIM_NEUTRAL,
	};

	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (size_t i = 0; i < n; i++)
			if (v[i].result == order[k])
				return dkim_result_str(order[k]);
	return "none";
}

static void cli_dkim_print(const struct cli_dkim_verify_opts *o, const struct dkim_verdict *v, size_t n,
			   const struct dmarc_outcome *dm, const char *header)
{
	json_t *obj, *arr;
	char *text;

	if (!o->json) {
		for (size_t i = 0; i < n; i++)
			printf("dkim=%s d=%s s=%s a=%s%s%s%s\n", dkim_result_str(v[i].result), v[i].domain,
			       v[i].selector, v[i].alg, v[i].reason[0] ? " (" : "", v[i].reason,
			       v[i].reason[0] ? ")" : "");
		if (n == 0)
			printf("dkim=none (no signature)\n");
		if (dm != NULL)
			printf("dmarc=%s policy=%s disposition=%s (%s)\n", dmarc_result_str(dm->result),
			       dmarc_policy_str(dm->policy), dmarc_policy_str(dm->disposition), dm->reason);
		for (const char *p = header; *p != '\0'; p++)
			if (*p != '\r')
				putchar(*p);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, cli_dkim_verdict_json(&v[i]));
	obj = json_pack("{s:s, s:o, s:s}", "result", cli_dkim_summary(v, n), "signatures", arr,
			"authentication_results", header);
	if (obj != NULL && dm != NULL)
		json_object_set_new(obj, "dmarc",
				    json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s}",
					      "result", dmarc_result_str(dm->result),
					      "policy", dmarc_policy_str(dm->policy),
					      "disposition", dmarc_policy_str(dm->disposition),
					      "policy_domain", dm->policy_domain,
					      "spf_aligned", dm->spf_aligned, "dkim_aligned", dm->dkim_aligned,
					      "reason", dm->reason));
	text = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(obj);
	if (text == NULL) {
		fprintf(stderr, "postern dkim: result not representable as JSON\n");
		return;
	}
	printf("%s\n", text);
	free(text);
}

static int cli_dkim_verify_parse(int argc, char **argv, struct cli_dkim_verify_opts *o)
{
	static const struct option longopts[] = {
		{ "dns", required_argument, NULL, 'd' },
		{ "keys", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 't' },
		{ "now", required_argument, NULL, 'n' },
		{ "dmarc", no_argument, NULL, 'D' },
		{ "legacy", no_argument, NULL, 'L' },
		{ "spf", required_argument, NULL, 's' },
		{ "mailfrom", required_argument, NULL, 'm' },
		{ "authserv-id", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_ms = 2000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': o->dns = optarg; break;
		case 'k': o->keys = optarg; break;
		case 'D': o->dmarc = true; break;
		case 'L': o->legacy = true; break;
		case 's': o->spf = optarg; break;
		case 'm': o->mailfrom = optarg; break;
		case 'a': o->authserv = optarg; break;
		case 'j': o->json = true; break;
		case 'h':
			cli_dkim_usage(stdout);
			return 1;
		case 't':
			o->timeout_ms = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || o->timeout_ms < 1 || o->timeout_ms > 60000) {
				fprintf(stderr, "postern dkim: --timeout wants 1..60000 ms\n");
				return 2;
			}
			break;
		case 'n':
			o->now = strtoll(optarg, &end, 10);
			if (*end != '\0' || o->now <= 0) {
				fprintf(stderr, "postern dkim: --now wants a positive UNIX time\n");
				return 2;
			}
			break;
		default:
			cli_dkim_usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc || (o->dns != NULL && o->keys != NULL)) {
		cli_dkim_usage(stderr);
		return 2;
	}
	o->file = argv[optind];
	return 0;
}

static void cli_dkim_dmarc(const struct cli_dkim_verify_opts *o, const unsigned char *msg, size_t len,
			   const struct dkim_verdict *v, size_t n, dkim_txt_fn fn, void *arg,
			   struct dmarc_outcome *dm)
{
	char from[DKIM_DOMAIN_MAX + 1];
	struct dmarc_input in;

	memset(&in, 0, sizeof(in));
	if (dmarc_from_domain(msg, len, from, sizeof(from)) == 0)
		in.from_domain = from;
	in.spf_pass = o->spf != NULL && strcmp(o->spf, "pass") == 0;
	in.spf_domain = o->mailfrom;
	in.dkim = v;
	in.ndkim = n;
	in.pct_roll = (unsigned)(random() % 100);
	dmarc_evaluate(&in, fn, arg, dm);
}

static int cli_dkim_verify(int argc, char **argv)
{
	struct cli_dkim_verify_opts o;
	struct dkim_verdict v[DKIM_VERIFY_MAX];
	struct dkim_dns_sync sync;
	struct dkim_verify_opts vo;
	struct dkim_keyfile *kf = NULL;
	struct dmarc_outcome dm;
	struct auth_results_in ar;
	struct strbuf hdr;
	unsigned char *msg;
	char err[256];
	size_t len, n;
	int rc = cli_dkim_verify_parse(argc, argv, &o);

	if (rc != 0)
		return rc == 1 ? 0 : rc;
	memset(&vo, 0, sizeof(vo));
	if (o.keys != NULL) {
		kf = dkim_keyfile_load(o.keys, err, sizeof(err));
		if (kf == NULL) {
			fprintf(stderr, "postern dkim: %s\n", err);
			return 1;
		}
		vo.lookup = dkim_keyfile_lookup;
		vo.lookup_arg = kf;
	} else {
		sync = (struct dkim_dns_sync){ o.dns, o.timeout_ms, 2 };
		vo.lookup = dkim_dns_sync_lookup;
		vo.lookup_arg = &sync;
	}
	vo.now = (time_t)o.now;
	vo.legacy_drafts = o.legacy;
	msg = cli_dkim_read(o.file, &len);
	if (msg == NULL) {
		dkim_keyfile_free(kf);
		return 1;
	}
	n = dkim_verify(msg, len, &vo, v, DKIM_VERIFY_MAX);
	if (o.dmarc)
		cli_dkim_dmarc(&o, msg, len, v, n, vo.lookup, vo.lookup_arg, &dm);
	memset(&ar, 0, sizeof(ar));
	ar.authserv_id = o.authserv;
	ar.spf_result = o.spf;
	ar.spf_mailfrom = o.mailfrom;
	ar.dkim_checked = true;
	ar.dkim = v;
	ar.ndkim = n;
	ar.dmarc = o.dmarc ? &dm : NULL;
	strbuf_init(&hdr, 64 * 1024);
	if (auth_results_header(&ar, &hdr) < 0)
		strbuf_reset(&hdr);
	cli_dkim_print(&o, v, n, o.dmarc ? &dm : NULL, hdr.data ? hdr.data : "");
	strbuf_free(&hdr);
	free(msg);
	dkim_keyfile_free(kf);
	return 0;
}

static int cli_dkim_sign(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "domain", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 's' },
		{ "key", required_argument, NULL, 'k' },
		{ "headers", required_argument, NULL, 'H' },
		{ "oversign", required_argument, NULL, 'o' },
		{ "time", required_argument, NULL, 't' },
		{ "expire", required_argument, NULL, 'x' },
		{ "message", no_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dkim_sign_opts so;
	const char *keypath = NULL;
	bool whole = false;
	unsigned char *msg;
	struct strbuf out;
	char err[256], *end;
	size_t len;
	int c, rc;

	memset(&so, 0, sizeof(so));
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': so.domain = optarg; break;
		case 's': so.selector = optarg; break;
		case 'k': keypath = optarg; break;
		case 'H': so.headers = optarg; break;
		case 'o': so.oversign = optarg; break;
		case 'm': whole = true; break;
		case 't':
			so.now = (time_t)strtoll(optarg, &end, 10);
			if (*end != '\0' || so.now <= 0) {
				fprintf(stderr, "postern dkim: --time wants a positive UNIX time\n");
				return 2;
			}
			break;
		case 'x':
			so.expire_secs = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || so.expire_secs == 0) {
				fprintf(stderr, "postern dkim: --expire wants seconds\n");
				return 2;
			}
			break;
		case 'h':
			cli_dkim_usage(stdout);
			return 0;
		default:
			cli_dkim_usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc || so.domain == NULL || so.selector == NULL || keypath == NULL) {
		cli_dkim_usage(stderr);
		return 2;
	}
	so.key = dkim_load_private_key(keypath, err, sizeof(err));
	if (so.key == NULL) {
		fprintf(stderr, "postern dkim: %s\n", err);
		return 1;
	}
	msg = cli_dkim_read(argv[optind], &len);
	if (msg == NULL) {
		EVP_PKEY_free(so.key);
		return 1;
	}
	strbuf_init(&out, 64 * 1024);
	rc = dkim_sign(msg, len, &so, &out, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "postern dkim: %s\n", err);
	} else {
		fwrite(out.data, 1, out.len, stdout);
		if (whole)
			fwrite(msg, 1, len, stdout);
	}
	strbuf_free(&out);
	free(msg);
	EVP_PKEY_free(so.key);
	return rc < 0 ? 1 : 0;
}

int cli_dkim(int argc, char **argv)
{
	if (argc < 2) {
		cli_dkim_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "verify") == 0)
		return cli_dkim_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "sign") == 0)
		return cli_dkim_sign(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0) {
		cli_dkim_usage(stdout);
		return 0;
	}
	cli_dkim_usage(stderr);
	return 2;
}
