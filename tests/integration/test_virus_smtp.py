"""The virus engine over SMTP: every file of clamav-testfiles is refused
at the end of DATA with the virus name, clean mail passes untouched, the
other actions (drop, quarantine, tag), sampling, and a signature reload
while mail keeps flowing. The signatures are tests/clamav-db (see its
README); the EICAR string is taken from its .ndb file, never written
here as text.

The module's gateway for the test files is started once (module scope)
and checked like the `gateway` fixture's: clean exit, no sanitizer report.
"""
import base64
import contextlib
import os
import re
import shutil
import tempfile
import threading
import time

import pytest

from conftest import REPO, base_sections
from gateway import Gateway, free_port, give_to_daemon, merge, wait_until
from rawsmtp import ConnectionClosed, dot_stuff, make_message_id, message
from sink import Sink, message_id, strip_first_received

DB = os.path.join(REPO, "tests", "clamav-db")
TESTFILES = "/usr/share/clamav-testfiles"
TESTFILE_NAMES = sorted(os.listdir(TESTFILES)) if os.path.isdir(TESTFILES) else []
SENDER = "sender@example.org"
RCPT = "user@example.com"
VIRUS_REPLY = re.compile(r"virus found: (\S+\.UNOFFICIAL)")


def ndb_pattern(name):
    """The bytes of a body signature of tests/clamav-db/postern-test.ndb."""
    with open(os.path.join(DB, "postern-test.ndb")) as f:
        for line in f:
            fields = line.strip().split(":")
            if fields[0] == name:
                return bytes.fromhex(fields[3])
    raise KeyError(name)


EICAR = ndb_pattern("Eicar-Test-Signature.Body")


def with_attachment(filename, data, subject="attachment", mid=None,
                    ctype="application/octet-stream"):
    """A multipart/mixed message: a text part and `data` as a base64 attachment."""
    mid = mid or make_message_id()
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = ("From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: {}\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n"
            "--b0undary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "See the attachment.\r\n\r\n"
            "--b0undary\r\nContent-Type: {}; name=\"{}\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"{}\"\r\n\r\n").format(
                SENDER, RCPT, subject, mid, ctype, filename, filename)
    return head.encode() + b64 + b"\r\n--b0undary--\r\n"


def eicar_mail(subject="eicar", mid=None):
    return with_attachment("eicar.txt", EICAR, subject=subject, mid=mid, ctype="text/plain")


VERSION_HEADER = re.compile(rb"X-Postern-Virus-Scanned: ((?:daily=\d+ )?sigs=\d+ loaded=\S+Z)\r\n")


def strip_version_header(rest):
    """(version, rest without it): a scanned message gets exactly one
    X-Postern-Virus-Scanned header, right under the gateway's Received."""
    m = VERSION_HEADER.match(rest)
    assert m, rest[:300]
    rest = rest[m.end():]
    assert not re.search(rb"(?im)^X-Postern-Virus-Scanned:", rest), rest[:2000]
    return m.group(1).decode(), rest


def virus_config(**keys):
    virus = {"enabled": True, "database": DB}
    virus.update(keys)
    return {"virus": virus, "limits": {"max_message_size": "8M"}}


def gateway_problems(gw):
    """What the `gateway` fixture's teardown would fail on."""
    was_running = gw.running()
    rc = gw.stop()
    problems = []
    if not gw.was_ready:
        return problems
    if was_running and rc != 0:
        problems.append("postern exited with {} on SIGTERM".format(rc))
    elif not was_running:
        problems.append("postern died with status {}".format(gw.proc.returncode))
    problems.extend(gw.sanitizer_reports()[:20])
    return problems


