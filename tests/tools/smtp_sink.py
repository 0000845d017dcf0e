#!/usr/bin/python3
"""An SMTP server for tests, on aiosmtpd, that keeps what it receives.

    /usr/bin/python3 tests/tools/smtp_sink.py --port PORT --dir DIR [options]

Recipients whose local part starts with "reject" get 550, with "tempfail"
451; everyone else 250. Every accepted message is written to DIR as
N.msg (the data as received, dot-unstuffed) and N.env (one "key value"
line each: from, rcpt (repeated), mail_options, session, pipelined, tls).
Every new connection appends "session N" to DIR/sessions.

Options: --pipelining advertises PIPELINING (aiosmtpd reads commands in
order anyway); --no-ehlo answers EHLO with 502 so clients fall back to
HELO; --smtputf8 advertises SMTPUTF8; --tls CERT KEY offers STARTTLS.
Prints "ready" once listening; exits on SIGTERM.
"""

import argparse
import itertools
import os
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, pipelining, no_ehlo):
        self.dir = directory
        self.pipelining = pipelining
        self.no_ehlo = no_ehlo
        self.sessions = itertools.count(1)
        self.messages = itertools.count(1)

    def session_number(self, session):
        if not hasattr(session, "postern_number"):
            session.postern_number = next(self.sessions)
            with open(os.path.join(self.dir, "sessions"), "a", encoding="ascii") as f:
                f.write("session %d\n" % session.postern_number)
        return session.postern_number

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.session_number(session)
        if self.no_ehlo:
            return ["502 5.5.1 EHLO not implemented"]
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.session_number(session)
        session.host_name = hostname
        return "250 %s" % server.hostname

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # commands already waiting behind MAIL were sent without waiting for its reply
        session.postern_pipelined = len(server._reader._buffer) > 0
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        if local.startswith("tempfail"):
            return "451 4.3.0 <%s>: Try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.messages)
        base = os.path.join(self.dir, str(n))
        with open(base + ".msg", "wb") as f:
            f.write(envelope.original_content)
        lines = ["from %s" % envelope.mail_from]
        lines += ["rcpt %s" % r for r in envelope.rcpt_tos]
        lines.append("mail_options %s" % " ".join(envelope.mail_options))
        lines.append("session %d" % self.session_number(session))
        lines.append("pipelined %d" % getattr(session, "postern_pipelined", False))
        lines.append("tls %d" % (session.ssl is not None))
        # the .env file appears last and whole: readers wait for it
        with open(base + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(base + ".tmp", base + ".env")
        return "250 2.0.0 Ok: queued as %d" % n


def main():
    parser = argparse.ArgumentParser(description="SMTP sink for tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--no-ehlo", action="store_true")
    parser.add_argument("--smtputf8", action="store_true")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()

    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls[0], args.tls[1])
    handler = Sink(args.dir, args.pipelining, args.no_ehlo)
    controller = Controller(handler, hostname=args.address, port=args.port,
                            server_hostname="sink.test", enable_SMTPUTF8=args.smtputf8,
                            decode_data=False, tls_context=tls)
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    controller.start()
    print("ready", flush=True)
    signal.sigwait(signals)
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
