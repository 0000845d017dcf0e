"""Load from an independent client, Postfix's smtp-source: every message
it sends arrives at the sink."""
import shutil
import subprocess

import pytest

from gateway import stat_value


def smtp_source(*args):
    if shutil.which("smtp-source") is None:
        pytest.skip("smtp-source (postfix) is not installed")
    return subprocess.run(["smtp-source"] + list(args), capture_output=True, text=True,
                          timeout=600)


def test_smtp_source_load(gateway, sink):
    gw = gateway({"limits": {"max_sessions": 100}})
    p = smtp_source("-s", "10", "-m", "500", "-l", "2000", "-f", "a@example.org",
                    "-t", "b@example.com", "-M", "load.client",
                    "127.0.0.1:{}".format(gw.port))
    assert p.returncode == 0, p.stdout + p.stderr
    sink.wait_for(lambda m: m["rcpt_tos"] == ["b@example.com"], count=500, timeout=300)
    gw.wait_queue_empty(timeout=60)
    assert len(sink.snapshot()) == 500, "duplicates or strays: {}".format(len(sink.snapshot()))
    assert stat_value(gw.cli_json("status"), "messages", "accepted") == 500


def test_smtp_source_reused_sessions(gateway, sink):
    """-d: many messages per session, 5 recipients each."""
    gw = gateway()
    p = smtp_source("-d", "-s", "4", "-m", "100", "-r", "5", "-l", "500", "-f", "a@example.org",
                    "-t", "c@example.com", "-M", "load.client", "127.0.0.1:{}".format(gw.port))
    assert p.returncode == 0, p.stdout + p.stderr
    sink.wait_for(count=1, timeout=60)
    gw.wait_queue_empty(timeout=300)
    rcpts = [r for m in sink.snapshot() for r in m["rcpt_tos"]]
    assert len(rcpts) == 500 and len(set(rcpts)) == 5, (len(rcpts), sorted(set(rcpts)))
