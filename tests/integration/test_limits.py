"""Resource limits: message size, recipients, line lengths, timeouts, error
count, concurrent sessions."""
import socket
import time

from rawsmtp import ConnectionClosed, dot_stuff, message
from sink import message_id


def open_transaction(c, rcpt="user@example.com", mail_params=""):
    c.reply()
    c.ehlo()
    r = c.cmd("MAIL FROM:<sender@example.org>" + mail_params)
    assert r.code == 250, r
    r = c.cmd("RCPT TO:<{}>".format(rcpt))
    assert r.code == 250, r


def barrier(gw, sink):
    """A good message sent after a refused one: once it arrived, anything
    the refused one would have caused has had its chance to arrive too."""
    data = message(subject="barrier")
    with gw.smtp() as s:
        s.sendmail("sender@example.org", ["barrier@example.com"], data)
    sink.wait_message_id(message_id(data))


def test_mail_size_parameter_over_limit(gateway):
    gw = gateway({"limits": {"max_message_size": "100k"}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<sender@example.org> SIZE={}".format(100 * 1024 + 1))
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        assert c.cmd("MAIL FROM:<sender@example.org> SIZE={}".format(50 * 1024)).code == 250


def test_data_over_size_limit(gateway, sink):
    gw = gateway({"limits": {"max_message_size": "100k"}})
    big = message(subject="too big", body=("y" * 998 + "\r\n") * 120)
    assert len(big) > 100 * 1024
    with gw.raw() as c:
        open_transaction(c)
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(big))
        r = c.reply()
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        # The session goes on: a new transaction works.
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
    barrier(gw, sink)
    assert all(m["message_id"] != message_id(big) for m in sink.snapshot())


def test_bdat_over_size_limit(gateway, sink):
    gw = gateway({"limits": {"max_message_size": "100k"}})
    chunk = b"z" * 998 + b"\r\n"
    with gw.raw() as c:
        open_transaction(c)
        for _ in range(60):
            c.send("BDAT {}\r\n".format(len(chunk) * 2).encode() + chunk * 2)
        c.send(b"BDAT 0 LAST\r\n")
        replies = [c.reply() for _ in range(61)]
        # RFC 3030 lets the server refuse at the chunk that crosses the limit
        # or at LAST; either way a 552 5.3.4 and never "queued".
        assert any((r.code, r.enhanced) == (552, "5.3.4") for r in replies), replies[-3:]
        assert not any("queued" in r.text for r in replies), replies
    barrier(gw, sink)
    assert len(sink.snapshot()) == 1


def test_too_many_recipients(gateway, sink):
    gw = gateway({"limits": {"max_recipients": 3}})
    data = message(subject="rcpt limit")
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        codes = []
        for i in range(5):
            r = c.cmd("RCPT TO:<r{}@example.com>".format(i))
            codes.append((r.code, r.enhanced))
        assert codes[:3] == [(250, "2.1.5")] * 3, codes
        assert codes[3:] == [(452, "4.5.3")] * 2, codes
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        assert c.reply().code == 250
    got = sink.wait_message_id(message_id(data))
    assert sorted(got["rcpt_tos"]) == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_command_line_too_long(gateway):
    gw = gateway({"limits": {"max_command_length": 512}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<{}@example.org>".format("a" * 600))
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        # The rest of the long line was discarded; the session still works.
        assert c.cmd("NOOP").code == 250


def test_data_line_too_long(gateway, sink):
    gw = gateway({"limits": {"max_line_length": 1000}})
    data = message(subject="long line", body="a" * 2000 + "\r\nshort\r\n")
    with gw.raw() as c:
        open_transaction(c)
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.6.0"), r
        assert c.cmd("RSET").code == 250
    barrier(gw, sink)
    assert all(m["message_id"] != message_id(data) for m in sink.snapshot())


def test_command_timeout(gateway):
    gw = gateway({"limits": {"timeout_command": "2s"}})
    with gw.raw(timeout=20) as c:
        c.reply()
        c.ehlo()
        r = c.reply(timeout=20)
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert c.closed(timeout=10)


def test_too_many_errors(gateway):
    gw = gateway({"limits": {"max_errors": 3}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        replies = []
        try:
            for _ in range(5):
                r = c.cmd("BOGUS")
                replies.append(r)
                if r.code == 421:
                    break
        except ConnectionClosed:
            pass
        codes = [r.code for r in replies]
        assert 421 in codes, codes
        # 421 after max_errors (3) bad commands, not earlier and not much later.
        assert codes.index(421) in (2, 3), codes
        assert replies[codes.index(421)].enhanced == "4.7.0", replies
        assert c.closed()


def test_max_sessions(gateway):
    gw = gateway({"limits": {"max_sessions": 2}})
    gw.wait_idle()
    first, second = gw.raw(), gw.raw()
    try:
        assert first.reply().code == 220
        assert second.reply().code == 220
        with gw.raw() as third:
            r = third.reply()
            assert (r.code, r.enhanced) == (421, "4.7.0"), r
            assert third.closed()
    finally:
        first.close()
        second.close()
    # Once a slot frees up, new sessions are welcome again.
    deadline = time.monotonic() + 10
    while True:
        with gw.raw() as c:
            r = c.reply()
            if r.code == 220:
                break
        assert time.monotonic() < deadline, "sessions never freed"
        time.sleep(0.1)


def test_client_disconnect_mid_data_delivers_nothing(gateway, sink):
    gw = gateway()
    data = message(subject="cut")
    with gw.raw() as c:
        open_transaction(c)
        assert c.cmd("DATA").code == 354
        c.send(data[: len(data) // 2])
        c.sock.shutdown(socket.SHUT_RDWR)
    barrier(gw, sink)
    assert all(m["message_id"] != message_id(data) for m in sink.snapshot())


def test_command_length_boundary(gateway):
    """max_command_length counts the line without its CRLF."""
    gw = gateway({"limits": {"max_command_length": 512}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        fixed = len("MAIL FROM:<@example.org>")
        at_limit = "MAIL FROM:<{}@example.org>".format("a" * (512 - fixed))
        assert len(at_limit) == 512
        r = c.cmd(at_limit)
        assert r.code != 500, "a 512-byte command refused as too long: {}".format(r)
        assert c.cmd("RSET").code == 250
        r = c.cmd(at_limit.replace("<a", "<aa"))
        assert (r.code, r.enhanced) == (500, "5.5.2"), r


def test_data_line_length_boundary(gateway, sink):
    """max_line_length counts the text line without its CRLF."""
    gw = gateway({"limits": {"max_line_length": 1000}})
    ok = message(subject="at the limit", body="b" * 1000 + "\r\n")
    too_long = message(subject="over the limit", body="b" * 1001 + "\r\n")
    with gw.raw() as c:
        open_transaction(c, rcpt="user@example.com")
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(ok))
        r = c.reply()
        assert r.code == 250, r
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(too_long))
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.6.0"), r
    got = sink.wait_message_id(message_id(ok))
    assert b"b" * 1000 + b"\r\n" in got["data"]


def test_mail_size_at_limit(gateway):
    gw = gateway({"limits": {"max_message_size": "100k"}})
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org> SIZE={}".format(100 * 1024)).code == 250
