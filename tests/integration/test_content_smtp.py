"""The content stage over SMTP without the virus engine: the content rules
of [rules] file (an attachment-name rule that rejects, a subject phrase
that tags with a score) and the MIME engine's own verdicts, each seen
from the client's reply and from what the sink receives."""
import re

import pytest

from rawsmtp import make_message_id, message
from sink import strip_first_received
from test_virus_smtp import RCPT, SENDER, with_attachment

RULES = """\
# written by test_content_smtp.py
rule SCREENSAVER_ATTACHMENT {
    description "Screensaver attachment"
    match attachment-name *.scr
    action reject "554 5.7.1 Screensavers are not accepted here"
}

rule CHEAP_WATCHES {
    category spam
    description "Cheap watches offer"
    match subject "cheap watches"
    action tag
    score 6.5
}
"""


@pytest.fixture
def rules_gw(gateway, workdir):
    path = "{}/content.rules".format(workdir)
    with open(path, "w") as f:
        f.write(RULES)
    return gateway({"rules": {"file": path}})


def header(raw, name):
    """The unfolded value of the first header NAME, or None."""
    m = re.search(rb"(?im)^" + name.encode() + rb":[ \t]*((?:[^\r\n]*\r\n[ \t])*[^\r\n]*)", raw)
    return re.sub(r"\r\n[ \t]+", " ", m.group(1).decode()).strip() if m else None


def test_rule_attachment_name_rejects(rules_gw, sink):
    mid = make_message_id()
    data = with_attachment("holiday.scr", b"just some bytes\r\n", mid=mid, ctype="text/plain")
    r = rules_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 554 and r.enhanced == "5.7.1", r
    assert "Screensavers are not accepted here" in r.text, r
    # The same attachment under another name passes: the rule is about the name.
    other = make_message_id()
    ok = with_attachment("holiday.txt", b"just some bytes\r\n", mid=other, ctype="text/plain")
    assert rules_gw.transaction(SENDER, [RCPT], ok).code == 250
    sink.wait_message_id(other)
    rules_gw.wait_queue_empty(timeout=30)
    assert mid not in {m["message_id"] for m in sink.snapshot()}


def test_rule_subject_phrase_tags_with_score(rules_gw, sink):
    mid = make_message_id()
    data = message(subject="Cheap Watches for you", mid=mid)
    r = rules_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    assert header(raw, "X-Postern-Status"), raw[:1500]
    assert header(raw, "X-Postern-SCL") == "6", raw[:1500]          # 6.5 points
    assert "CHEAP_WATCHES" in (header(raw, "X-Postern-Reason") or ""), raw[:1500]
    # SCL 6 is suspected spam: its own subject tag, and the junk header of the store threshold.
    assert header(raw, "X-Postern-Status") == "suspected-spam", raw[:1500]
    assert header(raw, "Subject") == "[SUSPECTED SPAM] Cheap Watches for you", raw[:1500]
    assert header(raw, "X-Postern-Junk") == "yes", raw[:1500]
    # Only the marks were added: the body is as sent.
    assert raw.endswith(data[data.index(b"\r\n\r\n"):])
    assert re.search(r"action=tag category=spam score=6\.5", rules_gw.log_text())


def test_untagged_mail_passes_byte_identical(rules_gw, sink):
    mid = make_message_id()
    data = message(subject="Watches, but not cheap", mid=mid)
    assert rules_gw.transaction(SENDER, [RCPT], data).code == 250
    raw = sink.wait_message_id(mid)["data"]
    _, rest = strip_first_received(raw)
    assert rest == data


def test_actions_rule_category_tags_instead(gateway, sink, workdir):
    """[actions] rule = tag: a rule that rejects only tags, with the
    subject tag and header names of [actions] left at their defaults (the
    subject tag is for spam only); the rule's own 554 text is not used."""
    path = "{}/content.rules".format(workdir)
    with open(path, "w") as f:
        f.write(RULES)
    gw = gateway({"rules": {"file": path}, "actions": {"rule": "tag"}})
    mid = make_message_id()
    data = with_attachment("pretty.scr", b"not really a screensaver\r\n", mid=mid,
                           subject="screensaver", ctype="text/plain")
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    assert header(raw, "X-Postern-Status") == "tagged", raw[:1500]
    assert header(raw, "X-Postern-Reason"), raw[:1500]
    assert header(raw, "Subject") == "screensaver", raw[:1500]
    assert raw.endswith(data[data.index(b"\r\n\r\n"):])
    assert re.search(r"action=tag category=rule ", gw.log_text())


def test_mime_double_extension_rejected(gateway, sink):
    """The MIME engine alone (no virus engine, no rules): a document
    extension in front of an executable one is refused."""
    gw = gateway()
    data = with_attachment("invoice.pdf.exe", b"not really a program\r\n", ctype="text/plain")
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 554 and "double extension" in r.text, r


def test_content_disabled_skips_the_stage(gateway, sink):
    gw = gateway({"content": {"enabled": False}})
    mid = make_message_id()
    data = with_attachment("invoice.pdf.exe", b"not really a program\r\n", mid=mid,
                           ctype="text/plain")
    assert gw.transaction(SENDER, [RCPT], data).code == 250
    _, rest = strip_first_received(sink.wait_message_id(mid)["data"])
    assert rest == data