@contextlib.contextmanager
def module_gateway(postern_bin, base_dir, hashes, dns_server, name, overrides):
    """A gateway and its sink shared by the tests of one module."""
    d = tempfile.mkdtemp(prefix=name + ".", dir=base_dir)
    os.chmod(d, 0o755)
    sink = Sink(free_port()).start()
    sections = base_sections(d, sink.port, hashes, dns_server.servers if dns_server else None)
    gw = Gateway(postern_bin, d, merge(sections, overrides))
    try:
        gw.start()
        yield gw, sink
    finally:
        problems = gateway_problems(gw)
        sink.stop()
        if problems:
            pytest.fail("\n".join(problems) + "\n--- log tail ({}) ---\n{}".format(
                d, gw.log_text()[-6000:]), pytrace=False)


@pytest.fixture(scope="module")
def virus_gw(postern_bin, base_dir, password_hashes, dns_server):
    with module_gateway(postern_bin, base_dir, password_hashes, dns_server, "virus",
                        virus_config()) as pair:
        yield pair


REJECTED_IDS = []


@pytest.mark.skipif(not TESTFILE_NAMES, reason="clamav-testfiles is not installed")
@pytest.mark.parametrize("name", TESTFILE_NAMES)
def test_testfile_rejected(virus_gw, name):
    gw, sink = virus_gw
    with open(os.path.join(TESTFILES, name), "rb") as f:
        data = f.read()
    mid = make_message_id()
    r = gw.transaction(SENDER, [RCPT], with_attachment(name, data, subject=name, mid=mid))
    assert r.code == 554 and r.enhanced == "5.7.0", r
    m = VIRUS_REPLY.search(r.text)
    assert m and m.group(1).startswith("Postern.Test.ClamAV-Test-File."), r
    REJECTED_IDS.append(mid)


def test_clean_mail_unchanged(virus_gw):
    """A clean mail (with an attachment the engine scans) is delivered
    byte-identical apart from the Received header and the signature
    version it was scanned with, and otherwise unmarked; the log line of
    the verdict names the same version."""
    gw, sink = virus_gw
    mid = make_message_id()
    data = with_attachment("notes.txt", b"Nothing to see here.\r\n" * 40, mid=mid,
                           ctype="text/plain")
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    got = sink.wait_message_id(mid)
    _, rest = strip_first_received(got["data"])
    version, rest = strip_version_header(rest)
    assert rest == data
    assert not re.search(rb"(?im)^X-Postern-", rest)
    assert re.search(r'content session=\d+ .* action=none .* virus="{}" reasons='.format(re.escape(version)),
                     gw.log_text()), gw.log_text()[-3000:]


def test_no_infected_mail_delivered(virus_gw):
    """Runs after the test files: none of them reached the sink or the queue."""
    gw, sink = virus_gw
    if TESTFILE_NAMES:
        assert len(REJECTED_IDS) == len(TESTFILE_NAMES)
    gw.wait_queue_empty(timeout=30)
    delivered = {m["message_id"] for m in sink.snapshot()}
    assert not delivered & set(REJECTED_IDS)


# -- actions ------------------------------------------------------------------

def test_action_drop(gateway, sink):
    gw = gateway(virus_config(action="drop"))
    mid = make_message_id()
    r = gw.transaction(SENDER, [RCPT], eicar_mail(mid=mid))
    assert r.code == 250 and r.queue_id, r
    wait_until(lambda: re.search(r"drop session=\d+ queue_id={}\b".format(r.queue_id),
                                 gw.log_text()), timeout=10, what="the drop log line")
    assert re.search(r"action=drop category=virus .*Eicar-Test-Signature", gw.log_text())
    # A clean mail sent afterwards is delivered: the dropped one, sent first, is not.
    clean = message(subject="after the drop")
    assert gw.transaction(SENDER, [RCPT], clean).code == 250
    sink.wait_message_id(message_id(clean))
    gw.wait_queue_empty(timeout=30)
    assert mid not in {m["message_id"] for m in sink.snapshot()}


