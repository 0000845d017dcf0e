"""
The OpenSPF RFC 7208 test suite against `postern spf`.

Every scenario's zonedata is served by an in-process DNS server (dnslib
for the wire format) following the suite's driver conventions (those of
pyspf's testspf.py):
  - SPF entries are copied to TXT unless the name has a TXT entry of its own
    ("TXT: NONE" only suppresses the copy); the SPF type itself is served too;
  - TIMEOUT makes a query of a type with no record listed before it fail
    (answered SERVFAIL, which the resolver reports as a temporary error);
  - CNAME chains are followed inside the zone.
One pytest case per suite test; `result` may be a list of acceptable
results; `explanation: DEFAULT` means the implementation's own text.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/integration/test_spf_suite.py
The binary is $POSTERN_BIN (default build/postern, else build-asan/postern).
Set SPF_SUITE=rfc4408 to run the older suite instead (informational).
"""
import ipaddress
import json
import os
import socket
import subprocess
import threading

import pytest
import yaml
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord

SUITE_DIR = os.environ.get("SPF_SUITE_DIR", "/work/shared/testsuites/spf")
SUITE = os.environ.get("SPF_SUITE", "rfc7208")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def postern_bin():
    env = os.environ.get("POSTERN_BIN")
    if env:
        return env
    for d in ("build", "build-asan"):
        p = os.path.join(ROOT, d, "postern")
        if os.access(p, os.X_OK):
            return p
    return os.path.join(ROOT, "build", "postern")


def load_scenarios():
    path = os.path.join(SUITE_DIR, SUITE + "-tests.yml")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def txt_strings(value):
    """A TXT value as a list of byte strings, each at most 255 octets."""
    parts = value if isinstance(value, list) else [value]
    out = []
    for p in parts:
        b = str(p).encode("utf-8")
        if not b:
            out.append(b)
        while b:
            out.append(b[:255])
            b = b[255:]
    return out


def load_zone(zonedata):
    """name -> list of (type, value) in suite order, plus generated TXT copies."""
    zone = {}
    for name, entries in (zonedata or {}).items():
        recs, copies, gen = [], [], True
        for e in entries or []:
            if e == "TIMEOUT":
                recs.append(("TIMEOUT", None))
                continue
            for t, v in e.items():
                if t == "TXT":
                    gen = False
                elif t == "SPF":
                    copies.append(("TXT", v))
                if v != "NONE":
                    recs.append((t, v))
        if gen:
            recs.extend(copies)
        zone[name.lower().rstrip(".")] = recs
    return zone


class SuiteDNS:
    """A UDP DNS server answering from the current scenario's zone."""

    def __init__(self):
        self.zone = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self.answer(DNSRecord.parse(data))
            except Exception:  # a query we cannot parse gets no answer
                continue
            if reply is not None:
                self.sock.sendto(reply.pack(), peer)

    def lookup(self, name, qtype):
        """(records, timed_out) for one name, per the suite's TIMEOUT rule."""
        recs = self.zone.get(name)
        if recs is None:
            return None, False
        found = []
        for t, v in recs:
            if t == "TIMEOUT":
                if not found:
                    return [], True
                continue
            if t == qtype or t == "CNAME":
                found.append((t, v))
        return found, False

    def answer(self, q):
        reply = q.reply()
        # labels as raw text: str() would escape the spaces some tests use
        name = ".".join(l.decode("latin-1") for l in q.q.qname.label).lower()
        qtype = QTYPE[q.q.qtype]
        owner = str(q.q.qname)
        for _ in range(8):
            found, timed_out = self.lookup(name, qtype)
            if timed_out:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if found is None:
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cname = None
            for t, v in found:
                if t == "CNAME" and qtype != "CNAME":
                    cname = str(v)
                    reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(cname), ttl=60))
                elif t == qtype:
                    reply.add_answer(RR(owner, getattr(QTYPE, t), rdata=self.rdata(t, v), ttl=60))
            if cname is None:
                return reply
            owner = cname
            name = cname.lower().rstrip(".")
        return reply

    @staticmethod
    def rdata(t, v):
        if t in ("TXT", "SPF"):
            return TXT(txt_strings(v))
        if t == "A":
            return A(str(v))
        if t == "AAAA":
            return AAAA(str(ipaddress.IPv6Address(str(v))))
        if t == "MX":
            return MX(str(v[1]), int(v[0]))
        if t == "PTR":
            return PTR(str(v))
        raise ValueError(t)

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def dns():
    server = SuiteDNS()
    yield server
    server.close()


def cases():
    out = []
    for scen in load_scenarios():
        zone = load_zone(scen.get("zonedata"))
        for tname, t in (scen.get("tests") or {}).items():
            sid = scen["description"].lower().replace(" ", "-")
            out.append(pytest.param(zone, t, id=f"{sid}/{tname}"))
    return out


def run_check(dns, t):
    cmd = [postern_bin(), "spf", "--dns", f"127.0.0.1:{dns.port}", "--timeout", "500",
           "--ip", str(t["host"]), "--helo", str(t["helo"]),
           "--sender", str(t.get("mailfrom", "")), "--json"]
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


@pytest.mark.parametrize("zone,t", cases())
def test_spf_suite(dns, zone, t):
    dns.zone = zone
    out = run_check(dns, t)
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    assert out["result"] in want, out
    if "explanation" in t:
        if t["explanation"] == "DEFAULT":
            assert out["explanation_default"], out
        else:
            assert out["explanation"] == t["explanation"], out
