/*
 * The quarantine store: rows as recorded, list filters and order, the
 * held -> final state transitions, expiry selection on an injected clock,
 * and rows surviving a reopen (a gateway restart).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/quarantine_store.h"
#include "unit.h"

struct fake_clock {
	time_t now;
};

static time_t fake_now(void *arg)
{
	return ((struct fake_clock *)arg)->now;
}

static struct quarantine_store *open_store(struct fake_clock *clock)
{
	char path[4096], err[256] = "";
	struct quarantine_store *qs;

	snprintf(path, sizeof(path), "%s/quarantine.db", unit_tmpdir());
	qs = quarantine_store_open(path, err, sizeof(err));
	if (qs == NULL) {
		unit_fail(__FILE__, __LINE__, "open: %s", err);
		return NULL;
	}
	if (clock != NULL)
		quarantine_store_set_clock(qs, fake_now, clock);
	return qs;
}

static void add(struct quarantine_store *qs, const char *id, time_t arrival, const char *sender,
		const char *rcpts, const char *subject, const char *category)
{
	struct quarantine_entry e = {
		.arrival = arrival,
		.sender = (char *)sender,
		.recipients = (char *)rcpts,
		.subject = (char *)subject,
		.category = (char *)category,
		.reasons = (char *)"rule SUBJECT_PHRASE: matched subject",
		.client_addr = (char *)"192.0.2.7",
		.score = 6.5,
		.scl = 4,
		.size = 1234,
	};

	snprintf(e.id, sizeof(e.id), "%s", id);
	CHECK_INT(quarantine_store_add(qs, &e), 0);
}

/* Three messages from two senders, to two domains, in two categories. */
static void add_three(struct quarantine_store *qs)
{
	add(qs, "00000000000000000001", 1000, "alice@example.org", "bob@example.com", "cheap pills", "spam");
	add(qs, "00000000000000000002", 2000, "Mallory@Evil.test", "bob@example.com\ncarol@example.net",
	    "invoice", "virus");
	add(qs, "00000000000000000003", 3000, "alice@example.org", "dave@example.net", "more pills", "spam");
}

/* The ids of a list, space-separated, in order. */
static const char *list_ids(struct quarantine_store *qs, const struct quarantine_filter *f)
{
	struct quarantine_entry *v;
	static char out[512];
	size_t n;

	out[0] = '\0';
	if (quarantine_store_list(qs, f, &v, &n) < 0)
		return "(error)";
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strcat(out, " ");
		strcat(out, v[i].id + 17);
	}
	quarantine_entries_free(v, n);
	return out;
}

TEST(quarantine_store_add_get)
{
	struct fake_clock clock = { 5000 };
	struct quarantine_store *qs = open_store(&clock);
	struct quarantine_entry e;

	if (qs == NULL)
		return;
	add_three(qs);
	CHECK_INT(quarantine_store_get(qs, "00000000000000000002", &e), 1);
	CHECK_STR(e.id, "00000000000000000002");
	CHECK_INT(e.arrival, 2000);
	CHECK_STR(e.sender, "Mallory@Evil.test");
	CHECK_STR(e.recipients, "bob@example.com\ncarol@example.net");
	CHECK_STR(e.subject, "invoice");
	CHECK_STR(e.category, "virus");
	CHECK_STR(e.reasons, "rule SUBJECT_PHRASE: matched subject");
	CHECK_STR(e.client_addr, "192.0.2.7");
	CHECK(e.score == 6.5);
	CHECK_INT(e.scl, 4);
	CHECK_INT(e.size, 1234);
	CHECK_INT(e.state, QUARANTINE_HELD);
	CHECK_INT(e.changed, 5000);
	quarantine_entry_clear(&e);
	CHECK_INT(quarantine_store_get(qs, "FFFFFFFFFFFFFFFFFFFF", &e), 0);
	quarantine_store_close(qs);
}

TEST(quarantine_store_list_filters)
{
	struct quarantine_store *qs = open_store(NULL);
	struct quarantine_filter f = { .state = -1 };

	if (qs == NULL)
		return;
	add_three(qs);
	CHECK_STR(list_ids(qs, &f), "003 002 001");
	f.oldest_first = true;
	CHECK_STR(list_ids(qs, &f), "001 002 003");
	f.oldest_first = false;
	f.limit = 2;
	CHECK_STR(list_ids(qs, &f), "003 002");
	f.limit = 0;
	f.sender = "ALICE@";
	CHECK_STR(list_ids(qs, &f), "003 001");
	f.sender = "evil.test";
	CHECK_STR(list_ids(qs, &f), "002");
	f.sender = "";
	f.rcpt = "carol@example.net";
	CHECK_STR(list_ids(qs, &f), "002");
	f.rcpt = "example.net";
	CHECK_STR(list_ids(qs, &f), "003 002");
	f.rcpt = NULL;
	f.category = "SPAM";
	CHECK_STR(list_ids(qs, &f), "003 001");
	f.category = "spa";
	CHECK_STR(list_ids(qs, &f), "");
	f.category = NULL;
	f.since = 2000;
	CHECK_STR(list_ids(qs, &f), "003 002");
	f.before = 3000;
	CHECK_STR(list_ids(qs, &f), "002");
	f.since = f.before = 0;
	f.sender = "alice";
	f.rcpt = "dave";
	f.category = "spam";
	CHECK_STR(list_ids(qs, &f), "003");
	quarantine_store_close(qs);
}

