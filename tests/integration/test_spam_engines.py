"""The spam engines of the content stage over SMTP: DKIM verification with
the Authentication-Results header (a message signed with `postern dkim
sign`, its key served by tests/tools/dnsd.py), DMARC p=reject refusing an
unaligned message, and the Bayes filter trained with `postern learn`
before the gateway starts, with the autolearn decisions in the log."""
import base64
import os
import pwd
import re
import subprocess

import pytest

from conftest import DnsServer, ZONE
from gateway import give_to_daemon, run_user, wait_until
from rawsmtp import make_message_id, message
from test_content_smtp import header

SENDER = "sender@example.org"
RCPT = "user@example.com"
SELECTOR = "sel1"
SIGNED_DOMAIN = "signed.test"
CORPUS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                      "corpus", "mail"))
RULES = """\
# written by test_spam_engines.py
rule LOTTERY_WINNER {
    category spam
    description "Lottery winner"
    match subject "lottery winner"
    action tag
    score 12.5
}
"""


def dkim_key(workdir):
    """An RSA key (PEM path) and its DKIM key record."""
    pem = os.path.join(workdir, "dkim.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", pem], check=True, capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@pytest.fixture
def dkim_dns(workdir):
    """The suite's zone plus a DKIM key for signed.test, DMARC records for
    signed.test (p=none) and strict.test (p=reject)."""
    pem, record = dkim_key(workdir)
    zone = ZONE + "\n".join([
        '{}._domainkey.{} TXT "{}"'.format(SELECTOR, SIGNED_DOMAIN, record),
        '_dmarc.{} TXT "v=DMARC1; p=none"'.format(SIGNED_DOMAIN),
        '_dmarc.strict.test TXT "v=DMARC1; p=reject"',
        ""])
    d = DnsServer(workdir, zone)
    d.pem = pem
    yield d
    d.stop()


@pytest.fixture
def dkim_gw(gateway, dkim_dns):
    return gateway({"dns": {"servers": dkim_dns.servers, "timeout_ms": 1000, "tries": 1},
                    "dkim": {"dns_timeout": "3s"}})


def sign(postern_bin, pem, data, workdir):
    path = os.path.join(workdir, "to-sign.eml")
    with open(path, "wb") as f:
        f.write(data)
    p = subprocess.run([postern_bin, "dkim", "sign", "--domain", SIGNED_DOMAIN, "--selector", SELECTOR,
                        "--key", pem, "--message", path], capture_output=True, check=True)
    return p.stdout


def test_signed_message_gets_dkim_pass(dkim_gw, dkim_dns, sink, postern_bin, workdir):
    mid = make_message_id()
    data = sign(postern_bin, dkim_dns.pem,
                message(subject="signed", sender="alice@" + SIGNED_DOMAIN, mid=mid), workdir)
    assert data.startswith(b"DKIM-Signature:"), data[:200]
    r = dkim_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    ar = header(raw, "Authentication-Results")
    assert ar is not None, raw[:2000]
    assert ar.startswith("mx.postern.test;"), ar
    assert re.search(r"dkim=pass .*header\.d=signed\.test", ar), ar
    assert "dmarc=pass" in ar, ar
    # The header goes on top; the signed message below it is as sent.
    assert raw.startswith(b"Authentication-Results:"), raw[:300]
    assert raw.endswith(data)
    assert "DKIM_VALID" in dkim_gw.log_text() or "score=-1.0" in dkim_gw.log_text()


def test_tampered_message_gets_dkim_fail(dkim_gw, dkim_dns, sink, postern_bin, workdir):
    mid = make_message_id()
    data = sign(postern_bin, dkim_dns.pem,
                message(subject="signed", sender="alice@" + SIGNED_DOMAIN, mid=mid,
                        body="Pay 10 EUR.\r\n"), workdir)
    data = data.replace(b"Pay 10 EUR.", b"Pay 99 EUR.")
    r = dkim_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r       # DMARC p=none: only a score
    raw = sink.wait_message_id(mid)["data"]
    ar = header(raw, "Authentication-Results")
    assert ar is not None and "dkim=fail" in ar, raw[:2000]
    assert "dmarc=fail" in ar, ar


