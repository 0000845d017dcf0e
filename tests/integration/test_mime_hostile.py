"""Hostile MIME over SMTP: every message of the shared MIME test suite and
generated monsters (nesting 1,000 deep, 10,000 parts, a 2 MiB header
block, broken base64, a zip bomb) go through the whole content stage —
MIME engine, virus engine, content rules — and each gets a final reply,
250 or 5xx: no hang (generous socket timeouts), no 4xx, no crash (the
module's gateway must stay up and exit cleanly without sanitizer reports).
"""
import base64
import io
import os
import zipfile

import pytest

from rawsmtp import make_message_id
from test_content_smtp import RULES
from test_virus_smtp import DB, RCPT, SENDER, module_gateway, with_attachment

SUITE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                     "shared", "testsuites", "mime"))
MAX_SIZE = 8 << 20
REPLY_TIMEOUT = 300.0


def suite_messages():
    out = []
    for root, _, names in os.walk(SUITE):
        for name in names:
            if name != "README.md":
                out.append(os.path.relpath(os.path.join(root, name), SUITE))
    return sorted(out)


SUITE_MESSAGES = suite_messages() if os.path.isdir(SUITE) else []


@pytest.fixture(scope="module")
def hostile_gw(postern_bin, base_dir, password_hashes, dns_server):
    rules = os.path.join(base_dir, "hostile.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    overrides = {
        "virus": {"enabled": True, "database": DB},
        "rules": {"file": rules},
        "limits": {"max_message_size": "8M", "timeout_data": "5m"},
    }
    with module_gateway(postern_bin, base_dir, password_hashes, dns_server, "hostile",
                        overrides) as pair:
        yield pair


def crlf(data):
    """SMTP carries CRLF lines: bare LF (and bare CR) become CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def final_reply(gw, data):
    with gw.raw(timeout=REPLY_TIMEOUT) as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<{}>".format(SENDER)).code == 250
        assert c.cmd("RCPT TO:<{}>".format(RCPT)).code == 250
        assert c.cmd("DATA").code == 354
        if data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        c.send(data + b".\r\n")
        r = c.reply()
        # The session goes on after the verdict.
        assert c.cmd("NOOP").code == 250
        c.cmd("QUIT")
    assert r.code == 250 or 500 <= r.code < 600, r
    return r


@pytest.mark.skipif(not SUITE_MESSAGES, reason="no MIME test suite at " + SUITE)
@pytest.mark.parametrize("name", SUITE_MESSAGES)
def test_suite_message(hostile_gw, name):
    gw, _ = hostile_gw
    with open(os.path.join(SUITE, name), "rb") as f:
        data = crlf(f.read())
    final_reply(gw, data)


def headers(subject, mid=None, extra=""):
    return ("From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: {}\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n{}").format(
                SENDER, RCPT, subject, mid or make_message_id(), extra).encode()


def deep_nesting(depth):
    """multipart/mixed inside multipart/mixed, `depth` levels, a text leaf."""
    out = [headers("nested {}".format(depth),
                   extra="Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")]
    for i in range(1, depth):
        out.append("--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n".format(
            i - 1, i).encode())
    out.append("--b{}\r\nContent-Type: text/plain\r\n\r\ndeep down\r\n".format(depth - 1).encode())
    for i in range(depth - 1, -1, -1):
        out.append("--b{}--\r\n".format(i).encode())
    return b"".join(out)


def many_parts(n):
    out = [headers("{} parts".format(n),
                   extra="Content-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n")]
    for i in range(n):
        out.append("--sep\r\nContent-Type: text/plain\r\n\r\npart {}\r\n".format(i).encode())
    out.append(b"--sep--\r\n")
    return b"".join(out)


def huge_header_block(size):
    line = b"X-Filler: " + b"f" * 88 + b"\r\n"           # 100 bytes
    filler = line * (size // len(line))
    return headers("2 MiB of headers") + filler + b"\r\nbody\r\n"


def broken_base64():
    body = (b"SGVsbG8gd29ybGQ=\r\n!!!!not*base64&&&&\r\n====\r\nQUJD\x00\x01RA\r\n"
            b"=?=?=?\r\n" + b"A" * 10001 + b"\r\n")
    return (headers("broken base64", extra="Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n")
            + b"--x\r\nContent-Type: application/octet-stream; name=\"b.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body +
            b"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"@@@@\r\n--x--\r\n")


def zip_bomb(megabytes):
    """A zip holding `megabytes` MB of zeros (about 100 KB compressed per 100 MB)."""
    buf = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            for _ in range(megabytes):
                f.write(chunk)
    return buf.getvalue()


def nested_zip_bomb():
    """Ten copies of a 100 MB zip of zeros inside one zip: 1 GB unpacked."""
    inner = zip_bomb(100)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for i in range(10):
            z.writestr("part{}.zip".format(i), inner)
    return buf.getvalue()


GENERATED = {
    "nesting-1000": lambda: deep_nesting(1000),
    "parts-10000": lambda: many_parts(10000),
    "header-block-2MiB": lambda: huge_header_block(2 << 20),
    "broken-base64": broken_base64,
    "zip-bomb-100MB": lambda: with_attachment("zeros.zip", zip_bomb(100), subject="zip bomb"),
    "nested-zip-bomb-1GB": lambda: with_attachment("zeros.zip", nested_zip_bomb(),
                                                   subject="nested zip bomb"),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_message(hostile_gw, name):
    gw, _ = hostile_gw
    data = GENERATED[name]()
    assert len(data) < MAX_SIZE
    final_reply(gw, data)


def test_gateway_still_serves(hostile_gw):
    """After all of the above, a plain message is still accepted and delivered."""
    gw, sink = hostile_gw
    mid = make_message_id()
    data = headers("after the storm", mid=mid) + b"\r\nstill here\r\n"
    assert final_reply(gw, data).code == 250
    sink.wait_message_id(mid, timeout=60)


def test_zip_bomb_is_small():
    """The bomb really is one: a tiny attachment that unpacks to 100 MB."""
    z = zip_bomb(100)
    assert len(z) < 200 << 10
    with zipfile.ZipFile(io.BytesIO(z)) as f:
        assert f.infolist()[0].file_size == 100 << 20
    assert len(base64.b64encode(z)) < 300 << 10