def test_action_quarantine_holds_until_released(gateway, sink):
    gw = gateway(virus_config(action="quarantine"))
    mid = make_message_id()
    r = gw.transaction(SENDER, [RCPT], eicar_mail(mid=mid))
    assert r.code == 250 and r.queue_id, r
    (held,) = [m for m in gw.queue_list() if m["id"] == r.queue_id]
    assert held["held"] is True, held
    time.sleep(1.5)      # retry_min is 1s: a held message must still not move
    assert mid not in {m["message_id"] for m in sink.snapshot()}
    assert [m for m in gw.queue_list() if m["id"] == r.queue_id][0]["held"] is True
    gw.cli("queue", "release", r.queue_id, check=0)
    got = sink.wait_message_id(mid)
    assert got["rcpt_tos"] == [RCPT]
    gw.wait_queue_empty(timeout=30)


def test_action_tag_marks_headers(gateway, sink):
    gw = gateway(virus_config(action="tag"))
    mid = make_message_id()
    data = eicar_mail(mid=mid)
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    status = re.search(rb"(?im)^X-Postern-Status:[ \t]*(.*)$", raw)
    reason = re.search(rb"(?im)^X-Postern-Reason:[ \t]*((?:.*\r\n[ \t].*)*.*)$", raw)
    assert status and status.group(1).strip(), raw[:2000]
    assert reason and b"Eicar-Test-Signature" in reason.group(1), raw[:2000]
    # Marks are added headers; the body is untouched.
    assert raw.endswith(data[data.index(b"\r\n\r\n"):])


# -- sampling -----------------------------------------------------------------

def symbol_lines(gw):
    """The debug log's per-message symbol lines, in order."""
    return re.findall(r'content symbols="([^"]*)"', gw.log_text())


def send_many(gw, datas):
    """Many transactions on one connection; returns the final replies."""
    replies = []
    with gw.raw(timeout=60) as c:
        c.reply()
        c.ehlo()
        for data in datas:
            assert c.cmd("MAIL FROM:<{}>".format(SENDER)).code == 250
            assert c.cmd("RCPT TO:<{}>".format(RCPT)).code == 250
            assert c.cmd("DATA").code == 354
            c.send(dot_stuff(data))
            replies.append(c.reply())
        c.cmd("QUIT")
    return replies


def test_sampling_goes_hot_after_a_detection(gateway, sink):
    """sample_percent = 1 scans about one message in a hundred while quiet
    and every message for hot_period after a detection. Counted from the
    debug log's symbols (VIRUS_SKIPPED / VIRUS_SCANNED), not guessed from
    replies: the chance that the assertions hold by luck is below 1e-9."""
    gw = gateway(dict(virus_config(sample_percent=1, hot_period="1h"),
                      log={"level": "debug", "stderr": True}))
    quiet = 60
    r = send_many(gw, [message(subject="quiet {}".format(i)) for i in range(quiet)])
    assert all(x.code == 250 for x in r), r
    lines = symbol_lines(gw)
    assert len(lines) == quiet, lines
    skipped = sum("VIRUS_SKIPPED" in s for s in lines)
    scanned = sum("VIRUS_SCANNED" in s for s in lines)
    assert skipped + scanned == quiet
    # At 1 %, 12 or more scans of 60 happen with p ~ 1e-11.
    assert skipped >= 48, (skipped, scanned)

    # Infected mail until the first one is sampled and caught (1 % each: p(miss 2000) ~ 2e-9).
    passed = 0
    for batch in range(40):
        r = send_many(gw, [eicar_mail(subject="outbreak") for _ in range(50)])
        codes = [x.code for x in r]
        assert set(codes) <= {250, 554}, r
        if 554 in codes:
            passed += codes.index(554)
            tail = codes[codes.index(554) + 1:]
            # Once one was caught, every later one in the batch is caught too.
            assert all(c == 554 for c in tail), codes
            break
        passed += len(codes)
    else:
        pytest.fail("no infected mail of 2000 was sampled at 1 %")

    before = len(symbol_lines(gw))
    hot = 30
    r = send_many(gw, [eicar_mail(subject="hot {}".format(i)) for i in range(hot)] +
                  [message(subject="hot clean {}".format(i)) for i in range(hot)])
    assert [x.code for x in r] == [554] * hot + [250] * hot, r
    lines = symbol_lines(gw)[before:]
    assert len(lines) == 2 * hot
    assert all("VIRUS_SCANNED" in s and "VIRUS_SKIPPED" not in s for s in lines), lines
    # The quiet messages' verdict lines say which were skipped, as the symbols did.
    verdicts = re.findall(r'content session=\d+ .* virus="([^"]*)" reasons=', gw.log_text())
    assert verdicts[:quiet].count("skipped") == skipped, verdicts[:quiet]
    assert all(v == "skipped" or v.startswith("sigs=") for v in verdicts), set(verdicts)