def test_dmarc_reject_refuses_unaligned_mail(dkim_gw, dkim_dns, sink, postern_bin, workdir):
    # Signed by signed.test, From strict.test (p=reject): nothing aligns.
    mid = make_message_id()
    data = sign(postern_bin, dkim_dns.pem,
                message(subject="spoofed", sender="ceo@strict.test", mid=mid), workdir)
    r = dkim_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 550 and r.enhanced == "5.7.1", r
    assert "DMARC policy of strict.test: reject" in r.text, r
    assert re.search(r"action=reject .*DMARC fail for strict\.test", dkim_gw.log_text())


def test_unsigned_mail_without_dmarc_passes_untouched(dkim_gw, sink):
    mid = make_message_id()
    data = message(subject="plain", mid=mid)
    assert dkim_gw.transaction(SENDER, [RCPT], data).code == 250
    raw = sink.wait_message_id(mid)["data"]
    assert header(raw, "Authentication-Results") is None, raw[:1000]


def test_authentication_results_can_be_turned_off(gateway, dkim_dns, sink, postern_bin, workdir):
    gw = gateway({"dns": {"servers": dkim_dns.servers, "timeout_ms": 1000, "tries": 1},
                  "dkim": {"authentication_results": False}})
    mid = make_message_id()
    data = sign(postern_bin, dkim_dns.pem,
                message(subject="signed", sender="alice@" + SIGNED_DOMAIN, mid=mid), workdir)
    assert gw.transaction(SENDER, [RCPT], data).code == 250
    raw = sink.wait_message_id(mid)["data"]
    assert header(raw, "Authentication-Results") is None, raw[:1000]


def corpus(label, count):
    d = os.path.join(CORPUS, label)
    return [os.path.join(d, n) for n in sorted(os.listdir(d))[:count]]


def crlf(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def bayes_gw(gateway, postern_bin, workdir):
    """A gateway whose Bayes database was trained before it started."""
    if not os.path.isdir(CORPUS):
        pytest.skip("no mail corpus at " + CORPUS)
    d = os.path.join(workdir, "bayes")
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "bayes.db")
    for label in ("spam", "ham"):
        p = subprocess.run([postern_bin, "learn", "--db", db, label] + corpus(label, 15),
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    give_to_daemon(d)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(run_user())
        for name in os.listdir(d):
            os.chown(os.path.join(d, name), pw.pw_uid, pw.pw_gid)
    rules = os.path.join(workdir, "spam.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    # Never at the gateway threshold: the second copy of a learned message must still arrive.
    return gateway({"log": {"level": "debug"},
                    "bayes": {"enabled": True, "database": db},
                    "rules": {"file": rules},
                    "scoring": {"gateway_scl": 10}})


def test_bayes_tags_trained_spam(bayes_gw, sink):
    data = crlf(corpus("spam", 1)[0])
    r = bayes_gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    wait_until(lambda: re.search(r'content symbols="[^"]*BAYES_SPAM', bayes_gw.log_text()),
               what="BAYES_SPAM in the log")


def test_autolearn_logs_its_decisions(bayes_gw, sink):
    mid = make_message_id()
    data = message(subject="You are our lottery winner", mid=mid)
    assert bayes_gw.transaction(SENDER, [RCPT], data).code == 250
    sink.wait_message_id(mid)
    wait_until(lambda: re.search(r'autolearn queue_id=\S+ class=spam reason="score 12\.5 >= 12\.0"\s*$',
                                 bayes_gw.log_text(), re.M), what="the autolearn line")
    # The same message again: the duplicate guard says why it is not learned.
    assert bayes_gw.transaction(SENDER, [RCPT], data).code == 250
    wait_until(lambda: "not learned: duplicate" in bayes_gw.log_text(), what="the duplicate line")
