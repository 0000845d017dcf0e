"""The process around the SMTP service: configuration checks, refusing a
bad config, shutdown with sessions open, password hashing, large
messages, local and relayed recipients together, Maildir quota."""
import os
import pwd
import re
import stat
import subprocess

from dsnreport import Report
from rawsmtp import message
from sink import message_id, strip_first_received


def test_check_config_accepts_the_test_config(gateway):
    gw = gateway(start=False)
    p = subprocess.run([gw.binary, "check-config", gw.config_path], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration OK" in p.stdout
    p = subprocess.run([gw.binary, "check-config", gw.config_path, "--dump"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert re.search(r"(?m)^\s*max_recipients\s*=\s*100\s*$", p.stdout), p.stdout[:2000]


def test_check_config_points_at_the_bad_line(gateway):
    gw = gateway(start=False)
    gw.update({"limits": {"max_recipients": "lots"}})
    with open(gw.config_path) as f:
        bad_line = 1 + [line.startswith("max_recipients") for line in f].index(True)
    p = subprocess.run([gw.binary, "check-config", gw.config_path], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "{}:{}:".format(gw.config_path, bad_line) in out, out
    assert "max_recipients" in out, out


def test_serve_refuses_a_bad_config(gateway):
    gw = gateway(start=False)
    gw.update({"limits": {"max_recipients": "0"}})
    p = subprocess.run([gw.binary, "serve", "-c", gw.config_path], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    assert "max_recipients" in p.stdout + p.stderr, p.stdout + p.stderr


def test_sigterm_with_open_sessions(gateway, sink):
    """Shutdown while clients are connected, one in the middle of DATA:
    exit status 0 (the fixture checks it and the sanitizers), and the
    half-received message is never delivered after a restart."""
    gw = gateway()
    idle = gw.raw()
    busy = gw.raw()
    partial = message(subject="half")
    try:
        idle.reply()
        busy.reply()
        busy.ehlo()
        assert busy.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert busy.cmd("RCPT TO:<user@example.com>").code == 250
        assert busy.cmd("DATA").code == 354
        busy.send(partial[:40])
        assert gw.stop() == 0, gw.current_log()[-3000:]
    finally:
        idle.close()
        busy.close()
    gw.start()
    data = message(subject="after restart")
    with gw.smtp() as s:
        s.sendmail("sender@example.org", ["user@example.com"], data)
    sink.wait_message_id(message_id(data))
    gw.wait_queue_empty()
    assert all(m["message_id"] != message_id(partial) for m in sink.snapshot())


def test_passwd_check(postern_bin, password_hashes):
    h = password_hashes["bob@local.test"]
    good = subprocess.run([postern_bin, "passwd", "--check", h], input="bob-Secret-1\n",
                          capture_output=True, text=True, timeout=60)
    bad = subprocess.run([postern_bin, "passwd", "--check", h], input="bob-Secret-2\n",
                         capture_output=True, text=True, timeout=60)
    assert (good.returncode, bad.returncode) == (0, 1), (good.stderr, bad.stderr)
    empty = subprocess.run([postern_bin, "passwd"], input="\n", capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode != 0


def test_large_message_relayed_intact(gateway, sink):
    gw = gateway({"limits": {"max_message_size": "2M"}})
    lines = "".join("{:06d} {}\r\n".format(i, "abcdefghij" * 7) for i in range(20000))
    data = message(subject="large", body=".starts with a dot\r\n" + lines)
    assert len(data) > 1500000
    with gw.smtp(timeout=60) as s:
        assert s.sendmail("sender@example.org", ["big@example.com"], data) == {}
    got = sink.wait_message_id(message_id(data), timeout=60)
    assert strip_first_received(got["data"])[1] == data


def test_local_and_relayed_recipients_together(gateway, sink):
    gw = gateway()
    data = message(subject="split")
    with gw.smtp() as s:
        assert s.sendmail("sender@example.org",
                          ["alice@local.test", "far@example.com", "bob@local.test"], data) == {}
    got = sink.wait_message_id(message_id(data))
    assert got["rcpt_tos"] == ["far@example.com"]
    for user in ("alice@local.test", "bob@local.test"):
        (m,) = gw.wait_maildir(user)
        assert m.endswith(data)


def test_maildir_quota_bounces(gateway, sink):
    """Over quota is permanent (552 5.2.2): the sender gets a report."""
    gw = gateway({'user "alice@local.test"': {"quota": "2k"}})
    data = message(subject="too big for alice", sender="bob@local.test",
                   body=("w" * 70 + "\r\n") * 60)
    assert len(data) > 2048
    assert gw.transaction("bob@local.test", ["alice@local.test"], data).code == 250
    (bounce,) = gw.wait_maildir("bob@local.test", timeout=30)
    block = Report(bounce).recipient("alice@local.test")
    assert block.get("Status", "").strip() == "5.2.2", block
    assert gw.maildir_messages("alice@local.test") == []


def test_runs_unprivileged_and_keeps_mail_private(gateway, sink):
    """After binding, the daemon has dropped root for the configured user;
    the spool holds mail nobody else can read; the admin socket is 0660."""
    sink.tempfail_all = True
    gw = gateway({"queue": {"retry_min": "1h", "retry_max": "1h"}})
    want = pwd.getpwnam(gw.sections["server"]["user"])
    with open("/proc/{}/status".format(gw.proc.pid)) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    uids = [int(u) for u in status["Uid"].split()]
    gids = [int(g) for g in status["Gid"].split()]
    assert uids == [want.pw_uid] * 4, uids
    assert gids == [want.pw_gid] * 4, gids
    assert gw.transaction("sender@example.org", ["user@example.com"],
                          message(subject="private")).code == 250
    spool = gw.sections["queue"]["dir"]
    files = [os.path.join(root, n) for root, _, names in os.walk(spool) for n in names]
    assert files, "nothing in the spool"
    for path in files + [spool]:
        st = os.stat(path)
        assert st.st_mode & 0o007 == 0, "{} is world-accessible: {:o}".format(path, st.st_mode)
        assert st.st_uid == want.pw_uid, path
    assert stat.S_IMODE(os.stat(gw.socket_path).st_mode) == 0o660
