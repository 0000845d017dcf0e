"""`postern rules` (check, export, overview, import) and `postern scan
--rules` with the shipped etc/rules/default.rules: an .exe attachment (a
real PE header, base64) is rejected with the rule's reason, a plain
message is not. $POSTERN_BIN is the binary (default build-asan/postern,
else build/postern)."""
import base64
import json
import os
import struct
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_RULES = os.path.join(REPO, "etc", "rules", "default.rules")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def postern_binary():
    if os.environ.get("POSTERN_BIN"):
        return os.environ["POSTERN_BIN"]
    for build in ("build-asan", "build"):
        path = os.path.join(REPO, build, "postern")
        if os.path.exists(path):
            return path
    return os.path.join(REPO, "build", "postern")


BIN = postern_binary()
pytestmark = pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="no postern binary at " + BIN)


def run(args, timeout=120):
    p = subprocess.run([BIN] + args, capture_output=True, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-4000:]
    return p, p.stdout.decode("utf-8", "replace"), err


def pe_bytes():
    """A minimal PE32 image: MZ stub pointing at a PE header."""
    stub = bytearray(b"MZ\x90\x00" + bytes(0x3c - 4) + struct.pack("<I", 0x80))
    stub += bytes(0x80 - len(stub))
    coff = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x0102)
    optional = struct.pack("<HBB", 0x10B, 0, 0) + bytes(0xE0 - 4)
    return bytes(stub) + coff + optional + bytes(64)


def exe_message(name="setup.exe"):
    b64 = base64.encodebytes(pe_bytes()).decode().replace("\n", "\r\n")
    return ("From: a@example.org\r\nTo: b@example.com\r\nSubject: tool\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
            "--XX\r\nContent-Type: text/plain\r\n\r\nthe tool you asked for\r\n"
            "--XX\r\nContent-Type: application/octet-stream\r\n"
            "Content-Disposition: attachment; filename=\"" + name + "\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--XX--\r\n").encode()


def scan(tmp_path, raw, rules=DEFAULT_RULES):
    msg = tmp_path / "msg.eml"
    msg.write_bytes(raw)
    p, out, err = run(["scan", "--json", "--rules", rules, str(msg)])
    assert p.returncode == 0, err
    return json.loads(out.splitlines()[0])


def test_check_default_rules():
    p, out, err = run(["rules", "check", DEFAULT_RULES])
    assert p.returncode == 0, err
    assert "OK" in out


def test_scan_exe_attachment_rejected(tmp_path):
    v = scan(tmp_path, exe_message())
    assert v["action"] == "reject"
    assert v["category"] == "rule"
    assert "rule EXECUTABLE_ATTACHMENT: matched attachment-type" in v["reasons"]
    symbols = {r["symbol"] for r in v["results"] if r["engine"] == "rules"}
    assert {"RULE_EXECUTABLE_ATTACHMENT", "RULE_DANGEROUS_ATTACHMENT_NAME"} <= symbols


def test_scan_double_extension_and_plain(tmp_path):
    v = scan(tmp_path, exe_message("invoice.pdf.exe"))
    assert "RULE_DOUBLE_EXTENSION" in {r["symbol"] for r in v["results"]}
    plain = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n"
    v = scan(tmp_path, plain)
    assert v["action"] == "none"
    assert not [r for r in v["results"] if r["engine"] == "rules"]


def test_scan_phrase_scores(tmp_path):
    raw = (b"From: bank@example.net\r\nTo: b@example.com\r\nSubject: Please verify your account\r\n\r\n"
           b"Dear customer, we noticed unusual sign-in activity.\r\n")
    v = scan(tmp_path, raw)
    rules = [r for r in v["results"] if r["engine"] == "rules"]
    assert [r["symbol"] for r in rules] == ["RULE_PHISH_VERIFY_ACCOUNT"]
    assert rules[0]["score"] == 3.0
    assert v["action"] == "none"


def test_bad_rules_file(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("rule A {\n  match subjekt \"x\"\n  score 1\n}\n")
    p, out, err = run(["rules", "check", str(bad)])
    assert p.returncode == 1
    assert "bad.rules:2:9: unknown field 'subjekt'" in err
    p, out, err = run(["scan", "--rules", str(bad), str(bad)])
    assert p.returncode == 1
    assert "unknown field" in err


def test_export_import_overview(tmp_path):
    p, exported, err = run(["rules", "export", DEFAULT_RULES])
    assert p.returncode == 0, err
    dest = tmp_path / "installed.rules"
    dest.write_text("old contents\n")
    p, out, err = run(["rules", "import", DEFAULT_RULES, str(dest)])
    assert p.returncode == 0, err
    assert dest.read_text() == exported
    assert [f for f in os.listdir(tmp_path) if ".tmp." in f] == []
    p, again, err = run(["rules", "export", str(dest)])
    assert again == exported
    p, table, err = run(["rules", "overview", str(dest)])
    assert p.returncode == 0, err
    assert "EXECUTABLE_ATTACHMENT" in table and "reject" in table
    assert table.rstrip().endswith("26 rules, 2 file types")


def test_import_invalid_keeps_dest(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("rule A {\n  match body /a(/\n  score 1\n}\n")
    dest = tmp_path / "installed.rules"
    dest.write_text("keep me\n")
    p, out, err = run(["rules", "import", str(bad), str(dest)])
    assert p.returncode == 1
    assert "bad regex" in err
    assert dest.read_text() == "keep me\n"
