"""A recording SMTP server (aiosmtpd) standing in for the protected mail
server and for every MX the gateway delivers to.

It records each accepted message with its envelope and the exact bytes,
counts sessions, can refuse chosen recipients (local part "reject..." gets
550, "tempfail..." gets 451, or everything with tempfail_all) and can
advertise DSN (RFC 3461), recording the DSN parameters it received.
"""
import email.policy
import re
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

DSN_MAIL_PARAMS = ("RET", "ENVID")
DSN_RCPT_PARAMS = ("NOTIFY", "ORCPT")


def _split_params(arg, names):
    """Remove the named ESMTP parameters from a MAIL/RCPT argument (aiosmtpd
    itself knows no DSN) and return (rest, {NAME: value})."""
    found = {}
    m = re.match(r"(?is)^(\s*(?:FROM|TO):\s*<[^>]*>)(.*)$", arg or "")
    if not m:
        return arg, found
    kept = []
    for word in m.group(2).split():
        name, _, value = word.partition("=")
        if name.upper() in names:
            found[name.upper()] = value
        else:
            kept.append(word)
    return " ".join([m.group(1)] + kept), found


class RecordingSMTP(SMTP):
    """aiosmtpd's server plus the DSN parameters when the sink offers DSN.
    Text lines may be long (the gateway's own limit is what tests probe)."""

    line_length_limit = 1 << 20

    async def smtp_MAIL(self, arg):
        sink = self.event_handler.sink
        found = {}
        if sink.dsn:
            arg, found = _split_params(arg, DSN_MAIL_PARAMS)
        await super().smtp_MAIL(arg)
        if self.envelope.mail_from is not None:
            self.envelope.dsn_mail = found

    async def smtp_RCPT(self, arg):
        sink = self.event_handler.sink
        found = {}
        if sink.dsn:
            arg, found = _split_params(arg, DSN_RCPT_PARAMS)
        before = len(self.envelope.rcpt_tos)
        await super().smtp_RCPT(arg)
        if len(self.envelope.rcpt_tos) > before:
            if not hasattr(self.envelope, "dsn_rcpt"):
                self.envelope.dsn_rcpt = []
            self.envelope.dsn_rcpt.append(found)


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sink._session_started()
        if self.sink.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.sink._session_started()
        return "250 {}".format(server.hostname)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        return self.sink._record(session, envelope)


class Sink:
    def __init__(self, port, dsn=False):
        self.port = port
        self.dsn = dsn
        self.tempfail_all = False
        self.data_reply = None       # e.g. "451 4.3.0 later" for every DATA
        self.messages = []
        self.sessions = 0
        self._cond = threading.Condition()
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=port,
            server_hostname="sink.test", command_call_limit=None,
            data_size_limit=None, enable_SMTPUTF8=True)
        self._controller.factory = lambda: RecordingSMTP(
            self._controller.handler, **self._controller.SMTP_kwargs)

    def start(self):
        self._controller.start()
        return self

    def stop(self):
        self._controller.stop()

    def rcpt_reply(self, address):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <{}>: rejected by the sink".format(address)
        if self.tempfail_all or local.startswith("tempfail"):
            return "451 4.3.0 <{}>: try again later".format(address)
        return None

    def _session_started(self):
        with self._cond:
            self.sessions += 1
            self._cond.notify_all()

    def _record(self, session, envelope):
        if self.data_reply:
            return self.data_reply
        raw = bytes(envelope.original_content)
        msg = {
            "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "mail_options": list(envelope.mail_options),
            "rcpt_tos": list(envelope.rcpt_tos),
            "dsn_mail": getattr(envelope, "dsn_mail", {}),
            "dsn_rcpt": list(getattr(envelope, "dsn_rcpt", [])),
            "data": raw,
            "message_id": message_id(raw),
            "helo": getattr(session, "host_name", None),
        }
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()
        return "250 2.0.0 Ok: sink accepted"

    def snapshot(self):
        with self._cond:
            return list(self.messages)

    def wait_for(self, pred=None, count=1, timeout=30.0):
        """Wait until `count` recorded messages satisfy pred; return them.
        Raises AssertionError with what did arrive on timeout."""
        pred = pred or (lambda m: True)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "sink: {} of {} expected messages after {}s; got {}".format(
                            len(found), count, timeout,
                            [(m["mail_from"], m["rcpt_tos"], m["message_id"])
                             for m in self.messages][:20]))
                self._cond.wait(min(left, 0.5))

    def wait_message_id(self, mid, timeout=30.0):
        return self.wait_for(lambda m: m["message_id"] == mid, 1, timeout)[0]


def message_id(raw):
    m = re.search(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)", raw)
    return m.group(1).decode("ascii", "replace") if m else None


def strip_first_received(raw):
    """Return (received_header_bytes, rest): the gateway must add exactly one
    header at the top and leave everything else byte-identical."""
    assert raw.startswith(b"Received:"), raw[:200]
    pos = raw.index(b"\r\n") + 2
    while raw[pos:pos + 1] in (b" ", b"\t"):
        pos = raw.index(b"\r\n", pos) + 2
    return raw[:pos], raw[pos:]


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)
