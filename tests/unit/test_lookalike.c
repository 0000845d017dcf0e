#include "unit.h"

#include "content/lookalike.h"

TEST(lookalike_positive)
{
	CHECK(lookalike_of("xn--pypal-4ve.com", "paypal.com"));     /* Cyrillic a */
	CHECK(lookalike_of("p\xd0\xb0ypal.com", "paypal.com"));    /* the same in UTF-8 */
	CHECK(lookalike_of("paypa1.com", "paypal.com"));
	CHECK(lookalike_of("www.paypa1.com", "paypal.com"));
	CHECK(lookalike_of("rnicrosoft.com", "microsoft.com"));
	CHECK(lookalike_of("arnazon.com", "amazon.com"));
	CHECK(lookalike_of("g00gle.com", "google.com"));
	CHECK(lookalike_of("paypal.c0m", "paypal.com"));
	CHECK(lookalike_of("paypai.com", "paypal.com"));            /* one look-alike edit */
	CHECK(lookalike_of("paypall.com", "paypal.com"));           /* doubled letter */
	CHECK(lookalike_of("micosoft.net", "microsoft.com"));       /* long brand: any edit */
	CHECK(lookalike_of("microsfot.com", "microsoft.com"));      /* transposition */
	CHECK(lookalike_of("paypal-login.com", "paypal.com"));
	CHECK(lookalike_of("paypal.com.evil.ru", "paypal.com"));
	CHECK(lookalike_of("www.paypal.com-account.example", "paypal.com"));
	CHECK(lookalike_of("secure.apple.verify-id.example", "apple.com"));
	CHECK(lookalike_of("paypa1-online.net", "paypal.com"));      /* look-alike token by itself */
	CHECK(lookalike_of("apple-support.example", "apple.com"));
	CHECK(lookalike_of("xn--80ak6aa92e.com", "apple.com"));      /* all Cyrillic "apple" */
}

TEST(lookalike_negative)
{
	CHECK(!lookalike_of("paypal.com", "paypal.com"));
	CHECK(!lookalike_of("www.paypal.com", "paypal.com"));
	CHECK(!lookalike_of("history.paypal.com", "paypal.com"));
	CHECK(!lookalike_of("paypal.co.uk", "paypal.com"));        /* the brand abroad */
	CHECK(!lookalike_of("amazon.de", "amazon.com"));
	CHECK(!lookalike_of("apple-pie-recipes.example", "apple.com"));
	CHECK(!lookalike_of("apply.com", "apple.com"));            /* a word one edit away */
	CHECK(!lookalike_of("chose.com", "chase.com"));
	CHECK(!lookalike_of("abode.com", "adobe.com"));
	CHECK(!lookalike_of("email.com", "gmail.com"));            /* first letter */
	CHECK(!lookalike_of("finance.com", "binance.com"));
	CHECK(!lookalike_of("example.org", "paypal.com"));
	CHECK(!lookalike_of("paypal.mail.example.net", "paypal.com"));
	CHECK(!lookalike_of("googleusercontent.com", "google.com"));
	CHECK(!lookalike_of("login.microsoftonline.com", "microsoft.com"));
	CHECK(!lookalike_of("xn--bcher-kva.example", "paypal.com"));
	CHECK(!lookalike_of("xn--zz.com", "paypal.com"));           /* broken punycode */
	CHECK(!lookalike_of("", "paypal.com"));
	CHECK(!lookalike_of("ups.example", "ups.com"));
}
