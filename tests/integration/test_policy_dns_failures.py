"""The defences when DNS does not answer at all: every DNS-using engine on
(DNSBL, RHSBL, HELO resolvable, reverse DNS with FCrDNS, sender domain
resolvable, SPF), with refusing actions, and a name server that never
replies. Mail must still be accepted and relayed (the DNS timeouts and the
[dnsbl] deadline bound every wait; no lookup failure counts against the
client), SPF's temperror does what [spf] temperror says, and delivery by MX
defers rather than bounces.

Two silent servers: a bound socket that never reads (UDP and TCP), and
tests/tools/dnsd.py with every name the engines ask about set to TIMEOUT.
The replies are awaited with generous client timeouts: the protocol shows
there is no stall (a reply comes), not a stopwatch."""
import socket

import pytest

from conftest import DnsServer
from gateway import wait_until
from rawsmtp import dot_stuff, message
from sink import message_id

CLIENT_TIMEOUT = 90.0     # far above the sum of every DNS timeout of a transaction
HELO = "client.example.org"
SENDER = "sender@example.org"

# Every name the engines look up for a client 127.0.0.1 saying HELO HELO
# and sending from SENDER, and the domain delivered by MX.
TIMEOUT_ZONE = """\
1.0.0.127.bl.test            TIMEOUT
1.0.0.127.in-addr.arpa       TIMEOUT
client.example.org           TIMEOUT
example.org                  TIMEOUT
example.org.dbl.test         TIMEOUT
remote.test                  TIMEOUT
"""


class SilentServer:
    """A 'name server' that never answers: UDP queries are never read, TCP
    connections are never accepted past the kernel's backlog."""

    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)

    @property
    def servers(self):
        return "127.0.0.1:{}".format(self.port)

    def stop(self):
        self.udp.close()
        self.tcp.close()


@pytest.fixture(params=["silent-socket", "dnsd-timeout"])
def dead_dns(request, workdir):
    if request.param == "silent-socket":
        d = SilentServer()
    else:
        d = DnsServer(workdir, TIMEOUT_ZONE)
    yield d
    d.stop()


def engines(dead, temperror):
    """Every DNS-using engine on, with actions that would refuse on a
    finding: only a lookup failure taken as a finding could refuse."""
    return {
        "dns": {"servers": dead.servers, "timeout_ms": 500, "tries": 1},
        "log": {"level": "debug"},
        "dnsbl": {"enabled": True, "action": "reject", "reject_at_rcpt": False,
                  "timeout": "2s"},
        'dnsbl "bl.test"': {"match": "any"},
        "rhsbl": {"enabled": True, "action": "reject"},
        'rhsbl "dbl.test"': {"match": "any"},
        "helo": {"enabled": True, "action": "reject", "require_fqdn": True,
                 "require_resolvable": True},
        "rdns": {"enabled": True, "action": "reject", "require_ptr": True,
                 "require_fcrdns": True},
        "sender": {"enabled": True, "action": "reject", "require_resolvable": True},
        "spf": {"enabled": True, "temperror": temperror, "header": True},
    }


def transaction(gw, data):
    """MAIL, RCPT and DATA on one session; the replies, in order."""
    with gw.raw(timeout=CLIENT_TIMEOUT) as c:
        replies = [c.reply()]
        replies.append(c.cmd("EHLO " + HELO))
        replies.append(c.cmd("MAIL FROM:<{}>".format(SENDER)))
        if replies[-1].code != 250:
            return replies
        replies.append(c.cmd("RCPT TO:<user@example.com>"))
        replies.append(c.cmd("DATA"))
        c.send(dot_stuff(data))
        replies.append(c.reply())
        c.cmd("QUIT")
    return replies


def test_mail_accepted_and_relayed_with_dns_silent(gateway, sink, dead_dns):
    gw = gateway(engines(dead_dns, "tag"))
    data = message(subject="dns is down", sender=SENDER)
    replies = transaction(gw, data)
    assert [r.code for r in replies] == [220, 250, 250, 250, 354, 250], replies
    got = sink.wait_message_id(message_id(data))
    assert b"Received-SPF: temperror" in got["data"], got["data"][:800]
    log = gw.log_text()
    # every engine really asked, and let the failure pass
    assert "rdns client=127.0.0.1: look-up failed" in log, log[-3000:]
    assert "helo client=127.0.0.1: cannot resolve client.example.org" in log, log[-3000:]
    assert "sender_domain client=127.0.0.1 domain=example.org: look-up failed" in log, log[-3000:]
    assert "tag stage=mail engine=spf" in log and "SPF_TEMPERROR" in log, log[-3000:]
    assert "reject stage=" not in log and "defer stage=" not in log, log[-3000:]


def test_spf_temperror_ignored(gateway, sink, dead_dns):
    gw = gateway(engines(dead_dns, "ignore"))
    data = message(subject="dns is down, temperror ignored", sender=SENDER)
    replies = transaction(gw, data)
    assert [r.code for r in replies] == [220, 250, 250, 250, 354, 250], replies
    sink.wait_message_id(message_id(data))
    assert "spf client=127.0.0.1 SPF temperror" in gw.log_text()


def test_spf_temperror_defers_when_configured(gateway, sink, dead_dns):
    gw = gateway(engines(dead_dns, "defer"))
    with gw.raw(timeout=CLIENT_TIMEOUT) as c:
        assert c.reply().code == 220
        assert c.cmd("EHLO " + HELO).code == 250
        mail = c.cmd("MAIL FROM:<{}>".format(SENDER))
        assert (mail.code, mail.enhanced) == (451, "4.7.24"), mail
        assert "SPF temporary error" in mail.text, mail
        # the session goes on: the client may try again later on it
        assert c.cmd("NOOP").code == 250
        assert c.cmd("MAIL FROM:<{}>".format(SENDER)).code == 451
        c.cmd("QUIT")
    assert "defer stage=mail engine=spf" in gw.log_text()


def test_delivery_by_mx_defers_with_dns_silent(gateway, sink, dead_dns):
    """A trusted client relays to a domain delivered by MX; the MX lookup
    times out: the message stays queued with a 4xx, nothing bounces."""
    gw = gateway({
        "relay": {"trusted_networks": "127.0.0.0/8"},
        "dns": {"servers": dead_dns.servers, "timeout_ms": 500, "tries": 1},
        "queue": {"retry_min": "1h", "retry_max": "1h", "lifetime": "1h"},
    })
    data = message(subject="by mx, dns down", to="friend@remote.test")
    r = gw.transaction(SENDER, ["friend@remote.test"], data)
    assert r.code == 250 and r.queue_id, r

    def deferred():
        for m in gw.queue_list():
            if m["id"] == r.queue_id and m["attempts"] >= 1 and not m["active"]:
                return m
        return None

    m = wait_until(deferred, timeout=60, what="the first delivery attempt")
    assert m["last_error"][:1] == "4", m
    (rcpt,) = m["recipients"]
    assert rcpt["state"] == "pending", m
    assert rcpt["last_reply"][:1] == "4", m
    # no bounce: nothing but the message itself is queued, nothing was sent
    assert [q["id"] for q in gw.queue_list()] == [r.queue_id]
    assert "queue: bounce" not in gw.log_text()
    assert not sink.messages, sink.messages
