"""Connect-stage defence through the real binary: IP deny list, concurrent
connections and connection rate per IP (with `postern bans`), DNSBL
rejected at RCPT with a custom reply, RHSBL at MAIL FROM.

Every client here is 127.0.0.1, which the base config does not trust, so
the engines judge it as inbound mail."""
import os
import re

import pytest

from conftest import ZONE, DnsServer
from gateway import give_to_daemon, wait_until
from rawsmtp import ConnectionClosed, message

POLICY_ZONE = ZONE + """\
# 127.0.0.1 listed on zen.test; spammer.example listed on dbl.test
1.0.0.127.zen.test          A 127.0.0.2
spammer.example.dbl.test    A 127.0.1.2
"""


@pytest.fixture
def policy_dns(workdir):
    d = DnsServer(workdir, POLICY_ZONE)
    yield d
    d.stop()


def dns_section(d):
    return {"dns": {"servers": d.servers, "timeout_ms": 1000, "tries": 2}}


def banner(c):
    try:
        return c.reply()
    except ConnectionClosed:
        return None


def test_deny_list_refused_at_connect(gateway):
    gw = gateway({"iplist": {"deny": "127.0.0.0/8"}})
    with gw.raw() as c:
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.7.1"), r
        assert "Access denied" in r.text
        assert c.closed()


def test_deny_wins_over_allow(gateway):
    # Deny wins over allow: the same address in both is refused.
    gw = gateway({"iplist": {"deny": "127.0.0.1", "allow": "127.0.0.0/8"}})
    with gw.raw() as c:
        assert c.reply().code == 554


def test_third_concurrent_connection_refused(gateway):
    gw = gateway({"connlimit": {"max_per_ip": 2}})
    # The start-up probe's session must be gone, or it holds a slot.
    gw.wait_idle()
    first, second = gw.raw(), gw.raw()
    try:
        assert first.reply().code == 220
        assert second.reply().code == 220
        with gw.raw() as third:
            r = third.reply()
            assert r.code == 421, r
            assert "Too many connections from your address" in r.text
            assert third.closed()
        # A finished session gives its slot back.
        first.cmd("QUIT")
        first.close()
        released = False
        for _ in range(50):
            with gw.raw() as again:
                r = banner(again)
                if r is not None and r.code == 220:
                    released = True
                    again.cmd("QUIT")
                    break
        assert released, "the slot of the closed session was not released"
    finally:
        first.close()
        second.close()


def test_rate_limit_ban_listed_and_lifted(gateway):
    gw = gateway({"connlimit": {"rate": 2, "window": "1m", "ban_step": "1m", "ban_max": "10m"}})
    # The start-up probe counted once: start from an empty window.
    gw.cli("bans", "unban", "ip:127.0.0.1", check=0)
    for _ in range(2):
        with gw.raw() as c:
            assert c.reply().code == 220
            c.cmd("QUIT")
    with gw.raw() as c:
        r = c.reply()
        assert r.code == 421, r
        assert "try again in" in r.text
    bans = gw.cli_json("bans", "list")
    mine = [b for b in bans if b["key"] == "ip:127.0.0.1"]
    assert len(mine) == 1, bans
    assert mine[0]["kind"] == "conn_rate"
    assert mine[0]["limit"] == 2 and mine[0]["window"] == 60
    assert mine[0]["ban_left"] > 0 and mine[0]["ban_until"] > 0
    text = gw.cli("bans", "list", check=0).stdout
    assert "ip:127.0.0.1" in text and "1 banned" in text

    gw.cli("bans", "unban", "ip:127.0.0.1", check=0)
    with gw.raw() as c:
        assert c.reply().code == 220
        c.cmd("QUIT")
    p = gw.cli("bans", "unban", "ip:192.0.2.200", check=1)
    assert "no such key" in p.stderr
    gw.cli("bans", check=2)


def test_dnsbl_rejected_at_rcpt_with_custom_reply(gateway, policy_dns):
    overrides = dns_section(policy_dns)
    overrides['dnsbl "zen.test"'] = {
        "match": "codes:127.0.0.2",
        "reply": "550 5.7.1 Client %0 is listed by %1, see https://%2/lookup",
    }
    gw = gateway(overrides)
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd("RCPT TO:<user@example.com>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        assert "Client 127.0.0.1 is listed by zen.test, see https://zen.test/lookup" in r.text
        # every recipient gets the same answer
        assert c.cmd("RCPT TO:<other@example.com>").code == 550
        c.cmd("QUIT")


def test_dnsbl_not_listed_passes(gateway, policy_dns):
    overrides = dns_section(policy_dns)
    overrides['dnsbl "clean.test"'] = {"match": "any"}
    gw = gateway(overrides)
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<user@example.com>").code == 250
        c.cmd("QUIT")


def test_rhsbl_sender_domain_rejected(gateway, policy_dns):
    overrides = dns_section(policy_dns)
    overrides['rhsbl "dbl.test"'] = {"match": "any"}
    gw = gateway(overrides)
    with gw.raw() as c:
        assert c.reply().code == 220
        c.ehlo()
        r = c.cmd("MAIL FROM:<bob@spammer.example>")
        assert r.code == 554, r
        assert "Sender address rejected: domain listed at dbl.test" in r.text
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
        c.cmd("QUIT")


def test_dnsbl_tag_teaches_bayes_through_autolearn(gateway, policy_dns, workdir):
    """A DNSBL hit tagged (not refused) at connect reaches the content stage
    with the policy symbols, where autolearn takes it as clear spam."""
    d = os.path.join(workdir, "bayes-autolearn")
    give_to_daemon(d)
    overrides = dns_section(policy_dns)
    overrides["dnsbl"] = {"action": "tag"}
    overrides['dnsbl "zen.test"'] = {"match": "codes:127.0.0.2"}
    overrides["bayes"] = {"enabled": True, "database": os.path.join(d, "bayes.db")}
    gw = gateway(overrides)
    r = gw.transaction("sender@example.org", ["user@example.com"], message(subject="listed client"))
    assert r.code == 250, r
    wait_until(lambda: re.search(r'autolearn queue_id=\S+ class=spam reason="listed DNSBL_\S+"',
                                 gw.log_text()), what="the autolearn line naming the listing")
