"""The C unit tests, one pytest test per C TEST(), so a failure names the
test. $POSTERN_UNIT is the unit-test binary (`--list` names the tests,
`NAME` runs one)."""
import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def unit_binary():
    if os.environ.get("POSTERN_UNIT"):
        return os.environ["POSTERN_UNIT"]
    for build in ("build-asan", "build"):
        path = os.path.join(REPO, build, "unit-tests")
        if os.path.exists(path):
            return path
    return None


def unit_names():
    path = unit_binary()
    if path is None or not os.access(path, os.X_OK):
        return []
    p = subprocess.run([path, "--list"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [line.strip() for line in p.stdout.splitlines() if line.strip()]


NAMES = unit_names()


if not NAMES:
    def test_unit_binary_present():
        if os.environ.get("POSTERN_UNIT"):
            pytest.fail("POSTERN_UNIT={} lists no tests".format(os.environ["POSTERN_UNIT"]))
        pytest.skip("no unit-tests binary (build it, or set POSTERN_UNIT)")


@pytest.mark.parametrize("name", NAMES)
def test_unit(name):
    p = subprocess.run([unit_binary(), name], capture_output=True, text=True, timeout=600,
                       cwd="/tmp")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "ok   {}".format(name) in p.stdout, out
    assert "1 passed, 0 failed" in p.stdout, out
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in out, out
