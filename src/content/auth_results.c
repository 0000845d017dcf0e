/*
 * Authentication-Results (RFC 8601). Values that are not plain tokens or
 * addresses are quoted, and reasons go into comments with the characters
 * that would end a comment removed, so nothing from a message can forge
 * another method's result.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "content/auth_results.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "queue/envelope.h"

static bool ar_token_char(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`{|}~@", c) != NULL);
}

static void ar_value(struct strbuf *sb, const char *v)
{
	bool plain = v[0] != '\0';

	for (const char *p = v; *p != '\0' && plain; p++)
		plain = ar_token_char((unsigned char)*p);
	if (plain) {
		strbuf_appends(sb, v);
		return;
	}
	strbuf_append(sb, "\"", 1);
	for (const char *p = v; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			continue;
		if (*p == '"' || *p == '\\')
			strbuf_append(sb, "\\", 1);
		strbuf_append(sb, p, 1);
	}
	strbuf_append(sb, "\"", 1);
}

static void ar_comment(struct strbuf *sb, const char *text)
{
	strbuf_append(sb, " (", 2);
	for (const char *p = text; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x20 && *p != 0x7f && *p != '(' && *p != ')' && *p != '\\')
			strbuf_append(sb, p, 1);
	strbuf_append(sb, ")", 1);
}

static void ar_prop(struct strbuf *sb, const char *name, const char *v)
{
	strbuf_appendf(sb, " %s=", name);
	ar_value(sb, v);
}

static void ar_dkim(struct strbuf *sb, const struct dkim_verdict *v)
{
	strbuf_appendf(sb, ";\r\n\tdkim=%s", dkim_result_str(v->result));
	if (v->reason[0] != '\0')
		ar_comment(sb, v->reason);
	else if (v->alg[0] != '\0')
		ar_comment(sb, v->alg);
	if (v->domain[0] != '\0')
		ar_prop(sb, "header.d", v->domain);
	if (v->auid[0] != '\0')
		ar_prop(sb, "header.i", v->auid);
	if (v->selector[0] != '\0')
		ar_prop(sb, "header.s", v->selector);
	if (v->b_text[0] != '\0')
		ar_prop(sb, "header.b", v->b_text);
}

static void ar_dmarc(struct strbuf *sb, const struct dmarc_outcome *d)
{
	strbuf_appendf(sb, ";\r\n\tdmarc=%s", dmarc_result_str(d->result));
	if (d->result == DMARC_PASS || d->result == DMARC_FAIL)
		strbuf_appendf(sb, " (p=%s dis=%s)", dmarc_policy_str(d->policy),
			       dmarc_policy_str(d->disposition));
	else if (d->reason[0] != '\0')
		ar_comment(sb, d->reason);
	if (d->from_domain[0] != '\0')
		ar_prop(sb, "header.from", d->from_domain);
}

int auth_results_header(const struct auth_results_in *in, struct strbuf *out)
{
	struct strbuf sb;
	bool any = false;
	int rc;

	strbuf_init(&sb, 16 * 1024);
	strbuf_appends(&sb, "Authentication-Results: ");
	ar_value(&sb, in->authserv_id ? in->authserv_id : "localhost");
	if (in->spf_result != NULL) {
		strbuf_appendf(&sb, ";\r\n\tspf=%s", in->spf_result);
		if (in->spf_mailfrom != NULL && in->spf_mailfrom[0] != '\0')
			ar_prop(&sb, "smtp.mailfrom", in->spf_mailfrom);
		else if (in->spf_helo != NULL && in->spf_helo[0] != '\0')
			ar_prop(&sb, "smtp.helo", in->spf_helo);
		any = true;
	}
	if (in->dkim_checked) {
		if (in->ndkim == 0)
			strbuf_appends(&sb, ";\r\n\tdkim=none");
		for (size_t i = 0; i < in->ndkim; i++)
			ar_dkim(&sb, &in->dkim[i]);
		any = true;
	}
	if (in->dmarc != NULL) {
		ar_dmarc(&sb, in->dmarc);
		any = true;
	}
	if (!any)
		strbuf_appends(&sb, "; none");
	rc = strbuf_append(&sb, "\r\n", 2);
	if (rc == 0)
		rc = strbuf_append(out, sb.data, sb.len);
	strbuf_free(&sb);
	return rc;
}

int auth_results_add_edit(struct envelope *env, const char *field)
{
	size_t flen = strlen(field);
	struct envelope_edit *top = NULL;
	unsigned char *joined;

	for (size_t i = 0; i < env->nedits; i++)
		if (env->edits[i].offset == 0)
			top = &env->edits[i];
	if (top == NULL)
		return envelope_add_edit(env, 0, 0, field, flen);
	if (top->insert_len + flen > ENVELOPE_EDIT_INSERT_MAX)
		return -1;
	joined = xmalloc(flen + top->insert_len);
	memcpy(joined, field, flen);
	if (top->insert_len > 0)
		memcpy(joined + flen, top->insert, top->insert_len);
	free(top->insert);
	top->insert = joined;
	top->insert_len += flen;
	return 0;
}
