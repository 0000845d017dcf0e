"""[perimeter]: mail that reaches the gateway through a trusted front relay
is judged by the first Received hop outside the relays, at the end of
DATA: DNSBL, SPF (with that hop's HELO) and the connection rate. The
relay itself (127.0.0.1, every client of this suite) is not judged; a
client that is not a relay is judged as before and its headers are not
read."""
import pytest

from conftest import ZONE, DnsServer
from rawsmtp import dot_stuff, message
from sink import message_id

PERIMETER_ZONE = ZONE + """\
# outside hops: 192.0.2.99 listed on bl.test; the relay 127.0.0.1 on relay.test
99.2.0.192.bl.test      A 127.0.0.2
1.0.0.127.relay.test    A 127.0.0.2
# SPF: the relay would pass for perimfail.test and fail for perimpass.test
perimfail.test          TXT "v=spf1 ip4:127.0.0.1 -all"
perimfail.test          MX 10 mx.remote.test
perimpass.test          TXT "v=spf1 ip4:192.0.2.50 -all"
perimpass.test          MX 10 mx.remote.test
"""


@pytest.fixture
def perimeter_dns(workdir):
    d = DnsServer(workdir, PERIMETER_ZONE)
    yield d
    d.stop()


def dns_section(d):
    return {"servers": d.servers, "timeout_ms": 1000, "tries": 2}


def relayed(hop, helo="mail.sender.example", sender="sender@example.org", subject="relayed"):
    """A message as the front relay hands it on: its own Received on top
    (the hop it took the message from), an older one of the sender's side below."""
    trace = ("Received: from {helo} ({helo} [{hop}])\r\n"
             "\tby front.corp.example (Postfix) with ESMTP id 4Xyz; Mon, 1 Jan 2024 00:00:01 +0000\r\n"
             "Received: from workstation ([10.9.8.7]) by {helo}; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
             ).format(helo=helo, hop=hop)
    return trace.encode() + message(subject=subject, sender=sender)


def send(c, data, sender="sender@example.org"):
    """One transaction on an open session; the reply to the end of DATA."""
    r = c.cmd("MAIL FROM:<{}>".format(sender))
    assert r.code == 250, r
    r = c.cmd("RCPT TO:<user@example.com>")
    assert r.code == 250, r
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(data))
    return c.reply()


def test_dnsbl_judges_the_first_untrusted_hop(gateway, sink, perimeter_dns):
    gw = gateway({"dns": dns_section(perimeter_dns), "perimeter": {"relays": "127.0.0.1"},
                  'dnsbl "bl.test"': {"match": "any"}, 'dnsbl "relay.test"': {"match": "any"}})
    listed, clean = relayed("192.0.2.99"), relayed("192.0.2.50")
    with gw.raw() as c:
        # the relay is listed on relay.test: not judged, no refusal at RCPT
        assert c.reply().code == 220
        c.ehlo()
        r = send(c, listed)
        assert (r.code, r.enhanced) == (554, "5.7.1"), r
        assert "client [192.0.2.99] blocked using bl.test" in r.text, r
        # the relay stays connected; the next message is judged by its own hop
        r = send(c, clean)
        assert r.code == 250, r
        c.cmd("QUIT")
    sink.wait_message_id(message_id(clean))
    log = gw.log_text()
    assert "perimeter session=" in log
    assert "relay=127.0.0.1 client=192.0.2.99 helo=mail.sender.example" in log
    assert "relay=127.0.0.1 client=192.0.2.50" in log
    assert "reject stage=data engine=dnsbl client=192.0.2.99" in log


def test_client_not_a_relay_judged_as_before(gateway, sink, perimeter_dns):
    overrides = {"dns": dns_section(perimeter_dns), "perimeter": {"relays": "192.0.2.250"},
                 'dnsbl "bl.test"': {"match": "any"}}
    gw = gateway(overrides)
    data = relayed("192.0.2.99")
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        # its Received headers are not read: the listed hop in them does not count
        assert send(c, data).code == 250
        c.cmd("QUIT")
    sink.wait_message_id(message_id(data))
    assert "perimeter session=" not in gw.log_text()

    # its own address is what the lists are asked about, refused at RCPT as before
    overrides['dnsbl "relay.test"'] = {"match": "any"}
    gw2 = gateway(overrides, name="gw2")
    with gw2.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd("RCPT TO:<user@example.com>")
        assert r.code == 554, r
        assert "client [127.0.0.1] blocked using relay.test" in r.text, r
        c.cmd("QUIT")


def test_spf_of_the_hop_at_data(gateway, sink, perimeter_dns):
    gw = gateway({"dns": dns_section(perimeter_dns), "perimeter": {"relays": "127.0.0.1"},
                  "spf": {"enabled": True}})
    fail = relayed("192.0.2.50", sender="someone@perimfail.test")
    ok = relayed("192.0.2.50", sender="someone@perimpass.test")
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo("relay.corp.example")
        # SPF would let the relay send for perimfail.test: the hop is not allowed to
        r = send(c, fail, sender="someone@perimfail.test")
        assert (r.code, r.enhanced) == (550, "5.7.23"), r
        assert "SPF fail" in r.text, r
        # ... and would refuse the relay for perimpass.test: the hop is allowed to
        r = send(c, ok, sender="someone@perimpass.test")
        assert r.code == 250, r
        c.cmd("QUIT")
    got = sink.wait_message_id(message_id(ok))["data"]
    # on top, above our Received (RFC 7208 9.1), for the hop and with its HELO
    assert got.startswith(b"Received-SPF: pass"), got[:600]
    head = got.split(b"\r\n\r\n", 1)[0]
    assert b"client-ip=192.0.2.50" in head, head
    assert b"helo=mail.sender.example" in head, head
    assert head.count(b"Received-SPF:") == 1, head
    assert b"\r\nReceived: from relay.corp.example ([127.0.0.1])" in head, head


def test_connection_rate_counts_the_hop(gateway, sink):
    gw = gateway({"perimeter": {"relays": "127.0.0.1"},
                  "connlimit": {"rate": 1, "window": "1m", "ban_step": "1m", "ban_max": "10m"}})
    first, second = relayed("192.0.2.60"), relayed("192.0.2.60")
    other = relayed("192.0.2.61")
    # the relay's own connections are not counted: the start-up probe and these
    for _ in range(2):
        with gw.raw() as c:
            assert c.reply().code == 220
            c.cmd("QUIT")
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        assert send(c, first).code == 250
        r = send(c, second)
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        assert "Too many connections from [192.0.2.60], try again in" in r.text, r
        # only that message: the relay is still connected, other hops get through
        assert send(c, other).code == 250
        c.cmd("QUIT")
    bans = gw.cli_json("bans", "list")
    keys = [b["key"] for b in bans]
    assert "ip:192.0.2.60" in keys, bans
    assert "ip:127.0.0.1" not in keys, bans
    sink.wait_message_id(message_id(other))
