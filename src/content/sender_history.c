/*
 * Sender history (see content/sender_history.h): the key of a message's
 * sender, the "history" engine that dampens a clean sender's score, and
 * the count after the verdict that builds the history.
 */
#include "content/sender_history.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "content/pipeline.h"
#include "content/scoring.h"
#include "core/alloc.h"

#define LOG_MODULE "history"
#include "core/log.h"

#define NETWORK_MAX 64                 /* "2001:db8:1::/48", "192.0.2.0/24" */
#define DKIM_REASON_PREFIX "DKIM pass for "
#define DKIM_DOMAIN_SHOWN 120          /* the "dkim" engine cuts the domain of its reason here */

struct sender_history {
	struct history_store *store;
	pthread_mutex_t lock;          /* guards opts against a reload */
	struct sender_history_options opts;
};

/* The client's network as text: IPv4 /24, IPv6 /48 (an IPv4-mapped address as IPv4). */
static bool client_network(const char *addr, char *out, size_t outlen)
{
	struct in_addr a4;
	struct in6_addr a6;
	const unsigned char *b;
	char text[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, addr, &a4) == 1) {
		b = (const unsigned char *)&a4;
		return (size_t)snprintf(out, outlen, "%u.%u.%u.0/24", b[0], b[1], b[2]) < outlen;
	}
	if (inet_pton(AF_INET6, addr, &a6) != 1)
		return false;
	b = a6.s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&a6))
		return (size_t)snprintf(out, outlen, "%u.%u.%u.0/24", b[12], b[13], b[14]) < outlen;
	memset(a6.s6_addr + 6, 0, sizeof(a6.s6_addr) - 6);
	if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) == NULL)
		return false;
	return (size_t)snprintf(out, outlen, "%s/48", text) < outlen;
}

bool sender_history_key(const char *sender, bool authenticated, const char *client_addr,
			char *out, size_t outlen)
{
	char net[NETWORK_MAX];
	size_t len, max = outlen < SENDER_HISTORY_KEY_MAX ? outlen : SENDER_HISTORY_KEY_MAX;

	if (sender == NULL || *sender == '\0')
		return false;
	if (!authenticated && (client_addr == NULL || !client_network(client_addr, net, sizeof(net))))
		return false;
	len = strlen(sender);
	if (len >= max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)sender[i];

		/* A key is one printable token: an address with blanks or controls is not a sender. */
		if (c <= ' ' || c == 0x7f)
			return false;
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : (char)c;
	}
	out[len] = '\0';
	if (authenticated)
		return true;
	return (size_t)snprintf(out + len, max - len, "[%s]", net) < max - len;
}

static bool spf_passed(const char *received_spf)
{
	static const char pass[] = "Received-SPF: pass";
	size_t n = sizeof(pass) - 1;

	return received_spf != NULL && strncasecmp(received_spf, pass, n) == 0 &&
	       (received_spf[n] == '\0' || strchr(" \t\r\n;(", received_spf[n]) != NULL);
}

/* Whether d (dlen bytes) is domain or a parent of it, on a label boundary. */
static bool domain_within(const char *domain, const char *d, size_t dlen)
{
	size_t len = strlen(domain);

	if (dlen == 0 || dlen > len)
		return false;
	if (strncasecmp(domain + len - dlen, d, dlen) != 0)
		return false;
	return dlen == len || domain[len - dlen - 1] == '.';
}

/*
 * Whether a valid DKIM signature speaks for the sender's domain: the
 * "dkim" engine's DKIM_VALID names its d= in the reason. A domain as long
 * as the reason shows may have been cut short, so it proves nothing.
 */
static bool dkim_signed_for(const struct engine_results *r, const char *sender)
{
	const char *at = strrchr(sender, '@'), *d, *end;

	if (at == NULL || at[1] == '\0')
		return false;
	for (size_t i = 0; i < r->count; i++) {
		const struct engine_result *e = &r->items[i];

		if (strcmp(e->engine, "dkim") != 0 || strcmp(e->symbol, "DKIM_VALID") != 0 ||
		    strncmp(e->reason, DKIM_REASON_PREFIX, strlen(DKIM_REASON_PREFIX)) != 0)
			continue;
		d = e->reason + strlen(DKIM_REASON_PREFIX);
		if ((end = strstr(d, " (s=")) == NULL || (size_t)(end - d) >= DKIM_DOMAIN_SHOWN)
			continue;
		if (domain_within(at + 1, d, (size_t)(end - d)))
			return true;
	}
	return false;
}

/* The history key of the message's sender, from the session's facts and the run's results. */
static bool message_key(const struct content_auth *auth, const struct engine_results *r, char *out, size_t outlen)
{
	const char *sender = auth->mailfrom;
	bool authenticated;

	if (sender == NULL || *sender == '\0')
		return false;
	authenticated = spf_passed(auth->received_spf) || dkim_signed_for(r, sender);
	return sender_history_key(sender, authenticated, auth->client_addr, out, outlen);
}

static void options_get(struct sender_history *h, struct sender_history_options *o)
{
	pthread_mutex_lock(&h->lock);
	*o = h->opts;
	pthread_mutex_unlock(&h->lock);
}

