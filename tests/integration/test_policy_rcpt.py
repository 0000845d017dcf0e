"""RCPT-stage defence through the real binary: recipient validation by
callout to the protected server (the sink refuses local parts starting with
"reject"), the tarpit and the harvest limit, and greylisting.

The client is 127.0.0.1, which the base config does not trust: the engines
judge it as inbound mail."""
import time

from rawsmtp import ConnectionClosed


def open_transaction(gw, sender="sender@origin.example"):
    c = gw.raw()
    assert c.reply().code == 220
    c.ehlo()
    r = c.cmd("MAIL FROM:<{}>".format(sender))
    assert r.code == 250, r
    return c


def test_callout_validates_recipients(gateway, sink):
    gw = gateway({"recipients": {"validation": "callout"}})
    with open_transaction(gw) as c:
        r = c.cmd("RCPT TO:<alice@example.com>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<reject-bob@example.com>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "<reject-bob@example.com>: Recipient address rejected: User unknown" in r.text
        # a temporary failure of the backend never refuses mail
        r = c.cmd("RCPT TO:<tempfail-carol@example.com>")
        assert r.code == 250, r
        # the cached answer is the same
        r = c.cmd("RCPT TO:<reject-bob@example.com>")
        assert r.code == 550, r
        c.cmd("QUIT")


def test_harvest_ends_with_421(gateway, sink):
    gw = gateway({"recipients": {"validation": "callout", "tarpit_after": 2,
                                 "tarpit_delay": "20ms", "max_unknown": 10}})
    replies = []
    with open_transaction(gw) as c:
        for i in range(30):
            try:
                r = c.cmd("RCPT TO:<reject-{}@example.com>".format(i))
            except ConnectionClosed:
                break
            replies.append(r)
            if r.code == 421:
                break
        assert c.closed()
    codes = [(r.code, r.enhanced) for r in replies]
    assert codes == [(550, "5.1.1")] * 9 + [(421, "4.7.0")], codes
    assert "Too many unknown recipients" in replies[-1].text


def test_greylisting_defers_then_accepts(gateway, sink):
    gw = gateway({"greylist": {"enabled": True, "delay": "1s", "window": "1h"}})
    with open_transaction(gw) as c:
        r = c.cmd("RCPT TO:<alice@example.com>")
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        assert "Greylisted" in r.text
        c.cmd("QUIT")
    accepted = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open_transaction(gw) as c:
            r = c.cmd("RCPT TO:<alice@example.com>")
            c.cmd("QUIT")
        if r.code == 250:
            accepted = r
            break
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        time.sleep(0.3)
    assert accepted is not None, "the retry was never accepted"
    # the network retried properly: it is whitelisted for other triples
    with open_transaction(gw, sender="someone-else@origin.example") as c:
        r = c.cmd("RCPT TO:<bob@example.com>")
        assert r.code == 250, r
        c.cmd("QUIT")
