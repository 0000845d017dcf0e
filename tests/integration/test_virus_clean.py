"""The virus "clean" action over SMTP: a mail with a text part and an
infected attachment is accepted and delivered with the text part
byte-identical, the attachment replaced by a text/plain note naming the
virus, and an X-Postern-Virus-Cleaned header; a mail whose only part is
infected cannot be cleaned and is held (quarantined) instead."""
import base64
import os
import re

import pytest

from conftest import REPO
from rawsmtp import make_message_id
from sink import strip_first_received
from test_virus_smtp import (RCPT, SENDER, TESTFILES, VERSION_HEADER, virus_config,
                             with_attachment)

CLAM_ZIP = os.path.join(TESTFILES, "clam.zip")
SESSION_C = os.path.join(REPO, "src", "smtp", "smtp_session.c")
NOTE = re.compile(rb"Content-Type: text/plain; charset=us-ascii\r\nContent-Disposition: inline\r\n\r\n"
                  rb"The attachment clam\.zip was removed by postern: virus (\S+) was found in it\.\r\n")


def clean_is_wired():
    with open(SESSION_C) as f:
        return "content_clean_parts" in f.read()


pytestmark = [
    pytest.mark.skipif(not os.path.exists(CLAM_ZIP), reason="clamav-testfiles is not installed"),
    pytest.mark.skipif(not clean_is_wired(),
                       reason="session_content_done (src/smtp/smtp_session.c) does not call "
                              "content_clean_parts(s->env, raw, len, r, why, sizeof(why)) "
                              "for CONTENT_CLEAN yet"),
]


def test_clean_replaces_infected_attachment(gateway, sink):
    gw = gateway(virus_config(action="clean"))
    with open(CLAM_ZIP, "rb") as f:
        zipdata = f.read()
    mid = make_message_id()
    data = with_attachment("clam.zip", zipdata, subject="cleaned", mid=mid, ctype="application/zip")
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250 and r.queue_id, r
    got = sink.wait_message_id(mid)
    _, rest = strip_first_received(got["data"])
    note = NOTE.search(rest)
    assert note, rest[-2000:]
    assert note.group(1).startswith(b"Postern.Test.ClamAV-Test-File."), note.group(1)
    # Exactly the original with the marks added and the zip part replaced.
    cleaned = b"X-Postern-Virus-Cleaned: clam.zip removed\r\n"
    assert rest.startswith(cleaned), rest[:300]
    version = VERSION_HEADER.match(rest, len(cleaned))
    assert version, rest[:300]
    zip_start = data.index(b"--b0undary\r\nContent-Type: application/zip")
    zip_start += len(b"--b0undary\r\n")
    zip_end = data.rindex(b"\r\n--b0undary--\r\n")
    expect = (cleaned + version.group(0) + data[:zip_start] + note.group(0) + data[zip_end:])
    assert rest == expect
    # The text part is byte-identical.
    text_part = b"--b0undary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n\r\n"
    assert text_part in data and text_part in rest
    assert zipdata[:4] not in rest and b"UEsDB" not in rest
    assert not [m for m in gw.queue_list() if m["id"] == r.queue_id and m.get("held")]


def test_clean_impossible_is_quarantined(gateway, sink):
    """The infected file is the whole message: nothing to keep, so it is held."""
    gw = gateway(virus_config(action="clean"))
    with open(CLAM_ZIP, "rb") as f:
        zipdata = f.read()
    mid = make_message_id()
    data = ("From: <{}>\r\nTo: <{}>\r\nSubject: whole\r\nMessage-ID: {}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: application/zip; name=\"clam.zip\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").format(SENDER, RCPT, mid).encode()
    data += base64.encodebytes(zipdata).replace(b"\n", b"\r\n")
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250 and r.queue_id, r
    (held,) = [m for m in gw.queue_list() if m["id"] == r.queue_id]
    assert held["held"] is True, held
    assert mid not in {m["message_id"] for m in sink.snapshot()}
