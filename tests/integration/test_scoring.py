"""Scoring over SMTP: the total score's SCL decides the level (ham,
suspected spam, spam) with each level's marks, the gateway threshold acts
(reject by default, or the configured action), the store threshold sends
local users' mail to their Junk folder and sets the junk header, [actions]
spam applies to spam but not to suspected spam, and the connection and
protocol stages' symbols count in the content score. Scores come from a
phrase-weights file, so each message's total is known exactly."""
import os

import pytest

from rawsmtp import dot_stuff, make_message_id, message
from test_content_smtp import header

SENDER = "sender@example.org"
RCPT = "user@example.com"
PHRASES = """\
# written by test_scoring.py: one phrase per level of the SCL table
2     subject "score-two"
3     subject "score-three"
5.5   subject "score-five"
8.5   subject "score-eight"
14    subject "score-fourteen"
"""


@pytest.fixture
def phrases_file(workdir):
    path = os.path.join(workdir, "scoring.phrases")
    with open(path, "w") as f:
        f.write(PHRASES)
    return path


def scoring_gateway(gateway, phrases_file, extra=None):
    overrides = {"phrases": {"file": phrases_file}}
    overrides.update(extra or {})
    return gateway(overrides)


def deliver(gw, sink, subject, rcpt=RCPT):
    mid = make_message_id()
    data = message(subject=subject, mid=mid, to=rcpt)
    r = gw.transaction(SENDER, [rcpt], data)
    assert r.code == 250, r
    return sink.wait_message_id(mid)["data"] if sink is not None else r


def test_ham_is_untouched(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file)
    got = deliver(gw, sink, "plain score-two")
    for name in ("X-Postern-Status", "X-Postern-SCL", "X-Postern-Junk"):
        assert header(got, name) is None, name
    assert header(got, "Subject") == "plain score-two"
    assert "level=ham junk=no" in gw.log_text()


def test_suspected_spam_gets_its_own_marks(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file)
    got = deliver(gw, sink, "offer score-five")
    assert header(got, "X-Postern-Status") == "suspected-spam"
    assert header(got, "X-Postern-SCL") == "5"
    assert header(got, "Subject") == "[SUSPECTED SPAM] offer score-five"
    assert header(got, "X-Postern-Junk") == "yes"
    assert "PHRASES" in header(got, "X-Postern-Reason")


def test_spam_gets_the_spam_marks(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file)
    got = deliver(gw, sink, "offer score-eight")
    assert header(got, "X-Postern-Status") == "spam"
    assert header(got, "X-Postern-SCL") == "7"
    assert header(got, "Subject") == "[SPAM] offer score-eight"
    assert header(got, "X-Postern-Junk") == "yes"


def test_gateway_threshold_rejects_by_default(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file)
    mid = make_message_id()
    r = gw.transaction(SENDER, [RCPT], message(subject="win score-fourteen", mid=mid))
    assert r.code == 554 and r.enhanced == "5.7.1", r
    assert "SCL 9" in r.text, r
    gw.wait_idle()
    assert mid not in [m["message_id"] for m in sink.snapshot()]


def test_gateway_threshold_can_quarantine(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file,
                         {"scoring": {"gateway_scl": 7, "gateway_action": "quarantine"}})
    r = gw.transaction(SENDER, [RCPT], message(subject="offer score-eight"))
    assert r.code == 250 and r.queue_id, r
    held = gw.cli_json("quarantine", "list")
    assert [e["id"] for e in held] == [r.queue_id], held
    assert held[0]["scl"] == 7, held


def test_actions_spam_applies_to_spam_not_to_suspected(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file, {"actions": {"spam": "quarantine"}})
    spam = gw.transaction(SENDER, [RCPT], message(subject="offer score-eight"))
    assert spam.code == 250, spam
    got = deliver(gw, sink, "offer score-five")
    assert header(got, "X-Postern-Status") == "suspected-spam"
    assert [e["id"] for e in gw.cli_json("quarantine", "list")] == [spam.queue_id]


def test_thresholds_are_configurable(gateway, sink, phrases_file):
    gw = scoring_gateway(gateway, phrases_file,
                         {"scoring": {"suspected_scl": 3, "spam_scl": 5, "store_scl": 10,
                                      "suspected_subject_tag": "[MAYBE] "}})
    got = deliver(gw, sink, "hm score-three")
    assert header(got, "X-Postern-Status") == "suspected-spam"
    assert header(got, "Subject") == "[MAYBE] hm score-three"
    assert header(got, "X-Postern-Junk") is None
    got = deliver(gw, sink, "offer score-five")
    assert header(got, "X-Postern-Status") == "spam"


def test_bad_scoring_config_is_refused(gateway, phrases_file, postern_bin, workdir):
    gw = scoring_gateway(gateway, phrases_file)
    gw.update({"scoring": {"suspected_scl": 8, "spam_scl": 6}})
    p = gw.cli("reload")
    assert p.returncode != 0
    assert "suspected_scl 8 is above spam_scl 6" in (p.stdout + p.stderr)


def test_store_threshold_files_local_mail_in_junk(gateway, phrases_file):
    gw = scoring_gateway(gateway, phrases_file)
    deliver(gw, None, "offer score-five", rcpt="bob@local.test")
    deliver(gw, None, "hello score-two", rcpt="bob@local.test")
    junk = gw.wait_maildir("bob@local.test", folder=".Junk")
    inbox = gw.wait_maildir("bob@local.test")
    assert len(junk) == 1 and b"offer score-five" in junk[0]
    assert len(inbox) == 1 and b"hello score-two" in inbox[0]
    assert header(junk[0], "X-Postern-Junk") == "yes"
    assert header(inbox[0], "X-Postern-Junk") is None


def test_policy_symbols_count_in_the_content_score(gateway, sink, phrases_file):
    # HELO_NOT_FQDN (tag, score 3) + PHRASES 3 = 6: suspected spam; each alone is ham.
    gw = scoring_gateway(gateway, phrases_file, {"helo": {"enabled": True, "action": "tag", "score": 3}})
    mid = make_message_id()
    data = message(subject="hi score-three", mid=mid)
    with gw.raw() as c:
        c.reply()
        assert c.cmd("EHLO localhost").code == 250
        assert c.cmd("MAIL FROM:<{}>".format(SENDER)).code == 250
        assert c.cmd("RCPT TO:<{}>".format(RCPT)).code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        assert c.reply().code == 250
        # The next transaction of the session keeps the HELO symbol, not the first one's phrases.
        mid2 = make_message_id()
        assert c.cmd("MAIL FROM:<{}>".format(SENDER)).code == 250
        assert c.cmd("RCPT TO:<{}>".format(RCPT)).code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(subject="hi again", mid=mid2)))
        assert c.reply().code == 250
        c.cmd("QUIT")
    got = sink.wait_message_id(mid)["data"]
    assert header(got, "X-Postern-Status") == "suspected-spam"
    assert "HELO_NOT_FQDN" in header(got, "X-Postern-Reason")
    got2 = sink.wait_message_id(mid2)["data"]
    assert header(got2, "X-Postern-Status") is None
