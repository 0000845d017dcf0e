"""Shared plumbing of the benchmarks: free ports, Postfix's smtp-sink as a
counting sink, a private Postfix instance (its own config and queue
directories, started with `postfix -c DIR`), a postern instance, RSS."""
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    """Raise RLIMIT_NOFILE as far as allowed (inherited by every daemon
    started afterwards); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass     # no CAP_SYS_RESOURCE: the hard limit is the ceiling
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid):
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid {}".format(pid))


def wait_port(port, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("{} does not answer on port {}".format(what, port))


def require(*programs):
    missing = [p for p in programs if shutil.which(p) is None and not os.path.exists(p)]
    if missing:
        raise SystemExit("missing: {} (run `make test-deps`)".format(", ".join(missing)))


class SmtpSink:
    """smtp-sink -c: counts every message it accepted ("mesg=N")."""

    def __init__(self, workdir):
        self.port = free_port()
        self.count = 0
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "postfix", "-c", "-m", "2000", "-h", "sink.bench",
             "127.0.0.1:{}".format(self.port), "4096"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "smtp-sink.err"), "wb"))
        threading.Thread(target=self._read, daemon=True).start()
        wait_port(self.port, 10, "smtp-sink")

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                return
            buf = (buf + chunk)[-256:]
            found = re.findall(rb"mesg=(\d+)", buf)
            if found:
                with self._cond:
                    self.count = int(found[-1])
                    self._cond.notify_all()

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("sink got {} of {} messages in {}s".format(
                        self.count, n, timeout))
                self._cond.wait(min(left, 1.0))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Internal services every Postfix instance needs (chroot off: the private
# queue directory has no copies of /etc files).
POSTFIX_INTERNAL = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance under workdir/postfix; nothing of the
    system's /etc/postfix or /var/spool/postfix is touched."""

    def __init__(self, workdir, main, listeners):
        self.dir = os.path.join(workdir, "postfix")
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "bench.postfix.test",
            "mydomain": "postfix.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "maillog_file": os.path.join(self.dir, "maillog"),
            "maillog_file_prefixes": self.dir,
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            # Fairness: no DNS anywhere (the sink is an IP literal).
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
        }
        params.update(main)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for k, v in params.items():
                f.write("{} = {}\n".format(k, v))
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(listeners + POSTFIX_INTERNAL)
        self.started = False

    def postfix(self, *args, check=True):
        p = subprocess.run(["postfix", "-c", self.config_dir] + list(args),
                           capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError("postfix {} failed: {}{}\n{}".format(
                " ".join(args), p.stdout, p.stderr, self.log_tail()))
        return p

    def start(self):
        self.postfix("start")
        self.started = True

    def stop(self):
        if self.started or self.master_pid():
            self.postfix("stop", check=False)
            # Wait for the master to go (it removes its pid file's lock).
            deadline = time.monotonic() + 30
            while self.master_pid() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.started = False

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def child_pids(self, name):
        """Pids of the master's children whose command is `name`."""
        master = self.master_pid()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/{}/stat".format(entry)) as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if comm == name and ppid == master:
                out.append(int(entry))
        return out

    def queue_count(self):
        """Messages still in the queue (any state)."""
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue_dir, sub)):
                n += len(files)
        return n

    def log_tail(self, n=4000):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class Postern:
    """The release build of postern with a config for the benchmark."""

    def __init__(self, workdir, binary, sections):
        self.dir = os.path.join(workdir, "postern")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.binary = binary
        self.config = os.path.join(self.dir, "postern.conf")
        with open(self.config, "w") as f:
            for name, keys in sections.items():
                f.write("[{}]\n".format(name))
                for k, v in keys.items():
                    f.write("{} = {}\n".format(k, v))
                f.write("\n")
        self.log = os.path.join(self.dir, "postern.log")
        self.proc = None

    def start(self, port, timeout=30):
        self.proc = subprocess.Popen([self.binary, "serve", "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postern exited {}:\n{}".format(self.proc.returncode,
                                                                   self.log_tail()))
            with open(self.log, errors="replace") as f:
                ready = re.search(r"\bready\b", f.read())
            if ready:
                wait_port(port, 10, "postern")
                return
            time.sleep(0.1)
        raise RuntimeError("postern not ready:\n" + self.log_tail())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=4000):
        with open(self.log, errors="replace") as f:
            return f.read()[-n:]


def postern_binary():
    path = os.environ.get("POSTERN_BIN") or os.path.join(REPO, "build", "postern")
    if not os.access(path, os.X_OK):
        raise SystemExit("no postern binary at {} (make build, or set POSTERN_BIN)".format(path))
    return path


def postern_user():
    return "postern" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
