"""Spam intelligence over SMTP: phishing links, fuzzy checksums learned
from spam verdicts and matching near-duplicates, noise reduction for a
sender with a clean history, and the gateway picking up `postern learn`
run against its live Bayes database."""
import os
import re
import subprocess

import pytest

from gateway import give_to_daemon, run_user, wait_until
from rawsmtp import make_message_id, message
from test_content_smtp import header
from test_spam_engines import CORPUS, corpus, crlf

SENDER = "sender@example.org"
RCPT = "user@example.com"
PHRASES = """\
# written by test_spam_intel.py
10    subject "mega-deal"
5.5   subject "fairly-spammy"
"""
# Long enough for shingles (the fuzzy engine wants 20 words), varied by NAME and NUMBER.
SPAM_TEXT = (
    "Dear {name}, our records show that your account number {number} qualifies for an exclusive "
    "reward programme. To claim the reward you must confirm your details with our partner office "
    "before the end of the week, after which the offer lapses and cannot be renewed. Reply to this "
    "message with your full name, address and telephone number and a representative will contact "
    "you. This is a limited offer for selected customers only; do not share it with anyone.\r\n")
HTML_PHISH = (
    "Content-Type: text/html; charset=utf-8\r\nMIME-Version: 1.0\r\n")


def phrases(workdir):
    path = os.path.join(workdir, "intel.phrases")
    with open(path, "w") as f:
        f.write(PHRASES)
    return path


def send(gw, subject, body="Hello.\r\n", sender=SENDER, extra=""):
    mid = make_message_id()
    data = message(subject=subject, body=body, mid=mid, sender=sender, extra=extra)
    r = gw.transaction(sender, [RCPT], data)
    assert r.code == 250, r
    return mid


def test_phishing_link_is_tagged(gateway, sink):
    gw = gateway({})
    body = ('<html><body><p>Your account is locked.</p>'
            '<a href="http://paypal.com.account-verify.example/login">https://www.paypal.com/signin</a>'
            '</body></html>\r\n')
    mid = send(gw, "Account notice", body=body, extra=HTML_PHISH)
    got = sink.wait_message_id(mid)["data"]
    reasons = header(got, "X-Postern-Reason") or ""
    assert "PHISH_TEXT_MISMATCH" in reasons and "PHISH_LOOKALIKE" in reasons, got[:1500]
    assert header(got, "X-Postern-Status") in ("spam", "suspected-spam")


def test_honest_links_are_not_phishing(gateway, sink):
    gw = gateway({})
    body = ('<html><body><p>Our newsletter.</p>'
            '<a href="https://news.example.org/track?id=1">Read more</a> '
            '<a href="https://www.example.org/">www.example.org</a></body></html>\r\n')
    mid = send(gw, "Newsletter", body=body, extra=HTML_PHISH)
    got = sink.wait_message_id(mid)["data"]
    assert header(got, "X-Postern-Status") is None, got[:1500]
    assert "PHISH_" not in gw.log_text()


def test_fuzzy_learns_spam_and_matches_near_duplicates(gateway, sink, workdir):
    gw = gateway({"phrases": {"file": phrases(workdir)}, "scoring": {"gateway_scl": 10},
                  "log": {"level": "debug"}})
    first = send(gw, "mega-deal for you", body=SPAM_TEXT.format(name="Alice", number="1234-5678"))
    sink.wait_message_id(first)
    wait_until(lambda: re.search(r"fuzzy queue_id=\S+ learned", gw.log_text()), what="fuzzy learned line")
    # The same spam run, another name and number, without the phrase that scored the first copy.
    second = send(gw, "a deal for you", body=SPAM_TEXT.format(name="Robert", number="9876-5432"))
    got = sink.wait_message_id(second)["data"]
    assert "FUZZY_SPAM" in (header(got, "X-Postern-Reason") or ""), got[:1500]
    # Unrelated text does not match.
    third = send(gw, "lunch", body="Shall we have lunch on Thursday at the usual place near the "
                 "station? I can book a table for four people at half past twelve if that suits "
                 "everyone, otherwise Friday works too.\r\n")
    got = sink.wait_message_id(third)["data"]
    assert header(got, "X-Postern-Status") is None, got[:1500]


def test_clean_history_dampens_a_spammy_message(gateway, sink, workdir):
    gw = gateway({"phrases": {"file": phrases(workdir)},
                  "history": {"min_messages": 3, "dampen_percent": 60}, "log": {"level": "debug"}})
    regular = "newsletter@example.org"
    for i in range(12):
        send(gw, "weekly news {}".format(i), sender=regular)
    gw.wait_idle()
    mid = send(gw, "fairly-spammy weekly news", sender=regular)
    got = sink.wait_message_id(mid)["data"]
    assert header(got, "X-Postern-Status") is None, got[:1500]
    assert "HISTORY_CLEAN" in gw.log_text()
    # Another sender with the same message has no history: suspected spam.
    mid = send(gw, "fairly-spammy weekly news", sender="stranger@example.org")
    got = sink.wait_message_id(mid)["data"]
    assert header(got, "X-Postern-Status") == "suspected-spam", got[:1500]


def test_gateway_picks_up_learning_from_postern_learn(gateway, sink, postern_bin, workdir):
    if not os.path.isdir(CORPUS):
        pytest.skip("no mail corpus at " + CORPUS)
    d = os.path.join(workdir, "live-bayes")
    give_to_daemon(d)
    db = os.path.join(d, "bayes.db")
    gw = gateway({"bayes": {"enabled": True, "database": db, "reload_check": "1h", "autolearn": False},
                  "log": {"level": "debug"}})
    spam = crlf(corpus("spam", 30)[29])
    r = gw.transaction(SENDER, [RCPT], spam)
    assert r.code == 250
    wait_until(lambda: "content symbols=" in gw.log_text(), what="the first scan")
    assert "BAYES_" not in gw.log_text(), "an empty database said something"
    # A reload shortens the interval: the timer is armed again with it.
    gw.update({"bayes": {"reload_check": "1s"}})
    assert gw.cli("reload").returncode == 0
    user = ["runuser", "-u", run_user(), "--"] if os.geteuid() == 0 else []
    for label in ("spam", "ham"):
        p = subprocess.run(user + [postern_bin, "learn", "--db", db, label] + corpus(label, 25),
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    wait_until(lambda: "bayes tokens reloaded" in gw.log_text(), what="the reload line")
    r = gw.transaction(SENDER, [RCPT], spam)
    assert r.code == 250
    wait_until(lambda: "BAYES_SPAM" in gw.log_text(), what="BAYES_SPAM after the reload")