def reload_and_wait(gw):
    """SIGHUP, then wait for the gateway's word that the new config is in."""
    done = gw.log_text().count("reloaded configuration")
    gw.reload_signal()
    wait_until(lambda: gw.log_text().count("reloaded configuration") > done, timeout=60,
               what="the reload")


def test_reload_applies_virus_action_and_sampling(gateway, sink):
    """[virus] action and sample_percent changed by a reload apply to the
    next message: the running signatures are kept, not loaded again."""
    gw = gateway(virus_config(action="reject", sample_percent=1))
    loads = gw.log_text().count("signatures loaded")
    gw.update(virus_config(action="tag", sample_percent=100))
    reload_and_wait(gw)
    mid = make_message_id()
    data = eicar_mail(mid=mid)
    r = gw.transaction(SENDER, [RCPT], data)
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    _, rest = strip_first_received(raw)
    assert re.search(rb"(?im)^X-Postern-Status:[ \t]*tagged", rest), rest[:2000]
    assert re.search(rb"(?im)^X-Postern-Virus-Scanned: sigs=\d+", rest), rest[:2000]
    assert gw.log_text().count("signatures loaded") == loads

    gw.update(virus_config(action="reject"))
    reload_and_wait(gw)
    r = gw.transaction(SENDER, [RCPT], eicar_mail())
    assert r.code == 554 and "Eicar-Test-Signature" in r.text, r


def test_reload_with_a_new_database_directory(gateway, sink, workdir):
    """A new [virus] database directory loads a new engine for the new
    config; the old one goes with the last pipeline that used it."""
    db = os.path.join(workdir, "clamav-db2")
    shutil.copytree(DB, db)
    with open(os.path.join(db, "postern-reload.ndb"), "w") as f:
        f.write("{}:0:*:{}\n".format(NEW_SIG_NAME, NEW_SIG_TEXT.hex()))
    give_to_daemon(db)
    gw = gateway(virus_config())
    marker = with_attachment("marker.txt", NEW_SIG_TEXT, ctype="text/plain")
    assert gw.transaction(SENDER, [RCPT], marker).code == 250
    gw.update(virus_config(database=db))
    reload_and_wait(gw)
    assert "virus signature directory now " + db in gw.log_text()
    r = gw.transaction(SENDER, [RCPT], marker)
    assert r.code == 554 and NEW_SIG_NAME in r.text, r
    r = gw.transaction(SENDER, [RCPT], eicar_mail())
    assert r.code == 554 and "Eicar-Test-Signature" in r.text, r


def test_actions_section_overrides_the_engine(gateway, sink):
    """[actions] virus = quarantine wins over [virus] action = reject; with
    tag, the marks use the header names of [actions]; a bad value refuses
    the reload and keeps the running config."""
    gw = gateway(dict(virus_config(action="reject"), actions={"virus": "quarantine"}))
    r = gw.transaction(SENDER, [RCPT], eicar_mail())
    assert r.code == 250 and r.queue_id, r
    (held,) = [m for m in gw.queue_list() if m["id"] == r.queue_id]
    assert held["held"] is True, held

    gw.update({"actions": {"virus": "tag", "status_header": "X-Scan-Status",
                           "reason_header": "X-Scan-Why", "scl_header": "X-Scan-Level"}})
    reload_and_wait(gw)
    mid = make_message_id()
    r = gw.transaction(SENDER, [RCPT], eicar_mail(mid=mid))
    assert r.code == 250, r
    raw = sink.wait_message_id(mid)["data"]
    assert re.search(rb"(?im)^X-Scan-Status:[ \t]*tagged", raw), raw[:2000]
    assert re.search(rb"(?im)^X-Scan-Level:[ \t]*9", raw), raw[:2000]
    assert re.search(rb"(?im)^X-Scan-Why:.*Eicar-Test-Signature", raw), raw[:2000]
    assert not re.search(rb"(?im)^X-Postern-Status:", raw), raw[:2000]

    gw.update({"actions": {"virus": "explode"}})
    p = gw.cli("reload", check=1)
    assert "explode" in p.stdout + p.stderr, p
    r = gw.transaction(SENDER, [RCPT], eicar_mail())
    assert r.code == 250, r


