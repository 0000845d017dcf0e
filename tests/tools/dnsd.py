#!/usr/bin/python3
"""A small authoritative DNS server for tests (UDP and TCP), built on dnslib.

    /usr/bin/python3 tests/tools/dnsd.py --port PORT --zone FILE [--address 127.0.0.1]

Zone file: one record per line, "NAME TYPE VALUE... [ttl=N]", '#' starts a
comment. TYPE is A, AAAA, MX ("example.com MX 10 mx1.example.com"), TXT
(one or more quoted strings, each one character-string), PTR, CNAME, NS, or
one of two pseudo-types: "name TIMEOUT" (queries are never answered) and
"name SERVFAIL". Names not in the file get NXDOMAIN, names present with
other types NOERROR without answers. CNAMEs are followed inside the zone.

Prints "ready" once listening on both transports. SIGHUP reloads the zone
(a broken file keeps the old zone and says why on stderr); SIGTERM exits.
"""

import argparse
import ipaddress
import re
import shlex
import signal
import socket
import socketserver
import struct
import sys
import threading

from dnslib import AAAA, CNAME, MX, NS, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord

DEFAULT_TTL = 300
UDP_PLAIN_LIMIT = 512
TCP_MAX_MESSAGE = 65535
TXT_STRING_MAX = 255


class ZoneError(Exception):
    pass


def normalize(name):
    return name.rstrip(".").lower()


def txt_strings(values):
    """Each value is one character-string; longer ones are split at 255 bytes."""
    strings = []
    for value in values:
        data = value.encode()
        if not data:
            strings.append(b"")
        for i in range(0, len(data), TXT_STRING_MAX):
            strings.append(data[i:i + TXT_STRING_MAX])
    return strings


def make_rdata(rtype, values):
    if rtype == "A":
        return A(str(ipaddress.IPv4Address(values[0])))
    if rtype == "AAAA":
        return AAAA(str(ipaddress.IPv6Address(values[0])))
    if rtype == "MX":
        if len(values) != 2:
            raise ZoneError("MX needs a preference and a host")
        return MX(values[1], int(values[0]))
    if rtype == "TXT":
        return TXT(txt_strings(values))
    if rtype == "PTR":
        return PTR(values[0])
    if rtype == "CNAME":
        return CNAME(values[0])
    if rtype == "NS":
        return NS(values[0])
    raise ZoneError("unknown type %s" % rtype)


class Zone:
    def __init__(self):
        self.records = {}     # name -> [(qtype, ttl, rdata)]
        self.timeout = set()
        self.servfail = set()

    @classmethod
    def load(cls, path):
        zone = cls()
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    zone.add_line(line)
                except (ValueError, ZoneError) as e:
                    raise ZoneError("%s:%d: %s" % (path, lineno, e)) from None
        return zone

    def add_line(self, line):
        tokens = shlex.split(line, comments=True)
        if not tokens:
            return
        if len(tokens) < 2:
            raise ZoneError("expected NAME TYPE VALUE...")
        name, rtype = normalize(tokens[0]), tokens[1].upper()
        values = tokens[2:]
        ttl = DEFAULT_TTL
        if values and re.fullmatch(r"ttl=\d+", values[-1]):
            ttl = int(values.pop()[4:])
        if rtype == "TIMEOUT":
            self.timeout.add(name)
            return
        if rtype == "SERVFAIL":
            self.servfail.add(name)
            return
        if not values:
            raise ZoneError("%s needs a value" % rtype)
        rdata = make_rdata(rtype, values)
        self.records.setdefault(name, []).append((getattr(QTYPE, rtype), ttl, rdata))

    def answer(self, request):
        """The reply to send, or None to stay silent."""
        reply = request.reply()
        qname = normalize(str(request.q.qname))
        qtype = request.q.qtype
        if qname in self.timeout:
            return None
        if qname in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        name = qname
        for _ in range(8):   # CNAME chain inside the zone, loops cut short
            if name not in self.records:
                if name == qname:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            records = self.records[name]
            matches = [r for r in records if qtype in (r[0], QTYPE.ANY)]
            if matches:
                for rt, ttl, rdata in matches:
                    reply.add_answer(RR(name + ".", rt, ttl=ttl, rdata=rdata))
                return reply
            cnames = [r for r in records if r[0] == QTYPE.CNAME]
            if not cnames:
                return reply
            _, ttl, rdata = cnames[0]
            reply.add_answer(RR(name + ".", QTYPE.CNAME, ttl=ttl, rdata=rdata))
            name = normalize(str(rdata.label))
        return reply


class State:
    """The current zone; swapped whole on reload, so readers need no lock."""

    def __init__(self, path):
        self.path = path
        self.zone = Zone.load(path)

    def reload(self):
        try:
            self.zone = Zone.load(self.path)
        except (OSError, ZoneError) as e:
            print("dnsd: reload failed, keeping the old zone: %s" % e, file=sys.stderr, flush=True)


def udp_limit(request):
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_PLAIN_LIMIT, rr.rclass)
    return UDP_PLAIN_LIMIT


def respond(state, data, limit):
    try:
        request = DNSRecord.parse(data)
    except Exception:    # dnslib raises several types on garbage
        return None
    if not request.questions:
        return None
    reply = state.zone.answer(request)
    if reply is None:
        return None
    packed = reply.pack()
    if len(packed) > limit:
        reply = request.reply()
        reply.header.tc = 1
        packed = reply.pack()
    return packed


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        try:
            request = DNSRecord.parse(data)
            limit = udp_limit(request)
        except Exception:
            return
        packed = respond(self.server.state, data, limit)
        if packed is not None:
            sock.sendto(packed, self.client_address)


class TCPHandler(socketserver.BaseRequestHandler):
    def read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self):
        while True:
            head = self.read_exact(2)
            if head is None:
                return
            data = self.read_exact(struct.unpack("!H", head)[0])
            if data is None:
                return
            packed = respond(self.server.state, data, TCP_MAX_MESSAGE)
            if packed is not None:
                self.request.sendall(struct.pack("!H", len(packed)) + packed)


def make_server(base, handler, address, port, state):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    cls = type("Server", (socketserver.ThreadingMixIn, base),
               {"address_family": family, "daemon_threads": True, "allow_reuse_address": True})
    server = cls((address, port), handler)
    server.state = state
    return server


def main():
    parser = argparse.ArgumentParser(description="authoritative test DNS server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()

    try:
        state = State(args.zone)
    except (OSError, ZoneError) as e:
        print("dnsd: %s" % e, file=sys.stderr)
        return 1
    # Signals are taken synchronously by the main thread (sigwait), so the
    # server threads must never see them: block them before starting those.
    signals = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    servers = [make_server(socketserver.UDPServer, UDPHandler, args.address, args.port, state),
               make_server(socketserver.TCPServer, TCPHandler, args.address, args.port, state)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    while signal.sigwait(signals) == signal.SIGHUP:
        state.reload()
    # the server threads are daemons: leaving main ends them and the sockets
    return 0


if __name__ == "__main__":
    sys.exit(main())
