"""Run the real postern binary: write its config, start `postern serve`,
wait until it is ready, talk to it, stop it and check it exited cleanly
without sanitizer reports."""
import json
import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import time

from rawsmtp import RawSMTP, dot_stuff, unverified_context

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer")
START_TIMEOUT = float(os.environ.get("POSTERN_START_TIMEOUT", "30"))


_ports_given = set()


def free_port():
    """A free port not handed out before in this run: the kernel may offer
    the same ephemeral port again once the probe socket is closed, and two
    listeners of one gateway must never share one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def run_user():
    """The account the daemon drops to: `postern` when we are root."""
    if os.geteuid() == 0:
        return "postern"
    return pwd.getpwuid(os.geteuid()).pw_name


def give_to_daemon(path):
    """A directory the daemon writes after dropping root."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(run_user())
        os.chown(path, pw.pw_uid, pw.pw_gid)


def render_config(sections):
    """{"server": {...}, 'domain "example.com"': {...}} -> config text.
    A value None drops the key; lists are joined with commas."""
    out = ["# written by tests/integration/gateway.py"]
    for name, keys in sections.items():
        if keys is None:
            continue
        out.append("")
        out.append("[{}]".format(name))
        for key, value in keys.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "yes" if value else "no"
            elif isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
            out.append("{} = {}".format(key, value))
    return "\n".join(out) + "\n"


def merge(base, overrides):
    """Section-wise merge; a section set to None in overrides is removed."""
    result = {k: dict(v) for k, v in base.items()}
    for name, keys in (overrides or {}).items():
        if keys is None:
            result.pop(name, None)
            continue
        result.setdefault(name, {}).update(keys)
    return result


