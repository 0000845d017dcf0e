"""Durability: every message that got its 250 is delivered at least once,
even when the gateway is killed with SIGKILL at random moments and
restarted on the same spool."""
import random
import smtplib
import threading
import time

from rawsmtp import message
from sink import message_id

KILLS = 4


class Sender(threading.Thread):
    """Sends messages back to back over fresh connections; remembers the
    Message-IDs the gateway acknowledged with 250."""

    def __init__(self, port, rcpt):
        super().__init__(daemon=True)
        self.port = port
        self.rcpt = rcpt
        self.accepted = []
        self.attempted = 0
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, local_hostname="crash.client",
                                  timeout=10) as s:
                    for _ in range(5):
                        n += 1
                        data = message(subject="crash {}".format(n),
                                       body="payload {}\r\n".format(n) * 50)
                        self.attempted += 1
                        try:
                            s.sendmail("sender@example.org", [self.rcpt], data)
                        except smtplib.SMTPResponseException:
                            continue
                        self.accepted.append(message_id(data))
                        if self.stopping.is_set():
                            return
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)


def test_sigkill_never_loses_accepted_mail(gateway, sink):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    gw = gateway()
    senders = [Sender(gw.port, "user{}@example.com".format(i)) for i in range(2)]
    for s in senders:
        s.start()
    try:
        for _ in range(KILLS):
            before = sum(len(s.accepted) for s in senders)
            # Let some messages through first, then kill at a random moment.
            deadline = time.monotonic() + 30
            while sum(len(s.accepted) for s in senders) < before + 5:
                assert time.monotonic() < deadline, "no message accepted (seed {})".format(seed)
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.7))
            gw.kill()
            gw.start()
        time.sleep(rng.uniform(0.2, 0.5))
    finally:
        for s in senders:
            s.stopping.set()
        for s in senders:
            s.join(30)
    accepted = set()
    for s in senders:
        accepted.update(s.accepted)
    assert len(accepted) >= KILLS * 5, "too few messages got through (seed {})".format(seed)

    deadline = time.monotonic() + 120
    while True:
        arrived = {m["message_id"] for m in sink.snapshot()}
        missing = accepted - arrived
        if not missing:
            break
        assert time.monotonic() < deadline, \
            "{} of {} acknowledged messages never arrived (seed {}): {}".format(
                len(missing), len(accepted), seed, sorted(missing)[:10])
        time.sleep(0.2)
    gw.wait_queue_empty(timeout=60)