# -- signature reload under load ---------------------------------------------

NEW_SIG_NAME = "Postern.Test.Reload.Marker"
NEW_SIG_TEXT = b"postern reload marker 7f3a9c2e51d84b60 is not a virus"


class Loader(threading.Thread):
    """Sends clean and EICAR mail alternately until stopped; records every
    reply (each transaction on a fresh connection, the way MTAs do)."""

    def __init__(self, gw):
        super().__init__(daemon=True)
        self.gw = gw
        self.stop_event = threading.Event()
        self.clean_ids = []
        self.unexpected = []
        self.sent = 0
        self.error = None

    def run(self):
        try:
            i = 0
            while not self.stop_event.is_set():
                infected = i % 2 == 1
                mid = make_message_id()
                data = eicar_mail(mid=mid) if infected else message(subject="load", mid=mid)
                r = self.gw.transaction(SENDER, [RCPT], data)
                self.sent += 1
                if infected and not (r.code == 554 and "Eicar-Test-Signature" in r.text):
                    self.unexpected.append(("infected", r))
                elif not infected:
                    if r.code == 250:
                        self.clean_ids.append(mid)
                    else:
                        self.unexpected.append(("clean", r))
                i += 1
        except (AssertionError, ConnectionClosed, OSError) as e:
            self.error = e


def test_signature_reload_under_load(gateway, sink, workdir):
    db = os.path.join(workdir, "clamav-db")
    shutil.copytree(DB, db)
    give_to_daemon(db)
    gw = gateway(virus_config(database=db, reload_check="1s"))
    marker = with_attachment("marker.txt", NEW_SIG_TEXT, ctype="text/plain")
    assert gw.transaction(SENDER, [RCPT], marker).code == 250, "matched before the reload"

    loader = Loader(gw)
    loader.start()
    try:
        wait_until(lambda: loader.sent >= 10 or loader.error, timeout=60, what="load")
        tmp = os.path.join(db, ".reload.tmp")
        with open(tmp, "w") as f:
            f.write("{}:0:*:{}\n".format(NEW_SIG_NAME, NEW_SIG_TEXT.hex()))
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(db, "postern-reload.ndb"))

        def new_signature_live():
            r = gw.transaction(SENDER, [RCPT], with_attachment(
                "marker.txt", NEW_SIG_TEXT, ctype="text/plain"))
            assert r.code in (250, 554), r
            return r.code == 554 and NEW_SIG_NAME in r.text
        wait_until(new_signature_live, timeout=60, interval=0.5, what="the new signature")
        sent_at_reload = loader.sent
        wait_until(lambda: loader.sent >= sent_at_reload + 10 or loader.error, timeout=60,
                   what="load after the reload")
    finally:
        loader.stop_event.set()
        loader.join(60)
    assert loader.error is None, loader.error
    assert not loader.unexpected, loader.unexpected[:10]
    assert "signatures reloaded" in gw.log_text()
    # Every clean message accepted during the load reached the sink
    # (the markers accepted before the reload went too).
    for mid in loader.clean_ids:
        sink.wait_message_id(mid, timeout=60)
    gw.wait_queue_empty(timeout=60)
