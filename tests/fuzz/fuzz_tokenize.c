/*
 * Fuzz the Bayesian tokeniser over a parsed message: headers read raw
 * (X-Mailer, User-Agent, folding), From and To parsing, UTF-8 words, OSB
 * pairs, URL host extraction from HTML links and plain text, and the
 * registrable-domain reduction. Every token must fit TOKENIZE_TOKEN_MAX.
 * The fuzzy checksum's word splitting and shingles read the same text:
 * a message's signature must agree with itself.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/fuzzy.h"
#include "content/mime.h"
#include "content/tokenize.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mime_limits limits;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mime_global_init();
	mime_limits_default(&limits);
	limits.max_depth = 8;
	limits.max_parts = 64;
	limits.max_decoded = 256 * 1024;
	limits.max_header = 16 * 1024;
	return 0;
}

static void check_token(void *arg, const char *token, size_t len)
{
	size_t *total = arg;

	if (len == 0 || len >= TOKENIZE_TOKEN_MAX)
		abort();
	*total += (unsigned char)token[0] + (unsigned char)token[len - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_message *m = mime_parse(data, size, &limits, NULL);
	struct token_set set;
	struct fuzzy_signature sig;
	size_t total = 0, n;
	char host[256];

	n = tokenize_message_each(m, data, size, 2000, check_token, &total);
	if (n > 2000)
		abort();
	tokenize_message(m, data, size, 500, &set);
	if (set.count > 500)
		abort();
	token_set_free(&set);
	if (fuzzy_signature_of(m, 4, &sig) && (sig.nwords < 4 || fuzzy_similarity(&sig, &sig) != 1.0))
		abort();
	mime_message_free(m);
	if (tokenize_raw_header(data, size, "X-Mailer", host, sizeof(host)) >= (long)sizeof(host))
		abort();
	n = size < sizeof(host) - 1 ? size : sizeof(host) - 1;
	memcpy(host, data, n);
	host[n] = '\0';
	if (strlen(tokenize_registrable_domain(host)) > strlen(host))
		abort();
	return 0;
}
