"""The SMTP dialogue: greeting, EHLO keywords, command order, syntax errors,
pipelining."""
import re

from rawsmtp import dot_stuff, message
from sink import strip_first_received


def test_greeting_names_the_host(gateway):
    gw = gateway()
    with gw.raw() as c:
        r = c.reply()
        assert r.code == 220, r
        assert r.lines[0].startswith("mx.postern.test"), r


def test_ehlo_lists_extensions(gateway):
    gw = gateway({"limits": {"max_message_size": "2M"}})
    with gw.raw() as c:
        c.reply()
        r = c.ehlo()
        assert r.lines[0].startswith("mx.postern.test"), r
        keywords = {line.split()[0].upper(): line.split()[1:] for line in r.lines[1:]}
        for kw in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                   "DSN", "CHUNKING", "STARTTLS"):
            assert kw in keywords, r
        assert keywords["SIZE"] == [str(2 * 1024 * 1024)], r
        assert "AUTH" not in keywords, "AUTH offered without TLS: {}".format(r)


def test_helo_is_accepted(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        assert c.cmd("HELO client.example.org").code == 250


def test_vrfy_is_disabled(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("VRFY bob@local.test")
        assert (r.code, r.enhanced) == (502, "5.5.1"), r


def test_unknown_command(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("FROBNICATE now")
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        assert c.cmd("NOOP").code == 250


def test_mail_before_helo(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_rcpt_before_mail(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("RCPT TO:<user@example.com>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_data_before_rcpt(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        r = c.cmd("DATA")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_bad_sender_syntax(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@@example..org>")
        assert (r.code, r.enhanced) == (553, "5.1.7"), r
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250


def test_bad_recipient_syntax(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        r = c.cmd("RCPT TO:<user@-bad-.example.com>")
        assert (r.code, r.enhanced) == (553, "5.1.3"), r
        r = c.cmd("RCPT TO:<two@@example.com>")
        assert (r.code, r.enhanced) == (553, "5.1.3"), r


def test_unknown_mail_parameter(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.org> FOO=bar")
        assert (r.code, r.enhanced) == (555, "5.5.4"), r


def test_rset_and_quit(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert c.cmd("RSET").code == 250
        # RSET cleared the transaction.
        assert c.cmd("RCPT TO:<user@example.com>").code == 503
        assert c.cmd("QUIT").code == 221
        assert c.closed()


def test_pipelined_transaction(gateway, sink):
    """MAIL, RCPT, RCPT, DATA in one write: the replies come back in order."""
    gw = gateway()
    data = message(subject="pipelined")
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        c.send(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<one@example.com>\r\n"
               b"RCPT TO:<two@example.com>\r\nDATA\r\n")
        codes = [c.reply().code for _ in range(4)]
        assert codes == [250, 250, 250, 354], codes
        c.send(dot_stuff(data) + b"QUIT\r\n")
        r = c.reply()
        assert r.code == 250, r
        assert c.reply().code == 221
    got = sink.wait_for(lambda m: m["message_id"] == _mid(data))[0]
    assert sorted(got["rcpt_tos"]) == ["one@example.com", "two@example.com"]
    assert got["mail_from"] == "sender@example.org"
    assert strip_first_received(got["data"])[1] == data


def test_pipelined_whole_session_with_rejections(gateway, sink):
    """A whole pipelined transaction with one refused recipient: each
    command still gets exactly one reply, in order."""
    gw = gateway()
    data = message(subject="pipelined-2")
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        c.send(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<ok@example.com>\r\n"
               b"RCPT TO:<nobody@elsewhere.example>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(4)]
        assert [r.code for r in replies] == [250, 250, 550, 354], replies
        c.send(dot_stuff(data))
        assert c.reply().code == 250
    got = sink.wait_for(lambda m: m["message_id"] == _mid(data))[0]
    assert got["rcpt_tos"] == ["ok@example.com"]


def _mid(data):
    return re.search(rb"Message-ID: (<[^>]+>)", data).group(1).decode()


def test_two_transactions_and_quit_in_one_write(gateway, sink):
    """A client that pipelines everything, bodies included: the server
    must keep what follows the first CRLF.CRLF and answer in order."""
    gw = gateway()
    first, second = message(subject="first"), message(subject="second")
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<one@example.com>\r\nDATA\r\n" +
               dot_stuff(first) +
               b"MAIL FROM:<b@example.org>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n" +
               dot_stuff(second) + b"QUIT\r\n")
        codes = [r.code for r in c.replies_until_close()]
    assert codes == [250, 250, 354, 250, 250, 250, 354, 250, 221], codes
    a = sink.wait_message_id(_mid(first))
    b = sink.wait_message_id(_mid(second))
    assert (a["mail_from"], a["rcpt_tos"]) == ("a@example.org", ["one@example.com"])
    assert (b["mail_from"], b["rcpt_tos"]) == ("b@example.org", ["two@example.com"])


def test_command_forms(gateway):
    """Verbs are case-insensitive, a space after the colon is tolerated,
    a NUL byte is garbage."""
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        assert c.cmd("ehlo client.example.org").code == 250
        assert c.cmd("mail from: <a@example.org>").code == 250
        assert c.cmd("rcpt TO:<user@example.com>").code == 250
        assert c.cmd("RSET").code == 250
        r = c.cmd(b"MAIL FROM:<a\x00b@example.org>")
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.cmd("MAIL FROM:a@example.org")
        assert r.code == 501, r
