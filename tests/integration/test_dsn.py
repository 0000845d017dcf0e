"""Delivery status notifications: DSN parameters carried downstream
(RFC 3461) and RFC 3464 bounces for temporary and permanent failures."""
import re

import pytest

from dsnreport import Report
from rawsmtp import message
from sink import message_id

SHORT_LIFETIME = {"queue": {"lifetime": "3s", "retry_min": "1s", "retry_max": "1s"}}


def transaction(gw, sender, rcpts, data, mail_params="", rcpt_params=""):
    final = gw.transaction(sender, rcpts, data, mail_params, rcpt_params)
    assert final.code == 250, final
    return final.queue_id


def test_dsn_parameters_carried_downstream(gateway, make_sink):
    dsn_sink = make_sink(dsn=True)
    gw = gateway(sink_port=dsn_sink.port)
    data = message(subject="dsn params")
    transaction(gw, "sender@example.org", ["user@example.com"], data,
                " RET=HDRS ENVID=xyz", " NOTIFY=FAILURE ORCPT=rfc822;x@y")
    got = dsn_sink.wait_message_id(message_id(data))
    assert got["dsn_mail"].get("RET", "").upper() == "HDRS", got["dsn_mail"]
    assert got["dsn_mail"].get("ENVID") == "xyz", got["dsn_mail"]
    rcpt = got["dsn_rcpt"][0]
    assert rcpt.get("NOTIFY", "").upper() == "FAILURE", rcpt
    kind, _, addr = rcpt.get("ORCPT", "").partition(";")
    assert (kind.lower(), addr) == ("rfc822", "x@y"), rcpt


def test_dsn_parameters_dropped_without_downstream_dsn(gateway, sink):
    gw = gateway()
    data = message(subject="no dsn downstream")
    transaction(gw, "sender@example.org", ["user@example.com"], data,
                " RET=FULL ENVID=abc", " NOTIFY=SUCCESS,FAILURE")
    got = sink.wait_message_id(message_id(data))
    assert got["dsn_mail"] == {} and got["dsn_rcpt"] in ([], [{}]), got


def test_bounce_after_queue_lifetime(gateway, sink):
    """The downstream keeps answering 451: at the end of the (short) queue
    lifetime the local sender gets a report with Action: failed."""
    gw = gateway(SHORT_LIFETIME)
    data = message(subject="will expire", sender="bob@local.test", to="tempfail@example.com")
    transaction(gw, "bob@local.test", ["tempfail@example.com"], data,
                " ENVID=env-123", " ORCPT=rfc822;tempfail-orig@example.com")
    bounce = gw.wait_maildir("bob@local.test", timeout=60)[0]
    rep = Report(bounce)
    block = rep.recipient("tempfail@example.com")
    assert block.get("Action", "").strip().lower() == "failed"
    assert re.match(r"^[45]\.\d{1,3}\.\d{1,3}$", block.get("Status", "").strip()), block
    assert "tempfail-orig@example.com" in (block.get("Original-Recipient") or ""), block
    assert "env-123" in (rep.per_message.get("Original-Envelope-Id") or ""), rep.per_message
    assert rep.per_message.get("Reporting-MTA"), rep.per_message
    assert rep.msg.get("Auto-Submitted", "").startswith("auto-replied")
    assert message_id(data).encode() in bounce, "bounce does not quote the original"
    gw.wait_queue_empty(timeout=30)


@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
def test_permanent_failure_bounces_at_once(gateway, sink, ret):
    gw = gateway()          # queue lifetime 1h: only the 5xx can cause this
    marker = "BODY-MARKER-{}".format(ret)
    data = message(subject="rejected downstream", sender="bob@local.test",
                   to="reject-me@example.com", body=marker + "\r\n")
    transaction(gw, "bob@local.test", ["reject-me@example.com"], data, " RET=" + ret)
    bounce = gw.wait_maildir("bob@local.test", timeout=30)[0]
    rep = Report(bounce)
    block = rep.recipient("reject-me@example.com")
    assert block.get("Action", "").strip().lower() == "failed"
    assert block.get("Status", "").strip().startswith("5."), block
    assert "550" in (block.get("Diagnostic-Code") or ""), block
    returned = rep.returned
    assert returned is not None, "the report returns nothing of the original"
    if ret == "HDRS":
        assert returned.get_content_type() == "text/rfc822-headers"
        assert marker.encode() not in bounce
    else:
        assert returned.get_content_type() == "message/rfc822"
        assert marker.encode() in bounce


def test_bounce_to_relayed_sender_has_null_envelope_sender(gateway, sink):
    gw = gateway()
    data = message(subject="bounce me", sender="owner@example.com", to="reject-x@example.com")
    transaction(gw, "owner@example.com", ["reject-x@example.com"], data)
    got = sink.wait_for(lambda m: m["rcpt_tos"] == ["owner@example.com"])[0]
    assert got["mail_from"] == "", "a bounce must have the null sender, got " + got["mail_from"]
    Report(got["data"]).recipient("reject-x@example.com")


def test_mixed_recipients_only_failed_reported(gateway, sink):
    gw = gateway()
    data = message(subject="mixed", sender="bob@local.test")
    transaction(gw, "bob@local.test", ["good@example.com", "reject-1@example.com"], data)
    sink.wait_message_id(message_id(data))
    rep = Report(gw.wait_maildir("bob@local.test", timeout=30)[0])
    rep.recipient("reject-1@example.com")
    assert not [b for b in rep.per_recipient
                if "good@example.com" in (b.get("Final-Recipient") or "")], rep.raw


def test_null_sender_never_bounced(gateway, sink):
    """A bounce of a bounce would loop: the failed message just leaves the
    queue (a bounce addressed to nobody would stay in it)."""
    gw = gateway()
    data = message(subject="from the null sender")
    transaction(gw, "", ["reject-null@example.com"], data)
    gw.wait_queue_empty(timeout=30)
    assert sink.snapshot() == []
    assert gw.maildir_messages("bob@local.test") == []


def test_notify_never_suppresses_bounce(gateway, sink):
    gw = gateway()
    data = message(subject="notify never", sender="bob@local.test")
    transaction(gw, "bob@local.test", ["reject-never@example.com"], data,
                rcpt_params=" NOTIFY=NEVER")
    # A second failure without NOTIFY=NEVER: its bounce is the barrier.
    data2 = message(subject="notify default", sender="bob@local.test")
    transaction(gw, "bob@local.test", ["reject-default@example.com"], data2)
    gw.wait_queue_empty(timeout=30)
    bounces = gw.wait_maildir("bob@local.test", timeout=30)
    assert len(bounces) == 1, "NOTIFY=NEVER produced a bounce"
    Report(bounces[0]).recipient("reject-default@example.com")
