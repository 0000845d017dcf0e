"""The quarantine end to end: a content rule quarantines messages by a
subject phrase; the client gets 250 and nothing reaches the sink;
`postern quarantine list|show|release|delete` shows and decides, across
a restart; release delivers to the original recipients unchanged apart
from our trace headers; expiry deletes what waits too long."""
import os
import time

from gateway import wait_until
from rawsmtp import message
from sink import message_id

RULES = """\
rule HOLD_PHRASE {
    category spam
    match subject "quarantine me"
    action quarantine
}
"""

PHRASE_REASON = "rule HOLD_PHRASE: matched subject"


def quarantine_gateway(gateway, workdir, extra=None):
    rules = os.path.join(workdir, "hold.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    overrides = {"rules": {"file": rules}}
    overrides.update(extra or {})
    return gateway(overrides)


def send(gw, subject, rcpts=("user@example.com",), sender="sender@example.org"):
    data = message(subject=subject, sender=sender, to=rcpts[0])
    r = gw.transaction(sender, list(rcpts), data)
    assert r.code == 250 and r.queue_id, r
    return r.queue_id, data


def qlist(gw, *args):
    result = gw.cli_json("quarantine", "list", *args)
    assert isinstance(result, list), result
    return result


def ids(entries):
    return [e["id"] for e in entries]


def in_queue(gw, qid):
    return any(m["id"] == qid for m in gw.queue_list())


def only_trace_headers_added(got, sent):
    """The delivered bytes are the sent ones with header lines added on top."""
    assert got.endswith(sent), "the message changed beyond added headers"
    added = got[:len(got) - len(sent)].decode("ascii", "replace")
    for line in added.split("\r\n"):
        if line and line[0] not in " \t":
            name = line.split(":", 1)[0]
            assert name in ("Received", "Received-SPF") or name.startswith("X-Postern"), line


def test_quarantine_list_restart_release(gateway, sink, workdir):
    gw = quarantine_gateway(gateway, workdir)
    held_id, held_data = send(gw, "Please quarantine me now",
                              rcpts=("user@example.com", "other@example.com"))
    plain_id, plain_data = send(gw, "lunch")

    # the plain message passes; the quarantined one stays behind
    sink.wait_message_id(message_id(plain_data))
    assert all(m["message_id"] != message_id(held_data) for m in sink.snapshot())
    wait_until(lambda: not in_queue(gw, plain_id), what="the plain message leaves the queue")
    (m,) = [m for m in gw.queue_list() if m["id"] == held_id]
    assert m["held"] is True

    (e,) = qlist(gw)
    assert e["id"] == held_id
    assert e["state"] == "held" and e["queued"] is True
    assert e["category"] == "spam"
    assert PHRASE_REASON in e["reasons"], e
    assert e["subject"] == "Please quarantine me now"
    assert e["sender"] == "sender@example.org"
    assert e["recipients"] == ["user@example.com", "other@example.com"]
    assert e["size"] >= len(held_data)
    assert abs(e["arrival"] - time.time()) < 300

    # filters
    assert ids(qlist(gw, "--sender", "SENDER@example")) == [held_id]
    assert qlist(gw, "--sender", "nobody@") == []
    assert ids(qlist(gw, "--rcpt", "other@example.com")) == [held_id]
    assert qlist(gw, "--rcpt", "user@example.net") == []
    assert ids(qlist(gw, "--category", "spam")) == [held_id]
    assert qlist(gw, "--category", "virus") == []
    assert ids(qlist(gw, "--since", "1h")) == [held_id]
    assert qlist(gw, "--since", "2999-01-01") == []
    p = gw.cli("quarantine", "list", "--since", "yesterday-ish")
    assert p.returncode == 2 and "--since" in p.stderr

    text = gw.cli("quarantine", "list", check=0).stdout
    assert held_id in text and "Please quarantine me now" in text and "1 message" in text
    shown = gw.cli_json("quarantine", "show", held_id)
    assert message_id(held_data) in shown["headers"]
    assert shown["reasons"] == e["reasons"]
    text = gw.cli("quarantine", "show", held_id, check=0).stdout
    assert "reasons:    " + e["reasons"] in text

    # a restart keeps the message held and its record
    gw.stop()
    gw.start()
    (e2,) = qlist(gw)
    assert e2["id"] == held_id and e2["state"] == "held" and e2["queued"] is True
    (m,) = [m for m in gw.queue_list() if m["id"] == held_id]
    assert m["held"] is True

    released = gw.cli_json("quarantine", "release", held_id)
    assert released == {"id": held_id, "state": "released"}
    got = sink.wait_message_id(message_id(held_data))
    assert sorted(got["rcpt_tos"]) == ["other@example.com", "user@example.com"]
    assert got["mail_from"] == "sender@example.org"
    only_trace_headers_added(got["data"], held_data)
    gw.wait_queue_empty(timeout=30)

    assert qlist(gw) == []
    (e3,) = qlist(gw, "--state", "released")
    assert e3["id"] == held_id and e3["queued"] is False
    p = gw.cli("quarantine", "release", held_id)
    assert p.returncode == 1 and "already released" in p.stderr
    p = gw.cli("quarantine", "show", "FFFFFFFFFFFFFFFFFFFF")
    assert p.returncode == 1 and "not in the quarantine" in p.stderr
    assert "quarantine: release queue_id=" + held_id in gw.log_text()


def test_quarantine_delete(gateway, sink, workdir):
    gw = quarantine_gateway(gateway, workdir)
    held_id, held_data = send(gw, "QUARANTINE ME please")
    (e,) = qlist(gw)
    assert e["id"] == held_id

    assert gw.cli_json("quarantine", "delete", held_id) == {"id": held_id, "state": "deleted"}
    assert not in_queue(gw, held_id)
    assert qlist(gw) == []
    (e,) = qlist(gw, "--all")
    assert e["id"] == held_id and e["state"] == "deleted" and e["queued"] is False
    p = gw.cli("quarantine", "delete", held_id)
    assert p.returncode == 1 and "already deleted" in p.stderr

    # a later message goes through; the deleted one never came
    plain_id, plain_data = send(gw, "after the delete")
    sink.wait_message_id(message_id(plain_data))
    assert all(m["message_id"] != message_id(held_data) for m in sink.snapshot())


def test_quarantine_follows_queue_commands(gateway, sink, workdir):
    """`postern queue release|delete` on a quarantined message updates its record."""
    gw = quarantine_gateway(gateway, workdir)
    rel_id, rel_data = send(gw, "quarantine me: released by queue")
    del_id, del_data = send(gw, "quarantine me: deleted by queue")
    assert sorted(ids(qlist(gw))) == sorted([rel_id, del_id])

    gw.cli("queue", "release", rel_id, check=0)
    sink.wait_message_id(message_id(rel_data))
    gw.cli("queue", "delete", del_id, check=0)
    assert qlist(gw) == []
    assert ids(qlist(gw, "--state", "released")) == [rel_id]
    assert ids(qlist(gw, "--state", "deleted")) == [del_id]
    p = gw.cli("quarantine", "release", del_id)
    assert p.returncode == 1 and "already deleted" in p.stderr
    assert all(m["message_id"] != message_id(del_data) for m in sink.snapshot())


def test_quarantine_expiry(gateway, sink, workdir):
    gw = quarantine_gateway(gateway, workdir, {"quarantine": {"expire": "2s"}})
    held_id, held_data = send(gw, "quarantine me, then forget me")
    assert ids(qlist(gw, "--all")) == [held_id]

    expired = wait_until(lambda: qlist(gw, "--state", "expired"), timeout=30,
                         what="the expiry of " + held_id)
    assert ids(expired) == [held_id]
    assert expired[0]["changed"] - expired[0]["arrival"] >= 2
    assert not in_queue(gw, held_id)
    assert qlist(gw) == []
    assert "quarantine: expire queue_id=" + held_id in gw.log_text()
    assert all(m["message_id"] != message_id(held_data) for m in sink.snapshot())


def test_quarantine_cli_usage(gateway):
    gw = gateway()
    for args in (("quarantine",), ("quarantine", "show"), ("quarantine", "purge", "X"),
                 ("quarantine", "list", "--limit", "0")):
        p = gw.cli(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "usage: postern quarantine" in p.stderr
    p = gw.cli("quarantine", "release", "not-an-id!")
    assert p.returncode == 1 and "invalid id" in p.stderr
    assert gw.cli_json("quarantine", "list") == []
