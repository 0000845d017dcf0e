"""Message content: end-of-data detection, bare CR/LF policy, SMTP
smuggling (CVE-2023-51764 family), BDAT/CHUNKING."""
import re

import pytest

from rawsmtp import message
from sink import message_id, strip_first_received

# Fake ends of DATA that lenient servers accept; only CRLF.CRLF is real.
SMUGGLING_VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr": b"\r\n.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
}

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\n"
            b"RCPT TO:<victim@example.com>\r\n"
            b"DATA\r\n"
            b"From: <ceo@example.com>\r\nSubject: smuggled\r\n"
            b"Message-ID: <smuggled@attacker.test>\r\n\r\nsend money\r\n")


def no_bare_cr_lf(data):
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None


def send_data(gw, payload, rcpt="user@example.com"):
    """MAIL/RCPT/DATA, then `payload` written raw (it must carry its own
    terminator) followed by QUIT; returns every reply after the 354."""
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<{}>".format(rcpt)).code == 250
        assert c.cmd("DATA").code == 354
        c.send(payload + b"QUIT\r\n")
        return c.replies_until_close()


def barrier(gw, sink):
    data = message(subject="barrier")
    with gw.smtp() as s:
        s.sendmail("sender@example.org", ["barrier@example.com"], data)
    sink.wait_message_id(message_id(data))


def test_bare_lf_normalized(gateway, sink):
    gw = gateway({"limits": {"bare_newline": "normalize"}})
    mid = "<bare-lf@test.client>"
    payload = (b"From: <s@example.org>\nSubject: bare\r\nMessage-ID: " + mid.encode() +
               b"\r\n\r\nline with bare LF\nline with bare CR\rnormal\r\n.\r\n")
    replies = send_data(gw, payload)
    assert [r.code for r in replies] == [250, 221], replies
    got = sink.wait_message_id(mid)
    body = strip_first_received(got["data"])[1]
    assert no_bare_cr_lf(body), body
    assert b"line with bare LF\r\nline with bare CR\r\nnormal\r\n" in body, body


def test_bare_lf_rejected(gateway, sink):
    gw = gateway({"limits": {"bare_newline": "reject"}})
    mid = "<bare-reject@test.client>"
    payload = (b"Subject: bare\r\nMessage-ID: " + mid.encode() +
               b"\r\n\r\nline with bare LF\nmore\r\n.\r\n")
    replies = send_data(gw, payload)
    assert [r.code for r in replies] == [554, 221], replies
    assert replies[0].enhanced == "5.5.2", replies
    barrier(gw, sink)
    assert all(m["message_id"] != mid for m in sink.snapshot())


@pytest.mark.parametrize("policy", ["normalize", "reject"])
@pytest.mark.parametrize("variant", sorted(SMUGGLING_VARIANTS))
def test_smtp_smuggling(gateway, sink, policy, variant):
    """One DATA with a fake end-of-data and a second transaction inside:
    the sink gets at most the ONE real message and the smuggled commands
    never get replies of their own."""
    gw = gateway({"limits": {"bare_newline": policy}})
    mid = "<smuggle-{}-{}@test.client>".format(policy, variant)
    payload = (b"From: <sender@example.org>\r\nSubject: carrier\r\nMessage-ID: " +
               mid.encode() + b"\r\n\r\nhello" + SMUGGLING_VARIANTS[variant] + SMUGGLED +
               b"\r\n.\r\n")
    replies = send_data(gw, payload)
    # Exactly one reply for the one DATA, then QUIT's 221.
    assert len(replies) == 2, replies
    assert replies[1].code == 221, replies
    assert replies[0].code in (250, 554), replies
    if policy == "reject":
        assert (replies[0].code, replies[0].enhanced) == (554, "5.5.2"), replies
    barrier(gw, sink)
    msgs = sink.snapshot()
    assert not [m for m in msgs if m["mail_from"] == "evil@attacker.test"], "smuggled message"
    assert not [m for m in msgs if "victim@example.com" in m["rcpt_tos"]], "smuggled message"
    assert not [m for m in msgs if m["message_id"] == "<smuggled@attacker.test>"]
    carried = [m for m in msgs if m["message_id"] == mid]
    if replies[0].code == 250:
        assert len(carried) == 1, carried
        body = strip_first_received(carried[0]["data"])[1]
        # The smuggled commands stayed inside the one message body.
        assert b"MAIL FROM:<evil@attacker.test>" in body
        assert no_bare_cr_lf(body), body
    else:
        assert carried == []


