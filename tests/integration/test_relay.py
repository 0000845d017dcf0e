"""Who may send where: protected domains, local Maildir delivery, the open
relay refusal, trusted networks and authenticated users delivered by MX."""
import re
import smtplib

import pytest

from rawsmtp import dot_stuff, message
from sink import message_id, parse, strip_first_received

QUEUED = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Za-z]+)")


def test_relay_to_protected_domain(gateway, sink):
    gw = gateway()
    body = ("Line one.\r\n.leading dot survives\r\n..two dots\r\n\r\n"
            "trailing spaces   \r\n\ttab line\r\n" + "x" * 990 + "\r\n")
    data = message(subject="relay test", body=body, extra="X-Custom: kept  as-is\r\n")
    final = gw.transaction("sender@example.org", ["user@example.com"], data)
    assert final.code == 250, final
    assert QUEUED.match(final.text), final
    got = sink.wait_message_id(message_id(data))
    assert got["mail_from"] == "sender@example.org"
    assert got["rcpt_tos"] == ["user@example.com"]
    received, rest = strip_first_received(got["data"])
    assert rest == data, "the message changed beyond the Received header"
    assert b"mx.postern.test" in received, received
    assert b"client.example.org" in received or b"127.0.0.1" in received, received


def test_relay_with_smtplib_and_multiple_recipients(gateway, sink):
    gw = gateway()
    data = message(subject="smtplib")
    with gw.smtp() as s:
        refused = s.sendmail("sender@example.org", ["a@example.com", "b@EXAMPLE.com"], data)
        assert refused == {}
    got = sink.wait_message_id(message_id(data))
    assert sorted(r.lower() for r in got["rcpt_tos"]) == ["a@example.com", "b@example.com"]


def test_local_delivery_to_maildir(gateway, sink):
    gw = gateway()
    data = message(subject="local", to="bob@local.test")
    final = gw.transaction("sender@example.org", ["bob@local.test"], data)
    assert final.code == 250, final
    msgs = gw.wait_maildir("bob@local.test")
    assert len(msgs) == 1
    m = msgs[0]
    assert m.startswith(b"Delivered-To: bob@local.test\r\n") or \
        re.search(rb"(?m)^Delivered-To: <?bob@local.test>?\r$", m), m[:300]
    assert m.endswith(data), "Maildir copy differs from the message"
    assert message_id(m) == message_id(data)
    assert not sink.snapshot(), "local mail leaked to the relay sink"


def test_unknown_local_user(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd("RCPT TO:<nosuchuser@local.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r


def test_open_relay_is_refused(gateway, sink):
    gw = gateway({"relay": {"trusted_networks": "192.0.2.0/24"}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd("RCPT TO:<victim@remote.test>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        # The protected domain is still fine in the same transaction.
        assert c.cmd("RCPT TO:<user@example.com>").code == 250


def test_trusted_network_relays_by_mx(gateway, sink, dns):
    gw = gateway({"relay": {"trusted_networks": "127.0.0.0/8"}})
    data = message(subject="via mx", to="friend@remote.test")
    final = gw.transaction("sender@example.org", ["friend@remote.test"], data)
    assert final.code == 250, final
    got = sink.wait_message_id(message_id(data))
    assert got["rcpt_tos"] == ["friend@remote.test"]
    assert strip_first_received(got["data"])[1] == data


def test_authenticated_user_relays_by_mx(gateway, sink, dns):
    gw = gateway()
    data = message(subject="auth relay", sender="bob@local.test", to="friend@other.test")
    with gw.smtps() as s:
        s.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("bob@local.test", ["friend@other.test"], data)
        s.rset()
        code, _ = s.login("bob@local.test", "bob-Secret-1")
        assert code == 235
        assert s.sendmail("bob@local.test", ["friend@other.test"], data) == {}
    got = sink.wait_message_id(message_id(data))
    assert got["rcpt_tos"] == ["friend@other.test"]


def test_message_with_8bit_and_utf8_address(gateway, sink):
    gw = gateway()
    body = "Grüße aus Köln.\r\n"
    data = message(subject="utf8", body=body, to="jörg@example.com",
                   extra="Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n")
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME SMTPUTF8".encode())
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<jörg@example.com>".encode("utf-8"))
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        assert c.reply().code == 250
    got = sink.wait_message_id(message_id(data))
    assert got["rcpt_tos"] == ["jörg@example.com"]
    assert strip_first_received(got["data"])[1] == data
    assert "SMTPUTF8" in got["mail_options"], got["mail_options"]


def test_received_header_is_parseable(gateway, sink):
    gw = gateway()
    data = message(subject="received")
    assert gw.transaction("sender@example.org", ["r@example.com"], data).code == 250
    got = sink.wait_message_id(message_id(data))
    msg = parse(got["data"])
    received = msg.get_all("Received")
    assert len(received) == 1
    assert re.search(r";\s*\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", received[0]), \
        received[0]


def test_delivery_reuses_connections(gateway, sink):
    """Messages to one destination in a row travel over a kept-open
    connection, not one TCP session each."""
    gw = gateway()
    for i in range(5):
        data = message(subject="reuse {}".format(i))
        assert gw.transaction("sender@example.org", ["user@example.com"], data).code == 250
        sink.wait_message_id(message_id(data))
    assert sink.sessions < 5, "{} sessions for 5 messages".format(sink.sessions)
