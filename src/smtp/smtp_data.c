#include "smtp/smtp_data.h"

#include <string.h>

void smtp_data_init(struct smtp_data_decoder *d, bool dot_stuffed,
		    enum bare_newline_policy policy, size_t max_line)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DATA_LINE_START;
	d->dot_stuffed = dot_stuffed;
	d->policy = policy;
	d->max_line = max_line;
}

/*
 * A bare CR or LF ends a line only softly: in normalize mode it becomes CRLF
 * in the output, in reject mode it is kept and the message is refused later.
 * Either way the next line can never start an end marker.
 */
static void data_bare_newline(struct smtp_data_decoder *d, char c, smtp_data_emit emit, void *arg)
{
	d->bare_newline_seen = true;
	if (d->policy == BARE_NEWLINE_NORMALIZE)
		emit(arg, "\r\n", 2);
	else
		emit(arg, &c, 1);
	d->line_len = 0;
	d->state = SMTP_DATA_SOFT_LINE_START;
}

static void data_count(struct smtp_data_decoder *d, size_t n)
{
	d->line_len += n;
	if (d->line_len > d->max_line)
		d->line_too_long = true;
}

/* Emit the longest run of ordinary bytes starting at in; returns its length. */
static size_t data_span(struct smtp_data_decoder *d, const char *in, size_t len,
			smtp_data_emit emit, void *arg)
{
	size_t n = 0;

	while (n < len && in[n] != '\r' && in[n] != '\n')
		n++;
	if (n) {
		emit(arg, in, n);
		data_count(d, n);
	}
	return n;
}

size_t smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
		      smtp_data_emit emit, void *arg)
{
	size_t i = 0;

	while (i < len && d->state != SMTP_DATA_DONE) {
		char c = in[i];

		switch (d->state) {
		case SMTP_DATA_LINE_START:
			if (c == '.' && d->dot_stuffed) {
				d->state = SMTP_DATA_DOT;
				i++;
				break;
			}
			d->state = SMTP_DATA_MID;
			break;
		case SMTP_DATA_SOFT_LINE_START:
			d->state = SMTP_DATA_MID;
			break;
		case SMTP_DATA_DOT:
			if (c == '\r') {
				d->state = SMTP_DATA_DOT_CR;
				i++;
				break;
			}
			/* The leading dot was stuffing: drop it, keep the rest. */
			d->state = SMTP_DATA_MID;
			break;
		case SMTP_DATA_DOT_CR:
			if (c == '\n') {
				d->state = SMTP_DATA_DONE;
				i++;
				break;
			}
			/* ".\r" + something: the dot was stuffing, the CR is bare. */
			data_bare_newline(d, '\r', emit, arg);
			break;
		case SMTP_DATA_MID:
			if (c == '\r') {
				d->state = SMTP_DATA_CR;
				i++;
			} else if (c == '\n') {
				data_bare_newline(d, '\n', emit, arg);
				i++;
			} else {
				i += data_span(d, in + i, len - i, emit, arg);
			}
			break;
		case SMTP_DATA_CR:
			if (c == '\n') {
				emit(arg, "\r\n", 2);
				d->line_len = 0;
				d->state = SMTP_DATA_LINE_START;
				i++;
			} else {
				data_bare_newline(d, '\r', emit, arg);
			}
			break;
		case SMTP_DATA_DONE:
			break;
		}
	}
	return i;
}

void smtp_data_finish(struct smtp_data_decoder *d, smtp_data_emit emit, void *arg)
{
	if (d->state == SMTP_DATA_CR || d->state == SMTP_DATA_DOT_CR)
		data_bare_newline(d, '\r', emit, arg);
	d->state = SMTP_DATA_DONE;
}