def test_dot_only_ends_at_crlf_dot_crlf(gateway, sink):
    """".\\r\\n" that is not at the start of a line does not end DATA."""
    gw = gateway()
    mid = "<dots@test.client>"
    payload = (b"Subject: dots\r\nMessage-ID: " + mid.encode() +
               b"\r\n\r\nnot the end .\r\nstill not.\r\n..stuffed\r\n.\r\n")
    replies = send_data(gw, payload)
    assert [r.code for r in replies] == [250, 221], replies
    got = sink.wait_message_id(mid)
    assert strip_first_received(got["data"])[1].endswith(
        b"not the end .\r\nstill not.\r\n.stuffed\r\n")


def test_bdat_chunks(gateway, sink):
    gw = gateway()
    data = message(subject="bdat", body="first part\r\n.dot line not stuffed in BDAT\r\n" +
                   ("z" * 70 + "\r\n") * 80 + "end\r\n")
    a, b = data[:700], data[700:]
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        c.send("BDAT {}\r\n".format(len(a)).encode() + a)
        assert c.reply().code == 250
        c.send("BDAT {} LAST\r\n".format(len(b)).encode() + b)
        r = c.reply()
        assert r.code == 250 and "queued" in r.text, r
    got = sink.wait_message_id(message_id(data))
    assert strip_first_received(got["data"])[1] == data


def test_bdat_pipelined_in_one_write(gateway, sink):
    gw = gateway()
    data = message(subject="bdat-pipelined", body="one\r\ntwo\r\nthree\r\n")
    parts = [data[:100], data[100:200], data[200:]]
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        buf = b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n"
        for i, p in enumerate(parts):
            last = " LAST" if i == len(parts) - 1 else ""
            buf += "BDAT {}{}\r\n".format(len(p), last).encode() + p
        c.send(buf)
        replies = [c.reply() for _ in range(5)]
        assert [r.code for r in replies] == [250] * 5, replies
        assert "queued" in replies[-1].text
    got = sink.wait_message_id(message_id(data))
    assert strip_first_received(got["data"])[1] == data


def test_bdat_then_data_is_refused(gateway):
    """DATA inside a BDAT transaction is a sequence error (RFC 3030)."""
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r


def test_many_messages_in_one_session(gateway, sink):
    gw = gateway()
    mids = []
    with gw.smtp() as s:
        for i in range(20):
            data = message(subject="n{}".format(i))
            mids.append(message_id(data))
            s.sendmail("sender@example.org", ["user{}@example.com".format(i)], data)
    sink.wait_for(lambda m: m["message_id"] in mids, count=20)


@pytest.mark.parametrize("policy", ["normalize", "reject"])
@pytest.mark.parametrize("fake_end", [b".\n", b".\r", b".\r\r\n"], ids=["dot-lf", "dot-cr", "dot-cr-crlf"])
def test_smuggling_at_the_start_of_data(gateway, sink, policy, fake_end):
    """The fake terminator as the very first line of DATA (right after the
    DATA command's CRLF)."""
    gw = gateway({"limits": {"bare_newline": policy}})
    replies = send_data(gw, fake_end + SMUGGLED + b"\r\n.\r\n")
    assert len(replies) == 2 and replies[1].code == 221, replies
    assert replies[0].code in (250, 554), replies
    barrier(gw, sink)
    msgs = [m for m in sink.snapshot() if m["rcpt_tos"] != ["barrier@example.com"]]
    assert not [m for m in msgs if m["mail_from"] == "evil@attacker.test"], "smuggled message"
    assert not [m for m in msgs if "victim@example.com" in m["rcpt_tos"]], "smuggled message"
    assert len(msgs) == (1 if replies[0].code == 250 else 0), msgs
