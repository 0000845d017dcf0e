"""Protocol-stage defences of the gateway: SPF at MAIL (with Received-SPF on
accepted mail), HELO sanity, the sender deny list and the sender repeat
limit. The client is 127.0.0.1, an untrusted (inbound) client of the
base configuration; a DNS server of our own serves the SPF records."""
import pytest

from conftest import ZONE, DnsServer
from rawsmtp import dot_stuff, message
from sink import message_id

PROTOCOL_ZONE = ZONE + """\
spfpass.test       TXT "v=spf1 ip4:127.0.0.1 -all"
spfpass.test       MX 10 mx.remote.test
spffail.test       TXT "v=spf1 -all"
spffail.test       MX 10 mx.remote.test
"""


@pytest.fixture
def protocol_dns(workdir):
    d = DnsServer(workdir, PROTOCOL_ZONE)
    yield d
    d.stop()


def dns_section(d):
    return {"servers": d.servers, "timeout_ms": 1000, "tries": 2}


def test_spf_fail_rejected_and_pass_gets_header(gateway, sink, protocol_dns):
    gw = gateway({"dns": dns_section(protocol_dns), "spf": {"enabled": True}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<someone@spffail.test>")
        assert (r.code, r.enhanced) == (550, "5.7.23"), r
        assert "SPF fail" in r.text, r
        c.cmd("QUIT")
    data = message(subject="spf pass", sender="someone@spfpass.test")
    final = gw.transaction("someone@spfpass.test", ["user@example.com"], data)
    assert final.code == 250, final
    got = sink.wait_message_id(message_id(data))
    assert b"Received-SPF: pass" in got["data"], got["data"][:600]
    assert b"client-ip=127.0.0.1" in got["data"]


def test_helo_bare_word_tagged_by_default(gateway, sink):
    gw = gateway({"helo": {"enabled": True, "action": "tag"}})
    data = message(subject="helo tag")
    with gw.raw() as c:
        c.reply()
        r = c.cmd("EHLO localhost")
        assert r.code == 250, r
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        assert c.reply().code == 250
        c.cmd("QUIT")
    sink.wait_message_id(message_id(data))
    assert "HELO_NOT_FQDN" in gw.log_text()


@pytest.mark.parametrize("helo", ["localhost", "workstation", "192.0.2.7"])
def test_helo_not_fqdn_rejected(gateway, helo):
    gw = gateway({"helo": {"enabled": True, "action": "reject"}})
    with gw.raw() as c:
        c.reply()
        r = c.cmd("EHLO " + helo)
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        assert "need fully-qualified hostname" in r.text, r
        # a proper name is still welcome on the same connection
        assert c.cmd("EHLO client.example.org").code == 250


def test_sender_deny_list(gateway, sink):
    gw = gateway({"sender": {"enabled": True, "deny": ["spammer@bad.test", "@evil.test"]}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        for sender in ("spammer@bad.test", "anyone@EVIL.test"):
            r = c.cmd("MAIL FROM:<{}>".format(sender))
            assert (r.code, r.enhanced) == (554, "5.7.1"), r
            assert "Sender address rejected: Access denied" in r.text, r
        assert c.cmd("MAIL FROM:<fine@bad.test>").code == 250
        c.cmd("QUIT")


def test_sender_rate_defers_after_limit(gateway):
    gw = gateway({"sender_rate": {"enabled": True, "direction": "both", "limit": 3,
                                  "window": "1h", "ban_step": "1m", "ban_max": "1h",
                                  "action": "defer"}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        for _ in range(3):
            assert c.cmd("MAIL FROM:<bulk@example.org>").code == 250
            assert c.cmd("RSET").code == 250
        r = c.cmd("MAIL FROM:<bulk@example.org>")
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        assert "Too many messages from <bulk@example.org>" in r.text, r
        assert "try again in" in r.text, r
        # another sender is not held back
        assert c.cmd("MAIL FROM:<other@example.org>").code == 250
        c.cmd("QUIT")