struct sender_history *sender_history_new(struct history_store *store, const struct sender_history_options *o)
{
	struct sender_history *h = xcalloc(1, sizeof(*h));

	h->store = store;
	h->opts = *o;
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

void sender_history_free(struct sender_history *h)
{
	if (h == NULL)
		return;
	history_store_close(h->store);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void sender_history_set_options(struct sender_history *h, const struct sender_history_options *o)
{
	pthread_mutex_lock(&h->lock);
	h->opts = *o;
	pthread_mutex_unlock(&h->lock);
}

/*
 * The positive total the other engines gave, or false when the message
 * must keep its score whatever its sender: a virus, or an engine that
 * demanded more than a tag.
 */
static bool dampenable_total(const struct engine_results *r, double *total)
{
	*total = 0;
	for (size_t i = 0; i < r->count; i++) {
		const struct engine_result *e = &r->items[i];

		if (e->category == CATEGORY_VIRUS || (e->action != CONTENT_NONE && e->action != CONTENT_TAG))
			return false;
		if (e->score > 0)
			*total += e->score;
	}
	return true;
}

static bool history_clean(const struct history_counts *c, const struct sender_history_options *o)
{
	return c->ham >= (double)o->min_messages && c->spam * 100.0 <= (double)o->max_spam_percent * (c->ham + c->spam);
}

/* The share of the score a clean history takes off: less with some spam, less while young. */
static double dampen_share(const struct history_counts *c, const struct sender_history_options *o)
{
	double maturity = 1.0;

	if (o->min_messages > 0 && c->ham < 4.0 * o->min_messages)
		maturity = c->ham / (4.0 * o->min_messages);
	return (double)o->dampen_percent / 100.0 * (c->ham / (c->ham + c->spam)) * maturity;
}

static void history_check(void *state, const struct content_message *m, struct engine_results *out)
{
	struct sender_history *h = state;
	struct sender_history_options o;
	struct history_counts c;
	struct engine_result *r;
	char key[SENDER_HISTORY_KEY_MAX];
	double total, share;

	if (m->auth == NULL || !dampenable_total(out, &total) || total <= 0)
		return;
	if (!message_key(m->auth, out, key, sizeof(key)))
		return;
	options_get(h, &o);
	if (h->store->ops->get(h->store->be, key, &c) < 0)
		return;
	history_counts_decay(&c, (int64_t)time(NULL), o.half_life_seconds);
	if (!history_clean(&c, &o) || (share = dampen_share(&c, &o)) <= 0)
		return;
	r = engine_results_add(out, "history", "HISTORY_CLEAN");
	r->category = CATEGORY_SPAM;
	r->score = -total * share;
	snprintf(r->reason, sizeof(r->reason), "sender %.160s clean history: %.1f ham, %.1f spam (decayed)", key,
		 c.ham, c.spam);
}

enum history_class {
	HISTORY_NOTHING,
	HISTORY_HAM,
	HISTORY_SPAM,
};

/*
 * How the verdict counts for the sender: by the SCL the other engines
 * gave, so that dampening never feeds itself. A deferred message is not
 * counted: it comes back and is judged again.
 */
static enum history_class verdict_class(const struct engine_results *r, const struct sender_history_options *o)
{
	static const char *const own[] = { "history", NULL };
	bool spam = false;
	int scl;

	for (size_t i = 0; i < r->count; i++) {
		const struct engine_result *e = &r->items[i];

		if (e->action == CONTENT_DEFER)
			return HISTORY_NOTHING;
		if (e->category == CATEGORY_VIRUS || e->action == CONTENT_REJECT)
			spam = true;
	}
	if (spam)
		return HISTORY_SPAM;
	scl = content_scl(scoring_total_without(r, own));
	if (scl < (int)o->suspected_scl)
		return HISTORY_HAM;
	if (scl >= (int)o->spam_scl)
		return HISTORY_SPAM;
	return HISTORY_NOTHING;
}

void sender_history_after_verdict(struct sender_history *h, const struct content_message *m,
				  const struct engine_results *results, const char *queue_id)
{
	struct sender_history_options o;
	enum history_class cls;
	char key[SENDER_HISTORY_KEY_MAX];

	if (m->auth == NULL || !message_key(m->auth, results, key, sizeof(key)))
		return;
	options_get(h, &o);
	if ((cls = verdict_class(results, &o)) == HISTORY_NOTHING)
		return;
	if (h->store->ops->add(h->store->be, key, cls == HISTORY_HAM ? 1 : 0, cls == HISTORY_SPAM ? 1 : 0,
			       (int64_t)time(NULL), o.half_life_seconds) < 0) {
		log_warn("%s: sender %s: could not count the message", queue_id != NULL ? queue_id : "-", key);
		return;
	}
	log_debug("%s: sender %s counted as %s", queue_id != NULL ? queue_id : "-", key,
		  cls == HISTORY_HAM ? "ham" : "spam");
}

struct content_engine *sender_history_content_engine(struct sender_history *h)
{
	struct content_engine *e = xcalloc(1, sizeof(*e));

	e->name = "history";
	e->state = h;
	e->check = history_check;
	e->free = NULL;
	return e;
}
