"""A byte-exact SMTP client on a plain socket: for pipelining, smuggling
and limit tests where smtplib would fix up what we want to send."""
import re
import socket
import ssl
import time

REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines          # text after the code, one per line

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        m = re.match(r"^(\d\.\d{1,3}\.\d{1,3})\b", self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    @property
    def queue_id(self):
        """The id of "250 2.0.0 Ok: queued as ID", or None."""
        m = re.search(r"queued as ([0-9A-Za-z]+)", self.text)
        return m.group(1) if m else None

    def __repr__(self):
        return "Reply({} {!r})".format(self.code, self.text)


class ConnectionClosed(Exception):
    pass


class RawSMTP:
    def __init__(self, port, host="127.0.0.1", timeout=15.0, tls=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        if tls:
            self.sock = unverified_context().wrap_socket(self.sock, server_hostname="mx.postern.test")
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            raise ConnectionClosed("connection closed; pending {!r}".format(self.buf))
        self.buf += chunk

    def read_line(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        while b"\r\n" not in self.buf:
            self._fill(timeout)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, timeout=None):
        """Read one (possibly multi-line) reply."""
        lines = []
        code = None
        while True:
            line = self.read_line(timeout)
            m = REPLY_LINE.match(line)
            if not m:
                raise AssertionError("malformed reply line {!r}".format(line))
            if code is not None and int(m.group(1)) != code:
                raise AssertionError("reply code changed inside a reply: {!r}".format(line))
            code = int(m.group(1))
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(code, lines)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.example.org"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        assert not self.buf
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="mx.postern.test")
        return r

    def replies_until_close(self, timeout=None):
        """Every reply up to the server closing the connection."""
        out = []
        while True:
            try:
                out.append(self.reply(timeout))
            except (ConnectionClosed, socket.timeout):
                return out

    def closed(self, timeout=10.0):
        """True when the server closes without sending anything more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return False
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not chunk:
                return True
            self.buf += chunk
            return False
        return False


def unverified_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(subject="test", body="Hello.\r\n", mid=None, sender="sender@example.org",
            to="rcpt@example.com", extra=""):
    """A small RFC 5322 message with CRLF line ends (bytes)."""
    mid = mid or make_message_id()
    text = ("From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: {}\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n{}\r\n{}").format(
                sender, to, subject, mid, extra, body)
    return text.encode("utf-8")


_counter = [0]


def make_message_id():
    _counter[0] += 1
    return "<{}.{}.{}@test.client>".format(int(time.time() * 1e6), _counter[0], id(_counter))


def dot_stuff(data):
    """SMTP transparency for a CRLF message; appends the terminator."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
