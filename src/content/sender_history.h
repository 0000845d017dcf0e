/*
 * Noise reduction: a per-sender history of how its mail was judged, so
 * that a sender with a long clean record who suddenly looks spammy (a
 * newsletter with a bad subject line, a colleague's odd attachment) is
 * not lost to one bad score.
 *
 * The history key is the envelope sender's address, lower case. A sender
 * proves it is itself through SPF pass for its domain or a valid DKIM
 * signature of its domain (or a parent of it); a sender that cannot prove
 * it is keyed together with its client network (IPv4 /24, IPv6 /48), so a
 * forger elsewhere never inherits a good name.
 *
 * Counts decay exponentially with the configured half-life. A sender is
 * clean when it has at least min_messages (decayed) messages and spam made
 * up at most max_spam_percent of them. As the last content engine
 * ("history"), it reads the score the other engines gave and, for a clean
 * sender, adds HISTORY_CLEAN with a negative score taking off
 *
 *   dampen_percent × (ham / (ham + spam)) × min(1, ham / (4 × min_messages))
 *
 * of the positive total — never anything for a virus or when an engine
 * demanded reject, defer, quarantine or drop. After the verdict the
 * message counts as ham (SCL below suspected_scl) or spam (SCL at
 * spam_scl or above); the dampening itself never counts towards ham:
 * the verdict without HISTORY_CLEAN decides.
 */
#ifndef POSTERN_CONTENT_SENDER_HISTORY_H
#define POSTERN_CONTENT_SENDER_HISTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "content/engine.h"
#include "store/history_store.h"

#define SENDER_HISTORY_KEY_MAX 400

struct sender_history_options {
	unsigned min_messages;
	unsigned max_spam_percent;
	unsigned dampen_percent;
	uint32_t half_life_seconds;
	unsigned suspected_scl;          /* below: ham */
	unsigned spam_scl;               /* at or above: spam */
};

/*
 * The key of a message's sender; false for the null sender (bounces have
 * no history). authenticated: SPF pass or a valid DKIM signature of the
 * sender's domain; otherwise client_addr's network joins the key.
 */
bool sender_history_key(const char *sender, bool authenticated, const char *client_addr,
			char *out, size_t outlen);

struct sender_history;

/* A history over store, which it owns from now on (closed by sender_history_free). */
struct sender_history *sender_history_new(struct history_store *store, const struct sender_history_options *o);
void sender_history_free(struct sender_history *h);
void sender_history_set_options(struct sender_history *h, const struct sender_history_options *o);

/*
 * After the verdict (worker thread): count the message for its sender.
 * results are the run's, so HISTORY_CLEAN can be left out of the SCL that
 * decides ham or spam; m->auth gives the sender, SPF and client address.
 */
void sender_history_after_verdict(struct sender_history *h, const struct content_message *m,
				  const struct engine_results *results, const char *queue_id);

/* The "history" engine; h stays the caller's. It must run after every engine that scores. */
struct content_engine *sender_history_content_engine(struct sender_history *h);

#endif
