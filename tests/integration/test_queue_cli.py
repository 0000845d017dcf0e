"""The operator's view: `postern queue ...`, `postern status`, `postern
reload` and SIGHUP, against a running gateway over its admin socket."""
import json
import os
import socket
import subprocess

from gateway import stat_value, wait_until
from rawsmtp import message
from sink import message_id

LONG_RETRY = {"queue": {"retry_min": "1h", "retry_max": "1h", "lifetime": "5d"}}


def send(gw, rcpt="user@example.com", subject="queued"):
    data = message(subject=subject, to=rcpt)
    r = gw.transaction("sender@example.org", [rcpt], data)
    assert r.code == 250 and r.queue_id, r
    return r.queue_id, data


def find(queue, qid):
    for m in queue:
        if m["id"] == qid:
            return m
    return None


def deferred(gw, qid):
    m = find(gw.queue_list(), qid)
    return m is not None and m["attempts"] >= 1 and not m["active"] and m


def test_queue_list_hold_release_flush_delete(gateway, sink):
    sink.tempfail_all = True
    gw = gateway(LONG_RETRY)
    id1, data1 = send(gw, subject="one")
    id2, data2 = send(gw, subject="two")
    id3, data3 = send(gw, subject="three")

    m1 = wait_until(lambda: deferred(gw, id1), timeout=30, what="first attempt of " + id1)
    wait_until(lambda: deferred(gw, id2) and deferred(gw, id3), timeout=30, what="attempts")
    assert m1["sender"] == "sender@example.org"
    assert m1["size"] >= len(data1)
    assert isinstance(m1["arrival"], int) and isinstance(m1["next_attempt"], int)
    assert m1["next_attempt"] > m1["arrival"]
    (r,) = m1["recipients"]
    assert r["addr"] == "user@example.com" and r["state"] == "pending", r
    assert "451" in (r["last_reply"] or "") or "451" in (m1["last_error"] or ""), m1
    assert m1["held"] is False

    shown = gw.cli_json("queue", "show", id1)
    assert shown["id"] == id1
    assert message_id(data1) in shown["headers"], shown["headers"]
    assert shown["client_helo"] == "client.example.org"
    assert shown["client_addr"].startswith("127.0.0.1") or "127.0.0.1" in shown["client_addr"]

    gw.cli("queue", "hold", id1, check=0)
    assert find(gw.queue_list(), id1)["held"] is True
    gw.cli("queue", "delete", id3, check=0)
    assert find(gw.queue_list(), id3) is None

    sink.tempfail_all = False
    gw.cli("queue", "flush", check=0)
    sink.wait_message_id(message_id(data2))
    wait_until(lambda: find(gw.queue_list(), id2) is None, timeout=30, what="id2 leaves the queue")
    assert find(gw.queue_list(), id1)["held"] is True, "a held message was delivered or lost"
    assert all(m["message_id"] != message_id(data1) for m in sink.snapshot())

    gw.cli("queue", "release", id1, check=0)
    p = gw.cli("queue", "flush", id1)
    # Release may already have made it due and delivered it.
    assert p.returncode == 0 or find(gw.queue_list(), id1) is None, p.stderr
    sink.wait_message_id(message_id(data1))
    gw.wait_queue_empty(timeout=30)
    assert all(m["message_id"] != message_id(data3) for m in sink.snapshot()), "deleted, yet delivered"

    status = gw.cli_json("status")
    assert stat_value(status, "messages", "accepted") >= 3, status
    assert stat_value(status, "sessions", "total") >= 3, status
    assert stat_value(status, "pid") == gw.proc.pid


def test_queue_human_output(gateway, sink):
    sink.tempfail_all = True
    gw = gateway(LONG_RETRY)
    qid, _ = send(gw)
    wait_until(lambda: deferred(gw, qid), timeout=30, what="a deferral")
    p = gw.cli("queue", "list", check=0)
    assert qid in p.stdout and "sender@example.org" in p.stdout and "user@example.com" in p.stdout
    assert "1 message" in p.stdout, p.stdout
    p = gw.cli("status", check=0)
    assert "pid" in p.stdout.lower(), p.stdout


def test_queue_errors(gateway):
    gw = gateway()
    p = gw.cli("queue", "hold", "NOSUCHID00000", check=1)
    assert p.stderr or p.stdout
    gw.cli("queue", "delete", "bad/id", check=1)
    gw.cli("queue", "bogus", check=2)
    gw.cli("queue", "show", check=2)


