"""Fixtures of the integration suite: the postern binary, a 0755 base
directory under /tmp, a recording SMTP sink, the test DNS server
(tests/tools/dnsd.py) and a factory of running gateways.

Environment:
  POSTERN_BIN       the postern binary (default: build-asan/postern if it
                    exists, else build/postern)
  POSTERN_UNIT      the C unit-test binary (test_unit.py)
  POSTERN_FUZZ_DIR  the build dir holding fuzz_* binaries (test_fuzz_regress.py)
  POSTERN_KEEP=1    keep the test directories under /tmp for inspection
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from gateway import Gateway, free_port, give_to_daemon, merge, run_user  # noqa: E402
from sink import Sink  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = "/usr/bin/python3"
DNSD = os.path.join(REPO, "tests", "tools", "dnsd.py")

# Accounts of the [local] domain: AUTH and Maildir delivery.
LOCAL_DOMAIN = "local.test"
USERS = {
    "bob@local.test": "bob-Secret-1",
    "alice@local.test": "alice-Secret-2",
}

ZONE = """\
# MX deliveries of the gateway: every name points at 127.0.0.1, the port is
# [delivery] mx_port (the sink's port).
remote.test        MX 10 mx.remote.test
mx.remote.test     A 127.0.0.1
other.test         MX 10 mx.other.test
mx.other.test      A 127.0.0.1
bounce.test        MX 10 mx.bounce.test
mx.bounce.test     A 127.0.0.1
"""


def default_binary():
    for build in ("build-asan", "build"):
        path = os.path.join(REPO, build, "postern")
        if os.path.exists(path):
            return path
    return os.path.join(REPO, "build", "postern")


@pytest.fixture(scope="session")
def postern_bin():
    path = os.environ.get("POSTERN_BIN") or default_binary()
    if not os.access(path, os.X_OK):
        if os.environ.get("POSTERN_BIN"):
            pytest.fail("POSTERN_BIN={} is not an executable".format(path))
        pytest.skip("no postern binary at {} (build it, or set POSTERN_BIN)".format(path))
    return path


@pytest.fixture(scope="session")
def base_dir():
    # The daemon drops root: every parent of its directories must be
    # traversable, so not pytest's 0700 tmp_path.
    path = tempfile.mkdtemp(prefix="postern-it-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    if not os.environ.get("POSTERN_KEEP"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workdir(base_dir, request):
    # Short: the admin socket path under it must fit in sun_path (108).
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:40]
    path = tempfile.mkdtemp(prefix=name + ".", dir=base_dir)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def password_hashes(postern_bin):
    """argon2id hashes made once per session with `postern passwd`."""
    hashes = {}
    for addr, password in USERS.items():
        p = subprocess.run([postern_bin, "passwd"], input=password + "\n",
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, "postern passwd failed: {}".format(p.stderr)
        h = p.stdout.strip().splitlines()[-1].strip()
        assert h.startswith("$argon2id$"), "postern passwd printed {!r}".format(p.stdout)
        hashes[addr] = h
    return hashes


@pytest.fixture
def make_sink():
    sinks = []

    def factory(dsn=False):
        s = Sink(free_port(), dsn=dsn).start()
        sinks.append(s)
        return s

    yield factory
    for s in sinks:
        s.stop()


@pytest.fixture
def sink(make_sink):
    return make_sink()


class DnsServer:
    def __init__(self, workdir, zone):
        self.port = free_port()
        self.zone_path = os.path.join(workdir, "zone.txt")
        with open(self.zone_path, "w") as f:
            f.write(zone)
        self.proc = subprocess.Popen(
            [PYTHON, DNSD, "--port", str(self.port), "--zone", self.zone_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline().decode(errors="replace")
        if "ready" not in line:
            self.proc.kill()
            rest = self.proc.stdout.read().decode(errors="replace")
            raise RuntimeError("dnsd.py did not start: {}{}".format(line, rest))

    @property
    def servers(self):
        return "127.0.0.1:{}".format(self.port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def dns_server(base_dir):
    if not os.path.exists(DNSD):
        yield None
        return
    d = DnsServer(base_dir, ZONE)
    yield d
    d.stop()


@pytest.fixture
def dns(dns_server):
    if dns_server is None:
        pytest.skip("tests/tools/dnsd.py is missing")
    return dns_server


def base_sections(workdir, sink_port, hashes, dns_servers):
    ports = [free_port() for _ in range(3)]
    mail = os.path.join(workdir, "mail")
    run = os.path.join(workdir, "run")
    give_to_daemon(mail)
    give_to_daemon(run)
    sections = {
        "server": {
            "hostname": "mx.postern.test",
            "listen": ["127.0.0.1:{}".format(ports[0]),
                       "127.0.0.1:{}/smtps".format(ports[1]),
                       "127.0.0.1:{}/submission".format(ports[2])],
            "user": run_user(),
            "data_dir": os.path.join(workdir, "data"),
            "admin_socket": os.path.join(run, "admin.sock"),
        },
        "log": {"level": "info", "stderr": True},
        "limits": {
            "max_message_size": "1M",
            "timeout_command": "30s",
            "timeout_data": "30s",
            "timeout_tls": "10s",
        },
        "auth": {"enabled": True, "max_failures": 3},
        # 127.0.0.1 is NOT trusted unless a test says so: relaying needs a
        # protected domain, AUTH or a trusted network.
        "relay": {"trusted_networks": "192.0.2.0/24"},
        "local": {"domains": LOCAL_DOMAIN, "maildir": os.path.join(mail, "%d", "%u")},
        "queue": {
            "dir": os.path.join(workdir, "spool"),
            "lifetime": "1h",
            "retry_min": "1s",
            "retry_max": "2s",
        },
        "delivery": {
            "mx_port": sink_port,
            "tls": False,
            "timeout_connect": "5s",
            "timeout_reply": "20s",
        },
        'domain "example.com"': {"hosts": "127.0.0.1:{}".format(sink_port)},
    }
    if dns_servers:
        sections["dns"] = {"servers": dns_servers, "timeout_ms": 1000, "tries": 2}
    for addr, h in hashes.items():
        sections['user "{}"'.format(addr)] = {"password": h}
    return sections


@pytest.fixture
def gateway(postern_bin, workdir, sink, password_hashes, dns_server):
    """Factory: gateway(overrides=None, start=True) -> a running Gateway
    relaying example.com to `sink`. Teardown stops it with SIGTERM and fails
    the test on a crash, a non-zero exit or any sanitizer report."""
    started = []

    def factory(overrides=None, start=True, sink_port=None, name="gw"):
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        sections = base_sections(d, sink_port or sink.port, password_hashes,
                                 dns_server.servers if dns_server else None)
        gw = Gateway(postern_bin, d, merge(sections, overrides))
        started.append(gw)
        if start:
            gw.start()
        return gw

    yield factory

    problems = []
    for gw in started:
        if gw.proc is None:
            continue
        was_running = gw.running()
        rc = gw.stop()
        if not gw.was_ready:
            continue     # the test already failed on the start
        mine = []
        if was_running and rc != 0:
            mine.append("postern exited with {} on SIGTERM".format(rc))
        elif not was_running and gw.proc.returncode not in (0, -9):
            mine.append("postern died with status {}".format(gw.proc.returncode))
        reports = gw.sanitizer_reports()
        if reports:
            mine.append("sanitizer reports:\n" + "\n".join(reports[:20]))
        if mine:
            problems.append("\n".join(mine) + "\n--- log tail ({}) ---\n{}".format(
                gw.dir, gw.log_text()[-6000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
