"""STARTTLS, implicit TLS (smtps), AUTH PLAIN/LOGIN, the submission port,
and swaks as an independent client."""
import base64
import shutil
import subprocess

import pytest

from rawsmtp import dot_stuff, message, unverified_context
from sink import message_id, strip_first_received

BOB, BOB_PW = "bob@local.test", "bob-Secret-1"


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def ehlo_keywords(reply):
    return {line.split()[0].upper(): [w.upper() for w in line.split()[1:]]
            for line in reply.lines[1:]}


def test_starttls_then_auth_offered(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kw and "AUTH" not in kw
        r = c.starttls()
        assert r.enhanced == "2.0.0", r
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw, kw
        assert {"PLAIN", "LOGIN"} <= set(kw.get("AUTH", [])), kw
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_starttls_discards_pipelined_plaintext(gateway):
    """Commands sent after STARTTLS in the same packet must not be executed
    inside the TLS session (CVE-2011-0411 class)."""
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        c.send(b"STARTTLS\r\nINJECTED\r\n")
        r = c.reply()
        assert r.code == 220, r
        # Either the server dropped the injected command, or it refused to go on.
        try:
            c.sock = unverified_context().wrap_socket(
                c.sock, server_hostname="mx.postern.test")
        except OSError:
            return
        c.buf = b""
        r = c.cmd("NOOP")
        assert r.code == 250, "injected plaintext command answered inside TLS: {}".format(r)
        assert c.cmd("NOOP").code == 250


def test_smtps_speaks_tls_first(gateway):
    gw = gateway()
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        assert c.reply().code == 220
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw
        assert {"PLAIN", "LOGIN"} <= set(kw.get("AUTH", [])), kw


def test_auth_before_tls_refused(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW))
        assert (r.code, r.enhanced) == (538, "5.7.11"), r


def test_auth_plain_good(gateway):
    gw = gateway()
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        c.reply()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW))
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        # A second AUTH in an authenticated session is a sequence error.
        assert c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW)).code == 503


def test_auth_plain_with_initial_response_prompt(gateway):
    gw = gateway()
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        c.reply()
        c.ehlo()
        r = c.cmd("AUTH PLAIN")
        assert r.code == 334, r
        r = c.cmd(plain(BOB, BOB_PW))
        assert (r.code, r.enhanced) == (235, "2.7.0"), r


def test_auth_login_good(gateway):
    gw = gateway()
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(b64(BOB)).code == 334
        r = c.cmd(b64(BOB_PW))
        assert (r.code, r.enhanced) == (235, "2.7.0"), r


def test_auth_bad_password_and_lockout(gateway):
    gw = gateway({"auth": {"max_failures": 2}})
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        c.reply()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain(BOB, "wrong"))
        assert (r.code, r.enhanced) == (535, "5.7.8"), r
        r = c.cmd("AUTH PLAIN " + plain("nobody@local.test", "wrong"))
        codes = [r.code]
        if r.code == 535:
            r = c.cmd("AUTH PLAIN " + plain(BOB, "wrong again"))
            codes.append(r.code)
        assert codes[-1] == 421, codes
        assert c.closed()


def test_auth_cancelled(gateway):
    gw = gateway()
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        c.reply()
        c.ehlo()
        assert c.cmd("AUTH LOGIN").code == 334
        r = c.cmd("*")
        assert r.code == 501, r


def test_auth_bad_base64(gateway):
    gw = gateway()
    with gw.raw(port=gw.smtps_port, tls=True) as c:
        c.reply()
        c.ehlo()
        r = c.cmd("AUTH PLAIN !!!notbase64")
        assert r.code == 501, r


def test_submission_requires_auth(gateway, sink):
    gw = gateway()
    with gw.raw(port=gw.submission_port) as c:
        c.reply()
        c.ehlo()
        r = c.cmd("MAIL FROM:<bob@local.test>")
        assert (r.code, r.enhanced) == (530, "5.7.0"), r
        c.starttls()
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW)).code == 235
        assert c.cmd("MAIL FROM:<bob@local.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        data = message(subject="submission", sender=BOB)
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data))
        assert c.reply().code == 250
    got = sink.wait_message_id(message_id(data))
    assert strip_first_received(got["data"])[1] == data


def test_message_over_starttls_relayed(gateway, sink):
    gw = gateway()
    data = message(subject="over tls")
    with gw.smtp() as s:
        s.starttls(context=unverified_context())
        s.ehlo("client.example.org")
        assert s.sendmail("sender@example.org", ["user@example.com"], data) == {}
    sink.wait_message_id(message_id(data))


def swaks(*args):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    return subprocess.run(["swaks", "--hide-all", "--timeout", "30"] + list(args),
                          capture_output=True, text=True, timeout=90)


def test_swaks_starttls_auth_plain_relays_by_mx(gateway, sink, dns):
    gw = gateway()
    hdr = "<swaks-starttls@test.client>"
    p = swaks("--server", "127.0.0.1:{}".format(gw.port), "--tls",
              "--auth", "PLAIN", "--auth-user", BOB, "--auth-password", BOB_PW,
              "--from", BOB, "--to", "friend@remote.test",
              "--ehlo", "client.example.org", "--header", "Message-Id: " + hdr)
    assert p.returncode == 0, p.stdout + p.stderr
    got = sink.wait_message_id(hdr)
    assert got["rcpt_tos"] == ["friend@remote.test"]


def test_swaks_smtps_auth_login_submission(gateway, sink):
    gw = gateway()
    hdr = "<swaks-smtps@test.client>"
    p = swaks("--server", "127.0.0.1:{}".format(gw.smtps_port), "--tlsc",
              "--auth", "LOGIN", "--auth-user", BOB, "--auth-password", BOB_PW,
              "--from", BOB, "--to", "user@example.com",
              "--ehlo", "client.example.org", "--header", "Message-Id: " + hdr)
    assert p.returncode == 0, p.stdout + p.stderr
    sink.wait_message_id(hdr)


def test_swaks_wrong_password_fails(gateway, sink):
    gw = gateway()
    p = swaks("--server", "127.0.0.1:{}".format(gw.submission_port), "--tls",
              "--auth", "PLAIN", "--auth-user", BOB, "--auth-password", "nope",
              "--from", BOB, "--to", "user@example.com")
    assert p.returncode != 0