def test_cli_without_gateway(postern_bin, workdir):
    sock = os.path.join(workdir, "nothing.sock")
    p = subprocess.run([postern_bin, "status", "--socket", sock], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert "cannot connect" in p.stderr, p.stderr


def test_admin_socket_speaks_json(gateway):
    """The socket protocol itself: one JSON object per line."""
    gw = gateway()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(gw.socket_path)
        f = s.makefile("rwb")
        for req, ok in ((b'{"cmd":"status"}\n', True), (b'{"cmd":"nope"}\n', False),
                        (b'not json\n', False), (b'{"cmd":"queue.show","id":"../x"}\n', False)):
            f.write(req)
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"] is ok, (req, reply)
            assert ("result" in reply) if ok else isinstance(reply.get("error"), str), reply


def relay_reply(gw, domain):
    with gw.raw() as c:
        c.reply()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        return c.cmd("RCPT TO:<user@{}>".format(domain)).code


def test_reload_by_sighup_and_cli(gateway, sink):
    gw = gateway()
    assert relay_reply(gw, "newdomain.test") == 550
    before = stat_value(gw.cli_json("status"), "reloads")

    gw.update({'domain "newdomain.test"': {"hosts": "127.0.0.1:{}".format(sink.port)}})
    gw.reload_signal()
    wait_until(lambda: relay_reply(gw, "newdomain.test") == 250, timeout=20, what="SIGHUP reload")

    gw.update({'domain "newdomain.test"': None})
    gw.cli("reload", check=0)
    assert relay_reply(gw, "newdomain.test") == 550
    assert stat_value(gw.cli_json("status"), "reloads") >= before + 2


def test_reload_of_a_broken_config_keeps_the_old_one(gateway, sink):
    gw = gateway()
    gw.update({"limits": {"no_such_key": "1"}})
    p = gw.cli("reload", check=1)
    assert "no_such_key" in p.stderr + p.stdout, p.stderr + p.stdout
    data = message(subject="after failed reload")
    with gw.smtp() as s:
        s.sendmail("sender@example.org", ["user@example.com"], data)
    sink.wait_message_id(message_id(data))


def test_restart_recovers_queue(gateway, sink):
    """A deferred message survives a clean restart and is delivered later."""
    sink.tempfail_all = True
    gw = gateway(LONG_RETRY)
    qid, data = send(gw)
    wait_until(lambda: deferred(gw, qid), timeout=30, what="a deferral")
    assert gw.stop() == 0
    sink.tempfail_all = False
    gw.start()
    assert find(gw.queue_list(), qid) is not None or \
        any(m["message_id"] == message_id(data) for m in sink.snapshot())
    gw.cli("queue", "flush", check=0)
    sink.wait_message_id(message_id(data))
    gw.wait_queue_empty()


def admin_exchange(gw, payload):
    """Send raw bytes to the admin socket (the whole of them, as a client
    that writes before it reads would), then read every reply line until
    the gateway closes the connection."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(gw.socket_path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return [json.loads(line) for line in data.splitlines()]
            data += chunk


def test_admin_request_too_long(gateway):
    """A line over 64 KiB is read to its end and refused; the client can
    read why before the connection closes, and the gateway still serves."""
    gw = gateway()
    big = b'{"cmd":"status","pad":"' + b"x" * (300 * 1024) + b'"}\n'
    assert admin_exchange(gw, big) == [{"ok": False, "error": "request too long"}]
    # the same without a newline: the end of the line is the client's EOF
    assert admin_exchange(gw, big.rstrip(b"\n")) == [{"ok": False, "error": "request too long"}]
    # a request after the over-long one on the same connection is not answered
    replies = admin_exchange(gw, big + b'{"cmd":"status"}\n')
    assert replies == [{"ok": False, "error": "request too long"}], replies
    # exactly 64 KiB is still a request (malformed here, but read as one)
    edge = b'{"cmd":"status","pad":"' + b"y" * (64 * 1024 - 25) + b'"}\n'
    assert len(edge) == 64 * 1024 + 1
    (reply,) = admin_exchange(gw, edge)
    assert reply["ok"] is True, reply
    assert gw.cli_json("status")


def test_admin_empty_request(gateway):
    gw = gateway()
    replies = admin_exchange(gw, b'\n{"cmd":"status"}\n\r\n')
    assert [r["ok"] for r in replies] == [False, True, False], replies
    assert replies[0] == {"ok": False, "error": "empty request"}
    assert replies[2] == {"ok": False, "error": "empty request"}
