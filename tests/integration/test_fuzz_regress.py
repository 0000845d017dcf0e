"""Every fuzz target over its seed corpus (`-runs=0`: each input once), so
inputs that once crashed a parser keep being checked. $POSTERN_FUZZ_DIR is
the build dir holding the fuzz_* binaries; skipped when it is missing."""
import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "tests", "fuzz", "corpus")


def fuzz_targets():
    d = os.environ.get("POSTERN_FUZZ_DIR") or os.path.join(REPO, "build-fuzz")
    if not os.path.isdir(d):
        return d, []
    names = sorted(n for n in os.listdir(d)
                   if n.startswith("fuzz_") and os.access(os.path.join(d, n), os.X_OK)
                   and os.path.isfile(os.path.join(d, n)))
    return d, names


FUZZ_DIR, TARGETS = fuzz_targets()


if not TARGETS:
    def test_fuzz_targets_present():
        if os.environ.get("POSTERN_FUZZ_DIR"):
            pytest.fail("POSTERN_FUZZ_DIR={} holds no fuzz_* binaries".format(FUZZ_DIR))
        pytest.skip("no fuzz build at {}".format(FUZZ_DIR))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_corpus(target):
    corpus = os.path.join(CORPUS, target[len("fuzz_"):])
    assert os.path.isdir(corpus) and os.listdir(corpus), "no seed corpus at " + corpus
    p = subprocess.run([os.path.join(FUZZ_DIR, target), "-runs=0", corpus],
                       capture_output=True, text=True, timeout=600, cwd="/tmp")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "deadly signal"):
        assert marker not in out, out[-4000:]
