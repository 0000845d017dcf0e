/*
 * Fuzz URL reading (content/url_host.h): host extraction (schemes,
 * userinfo, ports, percent-escapes, IPv6 brackets), IPv4/IPv6 literal
 * detection in all encodings, and the lookalike test (content/lookalike.h)
 * with its punycode decoder and confusable folding. The host must always
 * be bounded, lower case and free of the characters that end a host.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/lookalike.h"
#include "content/url_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_host(const char *host)
{
	size_t len = strlen(host);

	if (len == 0 || len > URL_HOST_MAX)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((host[i] >= 'A' && host[i] <= 'Z') || strchr("/\\?#@ ", host[i]) != NULL)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char host[URL_HOST_MAX + 1];
	char *url = malloc(size + 1);
	bool userinfo;

	if (url == NULL)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	if (url_host(url, host, sizeof(host), &userinfo)) {
		check_host(host);
		(void)url_host_is_ip(host);
		(void)lookalike_of(host, "paypal.com");
	}
	(void)url_host_is_ip(url);
	(void)lookalike_of(url, "paypal.com");
	free(url);
	return 0;
}
