"""`postern learn` and `postern scan --bayes` over a few corpus messages:
learning folders and files, the duplicate guard, moving a message to the
other class, --forget, --stats, --expire, usage errors, and the bayes
engine's verdict once trained. $POSTERN_BIN is the binary (default
build-asan/postern, else build/postern)."""
import json
import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
MAIL_CORPUS = os.path.join(SHARED, "corpus", "mail")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
PER_CLASS = 12
SCAN_TRAIN = 100


def postern_binary():
    if os.environ.get("POSTERN_BIN"):
        return os.environ["POSTERN_BIN"]
    for build in ("build-asan", "build"):
        path = os.path.join(REPO, build, "postern")
        if os.path.exists(path):
            return path
    return os.path.join(REPO, "build", "postern")


BIN = postern_binary()
pytestmark = [
    pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="no postern binary at " + BIN),
    pytest.mark.skipif(not os.path.isdir(MAIL_CORPUS), reason="no mail corpus at " + MAIL_CORPUS),
]


def run(args, expect=0):
    p = subprocess.run([BIN] + args, capture_output=True, timeout=300)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-4000:]
    assert p.returncode == expect, (args, p.returncode, out[-2000:], err[-2000:])
    return out, err


def corpus(label, start, count):
    d = os.path.join(MAIL_CORPUS, label)
    return [os.path.join(d, n) for n in sorted(os.listdir(d))[start:start + count]]


def stats(db):
    out, _ = run(["learn", "--db", db, "--stats"])
    return {k.strip(): int(v) for k, v in (line.split(":") for line in out.splitlines())}


def link_folder(tmp_path, name, files):
    """A folder with a nested subfolder holding the files (symlinks)."""
    top = tmp_path / name
    (top / "sub").mkdir(parents=True)
    for i, f in enumerate(files):
        (top if i % 2 else top / "sub").joinpath(os.path.basename(f)).symlink_to(f)
    return str(top)


@pytest.fixture
def trained(tmp_path):
    db = str(tmp_path / "bayes.db")
    spam = link_folder(tmp_path, "spam", corpus("spam", 0, PER_CLASS))
    ham = link_folder(tmp_path, "ham", corpus("ham", 0, PER_CLASS))
    out, _ = run(["learn", "--db", db, "spam", spam])
    assert "{} learned".format(PER_CLASS) in out
    out, _ = run(["learn", "--db", db, "ham", ham])
    assert "{} learned".format(PER_CLASS) in out
    return db


def test_learn_folders_and_stats(trained):
    s = stats(trained)
    assert s["spam messages"] == PER_CLASS
    assert s["ham messages"] == PER_CLASS
    assert s["tokens"] > 1000


def test_same_message_twice_counts_once_and_moves(trained):
    f = corpus("spam", 0, 1)
    out, _ = run(["learn", "--db", trained, "-v", "spam"] + f)
    assert "already learned" in out
    assert stats(trained)["spam messages"] == PER_CLASS
    out, _ = run(["learn", "--db", trained, "-v", "ham"] + f)
    assert ": moved" in out
    s = stats(trained)
    assert (s["spam messages"], s["ham messages"]) == (PER_CLASS - 1, PER_CLASS + 1)


def test_forget(trained):
    f = corpus("ham", 0, 1)
    out, _ = run(["learn", "--db", trained, "--forget", "-v", "spam"] + f)
    assert ": not learned" in out
    out, _ = run(["learn", "--db", trained, "--forget", "-v", "ham"] + f)
    assert ": forgotten" in out
    assert stats(trained)["ham messages"] == PER_CLASS - 1
    out, _ = run(["learn", "--db", trained, "-v", "ham"] + f)
    assert ": learned" in out
    assert stats(trained)["ham messages"] == PER_CLASS


def test_scan_with_bayes(tmp_path):
    db = str(tmp_path / "scan.db")
    run(["learn", "--db", db, "spam"] + corpus("spam", 0, SCAN_TRAIN))
    run(["learn", "--db", db, "ham"] + corpus("ham", 0, SCAN_TRAIN))
    spam = corpus("spam", SCAN_TRAIN, 6)
    ham = corpus("ham", SCAN_TRAIN, 6)
    out, _ = run(["scan", "--json", "--bayes", db] + spam + ham)
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert len(verdicts) == 12
    called = {}
    for v in verdicts:
        bayes = [r for r in v["results"] if r["engine"] == "bayes"]
        assert len(bayes) <= 1
        for r in bayes:
            assert r["symbol"] in ("BAYES_SPAM", "BAYES_HAM")
            assert r["reason"].startswith("spam probability ")
            assert (r["score"] > 0) == (r["symbol"] == "BAYES_SPAM")
        called[v["file"]] = bayes[0]["symbol"] if bayes else None
    assert all(called[f] != "BAYES_SPAM" for f in ham), called
    assert sum(called[f] == "BAYES_SPAM" for f in spam) >= 3, called
    assert sum(called[f] == "BAYES_HAM" for f in ham) >= 2, called


def test_untrained_says_nothing(tmp_path):
    db = str(tmp_path / "few.db")
    run(["learn", "--db", db, "spam"] + corpus("spam", 0, 4))
    run(["learn", "--db", db, "ham"] + corpus("ham", 0, 4))
    out, _ = run(["scan", "--json", "--bayes", db] + corpus("spam", 10, 1))
    assert not [r for r in json.loads(out)["results"] if r["engine"] == "bayes"]


def test_expire_keeps_recent_tokens(trained):
    out, _ = run(["learn", "--db", trained, "--expire", "30"])
    assert out.strip() == "expired 0 tokens"
    assert stats(trained)["tokens"] > 1000


def test_usage_and_errors(tmp_path):
    db = str(tmp_path / "u.db")
    run(["learn", "--db", db], expect=2)
    run(["learn", "--db", db, "maybe", "x"], expect=2)
    run(["learn", "--db", db, "spam"], expect=2)
    run(["learn", "--db", db, "--stats", "extra"], expect=2)
    run(["learn", "--db", db, "--bogus", "spam", "x"], expect=2)
    run(["learn", "--db", db, "--expire", "soon"], expect=2)
    _, err = run(["learn", "--db", db, "spam", str(tmp_path / "missing.eml")], expect=1)
    assert "missing.eml" in err
    run(["learn", "--db", str(tmp_path / "no" / "such" / "dir.db"), "--stats"], expect=1)
    run(["scan", "--bayes", str(tmp_path / "no" / "such" / "dir.db"), corpus("ham", 0, 1)[0]], expect=1)
    out, _ = run(["learn", "--help"])
    assert "--forget" in out