class Gateway:
    def __init__(self, binary, workdir, sections, env=None):
        self.binary = binary
        self.dir = workdir
        self.sections = sections
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.config_path = os.path.join(workdir, "postern.conf")
        self.socket_path = sections["server"]["admin_socket"]
        self.proc = None
        self.was_ready = False
        self.starts = 0
        self.logs = []          # one stderr file per start
        self.write_config()

    # -- configuration -------------------------------------------------
    @property
    def port(self):
        return self._listen_port("")

    @property
    def smtps_port(self):
        return self._listen_port("/smtps")

    @property
    def submission_port(self):
        return self._listen_port("/submission")

    def _listen_port(self, kind):
        for spec in self.sections["server"]["listen"]:
            addr, _, rest = spec.rpartition(":")
            port, _, k = rest.partition("/")
            if ("/" + k if k else "") == kind:
                return int(port)
        raise KeyError("no listener of kind " + (kind or "smtp"))

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(render_config(self.sections))

    def update(self, overrides):
        self.sections = merge(self.sections, overrides)
        self.write_config()

    # -- process ---------------------------------------------------------
    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = os.path.join(self.dir, "stderr.{}.log".format(self.starts))
        self.logs.append(log)
        self._logf = open(log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            env=self.env, cwd=self.dir)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        """Ready = the "ready" log line of this start and the SMTP port answers."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("postern exited with {} during start:\n{}".format(
                    self.proc.returncode, self.current_log()))
            if re.search(r"\bready\b", self.current_log()) and self._port_open():
                self.was_ready = True
                return
            time.sleep(0.05)
        raise AssertionError("postern not ready after {}s:\n{}".format(
            START_TIMEOUT, self.current_log()))

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def current_log(self):
        if not self.logs:
            return ""
        with open(self.logs[-1], "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_text(self):
        out = []
        for path in self.logs:
            with open(path, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return "\n".join(out)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._logf.close()
                return None
        self._logf.close()
        return self.proc.returncode

    def kill(self):
        """SIGKILL: the crash the durability promise is about."""
        self.proc.kill()
        self.proc.wait()
        self._logf.close()

    def reload_signal(self):
        self.proc.send_signal(signal.SIGHUP)

    def sanitizer_reports(self):
        text = self.log_text()
        return [line for line in text.splitlines()
                if any(marker in line for marker in SANITIZER_MARKERS)]

    # -- clients ---------------------------------------------------------
    def smtp(self, timeout=15):
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example.org",
                            timeout=timeout)

    def smtps(self, timeout=15):
        return smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, local_hostname="client.example.org",
                                timeout=timeout, context=unverified_context())

    def submission(self, timeout=15):
        return smtplib.SMTP("127.0.0.1", self.submission_port,
                            local_hostname="client.example.org", timeout=timeout)

    def raw(self, port=None, tls=False, timeout=15.0):
        return RawSMTP(port or self.port, tls=tls, timeout=timeout)

    def transaction(self, sender, rcpts, data, mail_params="", rcpt_params=""):
        """One whole transaction on a fresh connection (MAIL and every RCPT
        must get 250); returns the reply to the end of DATA."""
        with self.raw() as c:
            c.reply()
            c.ehlo()
            r = c.cmd("MAIL FROM:<{}>{}".format(sender, mail_params).encode())
            assert r.code == 250, r
            for rcpt in rcpts:
                r = c.cmd("RCPT TO:<{}>{}".format(rcpt, rcpt_params).encode())
                assert r.code == 250, (rcpt, r)
            r = c.cmd("DATA")
            assert r.code == 354, r
            c.send(dot_stuff(data))
            final = c.reply()
            c.cmd("QUIT")
            return final

    def cli(self, *args, check=None, timeout=60, stdin=None):
        """Run `postern ARGS --socket S`; check = expected exit status."""
        cmd = [self.binary] + list(args) + ["--socket", self.socket_path]
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout,
                           env=self.env, text=True)
        if check is not None:
            assert p.returncode == check, "{} -> {}\nstdout: {}\nstderr: {}".format(
                " ".join(cmd), p.returncode, p.stdout, p.stderr)
        return p

    def cli_json(self, *args):
        p = self.cli(*(list(args) + ["--json"]), check=0)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError("not JSON from {}: {!r}".format(args, p.stdout))

    def queue_list(self):
        result = self.cli_json("queue", "list")
        if isinstance(result, dict) and "messages" in result:
            result = result["messages"]
        assert isinstance(result, list), result
        return result

    def wait_queue_empty(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            q = self.queue_list()
            if not q:
                return
            if time.monotonic() > deadline:
                raise AssertionError("queue not empty after {}s: {}".format(timeout, q))
            time.sleep(0.2)

    def wait_idle(self, timeout=30):
        """No SMTP session open (e.g. the readiness probe's is gone)."""
        wait_until(lambda: stat_value(self.cli_json("status"), "sessions", "current") == 0,
                   timeout=timeout, what="no open sessions")

    def maildir_messages(self, address, folder=None):
        """Files in new/ of the Maildir of a local address (bytes each);
        folder: a Maildir++ folder such as ".Junk" instead of the inbox."""
        local, domain = address.split("@")
        template = self.sections["local"]["maildir"]
        path = os.path.join(template.replace("%d", domain.lower()).replace("%u", local), folder or "",
                            "new")
        if not os.path.isdir(path):
            return []
        out = []
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as f:
                out.append(f.read())
        return out

    def wait_maildir(self, address, count=1, timeout=30, folder=None):
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.maildir_messages(address, folder)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError("{}: {} of {} messages in Maildir after {}s".format(
                    address, len(msgs), count, timeout))
            time.sleep(0.1)


def wait_until(pred, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {}s waiting for {}".format(timeout, what))
        time.sleep(interval)


def stat_value(status, *path):
    """status --json fields, whether nested ({"sessions":{"total":1}}) or
    flat ({"sessions_total":1})."""
    node = status
    for i, key in enumerate(path):
        if isinstance(node, dict) and key in node:
            node = node[key]
            continue
        flat = "_".join(path[i:])
        if isinstance(node, dict) and flat in node:
            return node[flat]
        raise KeyError("{} not in status: {}".format(".".join(path), status))
    return node
