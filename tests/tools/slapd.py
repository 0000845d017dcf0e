#!/usr/bin/python3
"""A throw-away OpenLDAP server for tests: its own slapd.conf (old style,
one mdb database) and data in a directory of the caller's, listening on
127.0.0.1 only, never the system's slapd service.

    from slapd import Slapd
    d = Slapd(workdir).start()       # suffix dc=example,dc=com
    d.add(LDIF_TEXT)                 # through ldapadd, as the rootdn
    d.uri                            # "ldap://127.0.0.1:PORT"
    d.stop()

Or from a shell, to look at a directory by hand:

    /usr/bin/python3 tests/tools/slapd.py --dir /tmp/x [--port N] [--ldif FILE]

prints "ready URI" and runs until SIGTERM or SIGINT.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

SLAPD = "/usr/sbin/slapd"
LDAPADD = "/usr/bin/ldapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")
START_TIMEOUT = 20.0

SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin,dc=example,dc=com"
ROOT_PW = "root-Secret-9"

CONFIG = """\
# written by tests/tools/slapd.py
{includes}
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath {modules}
moduleload back_mdb
# the test directory is readable without a bind, like most mail directories
access to * by * read

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
index objectClass eq
index mail,mailLocalAddress,uid eq
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    def __init__(self, workdir, port=None, suffix=SUFFIX, rootdn=ROOT_DN, rootpw=ROOT_PW):
        self.dir = os.path.abspath(workdir)
        self.port = port or free_port()
        self.suffix = suffix
        self.rootdn = rootdn
        self.rootpw = rootpw
        self.proc = None
        self.log_path = os.path.join(self.dir, "slapd.log")
        self._log = None

    @property
    def uri(self):
        return "ldap://127.0.0.1:{}".format(self.port)

    def _write_config(self):
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        includes = "\n".join("include {}/{}.schema".format(SCHEMA_DIR, s) for s in SCHEMAS)
        path = os.path.join(self.dir, "slapd.conf")
        with open(path, "w") as f:
            f.write(CONFIG.format(includes=includes, dir=self.dir, modules=MODULE_DIR,
                                  suffix=self.suffix, rootdn=self.rootdn, rootpw=self.rootpw))
        return path

    def start(self):
        """Start (or restart, keeping the data) and wait until it answers;
        the suffix entry is created on the first start."""
        assert self.proc is None, "already running"
        conf = self._write_config()
        first = not os.path.exists(os.path.join(self.dir, "db", "data.mdb"))
        self._log = open(self.log_path, "ab")
        # -d keeps slapd in the foreground, so it is our child and dies with us
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", self.uri + "/", "-f", conf],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()
        if first:
            dc = self.suffix.split(",")[0].split("=")[1]
            self.add("dn: {}\nobjectClass: dcObject\nobjectClass: organization\n"
                     "o: test\ndc: {}\n".format(self.suffix, dc))
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                self.proc = None
                raise RuntimeError("slapd exited during start:\n" + self.log_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd not listening after {}s:\n{}".format(START_TIMEOUT, self.log_text()))

    def add(self, ldif):
        """Add entries as the rootdn; raises on any ldapadd error."""
        p = subprocess.run([LDAPADD, "-x", "-H", self.uri, "-D", self.rootdn, "-w", self.rootpw],
                           input=ldif, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("ldapadd failed ({}): {}{}".format(p.returncode, p.stdout, p.stderr))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; the data stays for a restart."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def main():
    ap = argparse.ArgumentParser(description="run a throw-away slapd on 127.0.0.1")
    ap.add_argument("--dir", required=True, help="directory for its config and data")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ldif", help="entries to add after the start")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    d = Slapd(args.dir, port=args.port or None).start()
    if args.ldif:
        with open(args.ldif) as f:
            d.add(f.read())
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    print("ready", d.uri, flush=True)
    while not stopping and d.running():
        time.sleep(0.2)
    d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
