#include "unit.h"

#include <stdbool.h>
#include <string.h>

#include "content/url_host.h"

static void check_host(const char *url, const char *want, bool want_userinfo)
{
	char host[URL_HOST_MAX + 1];
	bool ui = !want_userinfo;
	bool ok = url_host(url, host, sizeof(host), &ui);

	if (want == NULL) {
		CHECK(!ok);
		return;
	}
	CHECK(ok);
	if (ok)
		CHECK_STR(host, want);
	CHECK_INT(ui, want_userinfo);
}

TEST(url_host_forms)
{
	check_host("http://www.Example.COM/path?q=1#f", "www.example.com", false);
	check_host("https://example.com:8443/", "example.com", false);
	check_host("  HTTPS://example.com.", "example.com", false);
	check_host("www.example.org/login", "www.example.org", false);
	check_host("WWW.example.org", "www.example.org", false);
	check_host("//cdn.example.net/x.js", "cdn.example.net", false);
	check_host("http:\\\\evil.example\\path", "evil.example", false);
	check_host("http:evil.example", "evil.example", false);
	check_host("http://paypal.com@evil.example/", "evil.example", true);
	check_host("http://user:pw@a.example:80@b.example/", "b.example", true);
	check_host("http://%65vil.%45xample/", "evil.example", false);
	check_host("http://evil\xe3\x80\x82" "example/", "evil.example", false);
	check_host("http://[::1]:8080/", "[::1]", false);
	check_host("ftp://files.example.org/pub", "files.example.org", false);
	check_host("mailto:someone@example.com", NULL, false);
	check_host("javascript:alert(1)", NULL, false);
	check_host("cid:part1@example", NULL, false);
	check_host("/relative/path", NULL, false);
	check_host("#top", NULL, false);
	check_host("", NULL, false);
	check_host("http://", NULL, false);
	check_host("http://exa mple.com/", NULL, false);
	check_host("http://%2fevil/", NULL, false);
	check_host("http://[::1/", NULL, false);
}

TEST(url_host_limits)
{
	char url[600], host[URL_HOST_MAX + 1], small[8];
	bool ui;

	memcpy(url, "http://", 7);
	memset(url + 7, 'a', 253);
	url[260] = '\0';
	CHECK(url_host(url, host, sizeof(host), &ui));
	CHECK_INT(strlen(host), 253);
	memset(url + 7, 'a', 254);
	url[261] = '\0';
	CHECK(!url_host(url, host, sizeof(host), &ui));
	CHECK(!url_host("http://example.com/", small, sizeof(small), &ui));
	CHECK(url_host("http://ex.com/", small, sizeof(small), NULL));
	CHECK_STR(small, "ex.com");
}

TEST(url_host_is_ip_forms)
{
	CHECK(url_host_is_ip("192.168.1.1"));
	CHECK(url_host_is_ip("3232235777"));
	CHECK(url_host_is_ip("0x7f.1"));
	CHECK(url_host_is_ip("0300.0250.01.01"));
	CHECK(url_host_is_ip("0xC0A80101"));
	CHECK(url_host_is_ip("1.2.3.4."));
	CHECK(url_host_is_ip("[2001:db8::1]"));
	CHECK(url_host_is_ip("2001:db8::1"));
	CHECK(url_host_is_ip("[fe80::1%25eth0]"));
	CHECK(!url_host_is_ip("example.com"));
	CHECK(!url_host_is_ip("1.2.3.com"));
	CHECK(!url_host_is_ip("256.1.1.1"));
	CHECK(!url_host_is_ip("1.2.3.4.5"));
	CHECK(!url_host_is_ip("4294967296"));
	CHECK(!url_host_is_ip("1..2"));
	CHECK(!url_host_is_ip("08.1.1.1"));
	CHECK(!url_host_is_ip(""));
	CHECK(!url_host_is_ip("[::g]"));
}
