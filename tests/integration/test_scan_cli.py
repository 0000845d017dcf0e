"""`postern scan` over the MIME test suite, a sample of the mail corpus and
hostile messages made here: every message gets a verdict, nothing crashes,
and the parser's limits show up as flags. $POSTERN_BIN is the binary
(default build-asan/postern, else build/postern)."""
import json
import os
import random
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
MIME_SUITE = os.path.join(SHARED, "testsuites", "mime")
MAIL_CORPUS = os.path.join(SHARED, "corpus", "mail")
CORPUS_SAMPLE = 200
ACTIONS = {"none", "tag", "quarantine", "reject", "drop", "defer", "clean"}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def scan_binary():
    if os.environ.get("POSTERN_BIN"):
        return os.environ["POSTERN_BIN"]
    for build in ("build-asan", "build"):
        path = os.path.join(REPO, build, "postern")
        if os.path.exists(path):
            return path
    return os.path.join(REPO, "build", "postern")


BIN = scan_binary()
pytestmark = pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="no postern binary at " + BIN)


def run_scan(args, stdin=None, timeout=600):
    p = subprocess.run([BIN, "scan"] + args, input=stdin, capture_output=True, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-4000:]
    return p, err


def scan_json(paths):
    """Scan in batches (one process per batch); return {file: verdict}."""
    out = {}
    for i in range(0, len(paths), 50):
        batch = paths[i:i + 50]
        p, err = run_scan(["--json"] + batch)
        assert p.returncode == 0, err[-4000:]
        lines = p.stdout.decode("utf-8").splitlines()
        assert len(lines) == len(batch), err[-4000:]
        for line in lines:
            v = json.loads(line)
            out[v["file"]] = v
    return out


def check_verdict(v):
    assert v["action"] in ACTIONS
    assert 0 <= v["scl"] <= 9
    assert isinstance(v["score"], float)
    for r in v["results"]:
        assert r["engine"] and r["symbol"]
        assert r["action"] in ACTIONS


def suite_files():
    files = []
    for root, _, names in os.walk(MIME_SUITE):
        files += [os.path.join(root, n) for n in names if n != "README.md"]
    return sorted(files)


@pytest.mark.skipif(not os.path.isdir(MIME_SUITE), reason="no MIME test suite")
def test_every_suite_message_gets_a_verdict():
    files = suite_files()
    verdicts = scan_json(files)
    assert set(verdicts) == set(files)
    for v in verdicts.values():
        check_verdict(v)
    torture = verdicts[os.path.join(MIME_SUITE, "crymap", "torture-test.eml")]
    assert len(torture["parts"]) > 40
    badmime3 = verdicts[os.path.join(MIME_SUITE, "spamassassin", "spam", "badmime3.txt")]
    assert "missing_boundary" in badmime3["flags"]


@pytest.mark.skipif(not os.path.isdir(MAIL_CORPUS), reason="no mail corpus")
def test_corpus_sample_gets_verdicts():
    files = []
    for label in ("ham", "spam"):
        d = os.path.join(MAIL_CORPUS, label)
        files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    sample = random.Random(4).sample(files, min(CORPUS_SAMPLE, len(files)))
    verdicts = scan_json(sample)
    assert len(verdicts) == len(sample)
    for v in verdicts.values():
        check_verdict(v)
        assert v["parts"], v["file"]


def scan_hostile(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    verdicts = scan_json([str(path)])
    v = verdicts[str(path)]
    check_verdict(v)
    return v


def symbols(v):
    return {r["symbol"] for r in v["results"]}


def test_ten_thousand_parts(tmp_path):
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(10000))
    msg = b"Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + body + b"--b--\r\n"
    v = scan_hostile(tmp_path, "parts.eml", msg)
    assert "parts" in v["limit_exceeded"]
    assert len(v["parts"]) == 1000
    assert "MIME_LIMIT_EXCEEDED" in symbols(v)


def test_nesting_depth_thousand(tmp_path):
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(1000))
    v = scan_hostile(tmp_path, "deep.eml", b"Subject: deep\r\n" + head + b"\r\ndeep\r\n")
    assert "depth" in v["limit_exceeded"]
    assert max(p["depth"] for p in v["parts"]) <= 20


def test_nested_rfc822_thousand(tmp_path):
    msg = b"Subject: leaf\r\n\r\nleaf\r\n"
    for i in range(1000):
        msg = b"Subject: wrap %d\r\nContent-Type: message/rfc822\r\n\r\n" % i + msg
    v = scan_hostile(tmp_path, "deep822.eml", msg)
    assert "depth" in v["limit_exceeded"]


def test_two_mib_header(tmp_path):
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 60) for i in range(30000))
    assert len(filler) > 2 * 1024 * 1024
    v = scan_hostile(tmp_path, "header.eml", b"Subject: big\r\n" + filler + b"\r\nbody\r\n")
    assert "header" in v["limit_exceeded"]


def test_broken_base64(tmp_path):
    msg = (b"Subject: b64\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nTVqQ$$AAMAA*AAEAAAA//8A\r\n--b--\r\n")
    v = scan_hostile(tmp_path, "b64.eml", msg)
    assert "broken_base64" in v["flags"]
    assert "MIME_BROKEN_BASE64" in symbols(v)


def test_executable_double_extension_rejected(tmp_path):
    exe = (b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
           b"AAAAgAAAAA4fug4AtAnNIbgBTM0hVGhpcyBwcm9ncmFtIGNhbm5vdCBiZSBydW4gaW4gRE9TIG1v\r\n"
           b"ZGUuDQ0KJAAAAAAAAABQRQAATAEDAAAAAAAAAAAAAAAAAOAAAgELAQAAAAAAAAAAAAAAAAAAAAAA\r\n")
    msg = (b"Subject: invoice\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: application/pdf; name=\"invoice.pdf.exe\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + exe + b"--b--\r\n")
    v = scan_hostile(tmp_path, "exe.eml", msg)
    assert v["action"] == "reject"
    assert {"MIME_EXE_ATTACHMENT", "MIME_DOUBLE_EXTENSION"} <= symbols(v)
    assert v["parts"][1]["magic_type"] in ("application/x-dosexec",
                                           "application/vnd.microsoft.portable-executable")


def test_text_output_and_stdin():
    p, err = run_scan(["-"], stdin=b"Subject: hi\r\n\r\nhello\r\n")
    assert p.returncode == 0, err
    out = p.stdout.decode()
    assert out.startswith("-: action=none score=0.00 scl=0")
    assert "part 0 parent=-1 text/plain" in out


def test_exit_codes(tmp_path):
    ok = tmp_path / "ok.eml"
    ok.write_bytes(b"Subject: x\r\n\r\nx\r\n")
    p, _ = run_scan([str(ok), str(tmp_path / "missing.eml")])
    assert p.returncode == 1
    assert p.stdout.decode().count("action=") == 1
    p, _ = run_scan([])
    assert p.returncode == 2
    p, _ = run_scan(["--bogus", str(ok)])
    assert p.returncode == 2
