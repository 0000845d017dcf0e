/*
 * DKIM test vectors shared by the unit tests: the RFC 8463 Appendix A.3
 * message with its Ed25519 and RSA signatures, and the two keys in the
 * key-file format of dkim_dns.c.
 */
#ifndef POSTERN_TEST_DKIM_VECTORS_H
#define POSTERN_TEST_DKIM_VECTORS_H

/* RFC 8463 Appendix A.3, as signed in dkimpy's rfc6376.signed.msg. */
static const char rfc8463_msg[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; \n"
	" d=football.example.com; i=@football.example.com; \n"
	" q=dns/txt; s=brisbane; t=1518460054; h=from : to : \n"
	" subject : date : message-id : from : subject : date; \n"
	" bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \n"
	" b=9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ7GWrR45nXlTCGb8l0YB\n"
	" o0wBLR++X5LqmsxXaOYLLJe46l10AQ==\n"
	"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; \n"
	" d=football.example.com; i=@football.example.com; \n"
	" q=dns/txt; s=test; t=1527915362; h=from : to : subject : \n"
	" date : message-id : from : subject : date; \n"
	" bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \n"
	" b=icKcLSEZYXJ95flvWE8FT6hl5iqd8MC/LEKYH0QjsqYy6MO/4pgVNCZH\n"
	" l/RAXAuADxE/40Fg7uTlxwwD1hjN2Ple6J//cJfslBdDOq6zTVbne1dqtl\n"
	" NOat7iamJ1AfRqyG+ja7a2AZsrpUuJ7VA6O+0zRYPqpwMEkEFIzI9i/Xk=\n"
	"From: Joe SixPack <joe@football.example.com>\n"
	"To: Suzie Q <suzie@shopping.example.net>\n"
	"Subject: Is dinner ready?\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\n"
	"\n"
	"Hi.\n"
	"\n"
	"We lost the game.  Are you hungry yet?\n"
	"\n"
	"Joe.\n";

static const char rfc8463_keys[] =
	"brisbane._domainkey.football.example.com  v=DKIM1; k=ed25519; "
	"p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
	"test._domainkey.football.example.com  v=DKIM1; k=rsa; "
	"p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"
	"J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLz"
	"BfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n";

#endif