TEST(quarantine_store_state_changes)
{
	struct fake_clock clock = { 5000 };
	struct quarantine_store *qs = open_store(&clock);
	struct quarantine_filter held = { .state = QUARANTINE_HELD };
	struct quarantine_filter released = { .state = QUARANTINE_RELEASED };
	struct quarantine_entry e;
	size_t counts[4];

	if (qs == NULL)
		return;
	add_three(qs);
	clock.now = 6000;
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000002", QUARANTINE_RELEASED), 1);
	/* once released, neither a second release nor a delete applies */
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000002", QUARANTINE_RELEASED), 0);
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000002", QUARANTINE_DELETED), 0);
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000001", QUARANTINE_DELETED), 1);
	CHECK_INT(quarantine_store_finish(qs, "FFFFFFFFFFFFFFFFFFFF", QUARANTINE_DELETED), 0);
	CHECK_STR(list_ids(qs, &held), "003");
	CHECK_STR(list_ids(qs, &released), "002");
	CHECK_INT(quarantine_store_get(qs, "00000000000000000002", &e), 1);
	CHECK_INT(e.state, QUARANTINE_RELEASED);
	CHECK_INT(e.changed, 6000);
	quarantine_entry_clear(&e);
	CHECK_INT(quarantine_store_count(qs, counts), 0);
	CHECK_INT(counts[QUARANTINE_HELD], 1);
	CHECK_INT(counts[QUARANTINE_RELEASED], 1);
	CHECK_INT(counts[QUARANTINE_DELETED], 1);
	CHECK_INT(counts[QUARANTINE_EXPIRED], 0);
	quarantine_store_close(qs);
}

TEST(quarantine_store_expiry_clock)
{
	struct fake_clock clock = { 2500 };
	struct quarantine_store *qs = open_store(&clock);
	struct quarantine_entry *v;
	size_t n;

	if (qs == NULL)
		return;
	add_three(qs);
	/* expire 1000s at 2500: only the message of 1000 is that old */
	CHECK_INT(quarantine_store_due(qs, 1000, 100, &v, &n), 0);
	CHECK_INT(n, 1);
	CHECK_STR(v[0].id, "00000000000000000001");
	quarantine_entries_free(v, n);
	/* exactly expire old counts as due */
	clock.now = 3000;
	CHECK_INT(quarantine_store_due(qs, 1000, 100, &v, &n), 0);
	CHECK_INT(n, 2);
	CHECK_STR(v[0].id, "00000000000000000001");
	CHECK_STR(v[1].id, "00000000000000000002");
	quarantine_entries_free(v, n);
	/* a batch takes the oldest first; a message no longer held is never due */
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000001", QUARANTINE_EXPIRED), 1);
	clock.now = 100000;
	CHECK_INT(quarantine_store_due(qs, 1000, 1, &v, &n), 0);
	CHECK_INT(n, 1);
	CHECK_STR(v[0].id, "00000000000000000002");
	quarantine_entries_free(v, n);
	CHECK_INT(quarantine_store_due(qs, 1000, 100, &v, &n), 0);
	CHECK_INT(n, 2);
	quarantine_entries_free(v, n);
	quarantine_store_close(qs);
}

/* A restart: the rows and their states are still there. */
TEST(quarantine_store_reopen)
{
	struct quarantine_store *qs = open_store(NULL);
	struct quarantine_filter all = { .state = -1 };
	struct quarantine_entry e;

	if (qs == NULL)
		return;
	add_three(qs);
	CHECK_INT(quarantine_store_finish(qs, "00000000000000000003", QUARANTINE_DELETED), 1);
	quarantine_store_close(qs);
	qs = open_store(NULL);
	if (qs == NULL)
		return;
	CHECK_STR(list_ids(qs, &all), "003 002 001");
	CHECK_INT(quarantine_store_get(qs, "00000000000000000003", &e), 1);
	CHECK_INT(e.state, QUARANTINE_DELETED);
	CHECK_STR(e.subject, "more pills");
	quarantine_entry_clear(&e);
	quarantine_store_close(qs);
}

/* Over-long values are cut to the store's bounds, never refused. */
TEST(quarantine_store_bounds)
{
	struct quarantine_store *qs = open_store(NULL);
	char *subject = malloc(5000);
	struct quarantine_entry e;

	if (qs == NULL) {
		free(subject);
		return;
	}
	memset(subject, 'x', 4999);
	subject[4999] = '\0';
	add(qs, "0000000000000000000A", 1, "", "a@b.example", subject, "rule");
	CHECK_INT(quarantine_store_get(qs, "0000000000000000000A", &e), 1);
	CHECK_INT(strlen(e.subject), QUARANTINE_TEXT_MAX);
	CHECK_STR(e.sender, "");
	quarantine_entry_clear(&e);
	free(subject);
	quarantine_store_close(qs);
}

TEST(quarantine_state_names)
{
	CHECK_STR(quarantine_state_name(QUARANTINE_HELD), "held");
	CHECK_STR(quarantine_state_name(QUARANTINE_EXPIRED), "expired");
	CHECK_INT(quarantine_state_parse("released"), QUARANTINE_RELEASED);
	CHECK_INT(quarantine_state_parse("deleted"), QUARANTINE_DELETED);
	CHECK_INT(quarantine_state_parse("all"), -1);
}
