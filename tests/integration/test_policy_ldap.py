"""Recipient validation against an LDAP directory ([recipients]
validation = ldap) through the real binary and a real slapd
(tests/tools/slapd.py): found is 250, not found is 550 5.1.1, a directory
that is down, hangs or refuses our bind never refuses mail, and answers
are cached so a repeat does not reach the directory.

example.com is the protected domain of the base config; 127.0.0.1 is
judged as an inbound client."""
import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))

from gateway import free_port  # noqa: E402
from slapd import ROOT_DN, ROOT_PW, SUFFIX, Slapd  # noqa: E402

PEOPLE = """\
dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,{suffix}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Example
mail: alice@example.com

dn: uid=dave,ou=people,{suffix}
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: dave
cn: Dave
sn: Example
mail: dave@example.com
mailLocalAddress: postmaster@example.com

dn: uid=carol,ou=people,{suffix}
objectClass: account
objectClass: domainRelatedObject
uid: carol
associatedDomain: example.com
""".format(suffix=SUFFIX)

if not os.access("/usr/sbin/slapd", os.X_OK):
    pytest.skip("slapd is not installed (WITH_TEST_PKGS=1 sh scripts/install-deps.sh)",
                allow_module_level=True)


@pytest.fixture
def directory(workdir):
    d = Slapd(os.path.join(workdir, "slapd")).start()
    d.add(PEOPLE)
    yield d
    d.stop()


def ldap_config(uri, **keys):
    recipients = {"validation": "ldap", "ldap_uri": uri, "ldap_base": SUFFIX,
                  "ldap_timeout": "2s"}
    recipients.update(keys)
    return {"recipients": recipients}


def open_transaction(gw):
    c = gw.raw()
    assert c.reply().code == 220
    c.ehlo()
    r = c.cmd("MAIL FROM:<sender@origin.example>")
    assert r.code == 250, r
    return c


def rcpt_codes(gw, *rcpts):
    out = []
    with open_transaction(gw) as c:
        for rcpt in rcpts:
            r = c.cmd("RCPT TO:<{}>".format(rcpt))
            out.append((r.code, r.enhanced))
        c.cmd("QUIT")
    return out


def inconclusive(gw, rcpt):
    return "ldap look-up for <{}> inconclusive".format(rcpt) in gw.log_text()


def test_ldap_validates_recipients(gateway, directory):
    gw = gateway(ldap_config(directory.uri))
    with open_transaction(gw) as c:
        r = c.cmd("RCPT TO:<alice@example.com>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<nobody@example.com>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "<nobody@example.com>: Recipient address rejected: User unknown" in r.text
        # mail matches case-insensitively in the directory
        r = c.cmd("RCPT TO:<Alice@EXAMPLE.com>")
        assert r.code == 250, r
        # filter metacharacters are escaped: "*" is not a wildcard that matches alice
        r = c.cmd("RCPT TO:<*@example.com>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        r = c.cmd("RCPT TO:<\"x)(mail=*\"@example.com>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        # the local domain is not looked up
        r = c.cmd("RCPT TO:<bob@local.test>")
        assert r.code == 250, r
        c.cmd("QUIT")
    log = gw.log_text()
    assert "ldap look-up for <alice@example.com>: valid" in log
    assert "ldap look-up for <nobody@example.com>: unknown" in log


def test_ldap_custom_filters(gateway, directory):
    # %s twice: the main address or an alias
    gw = gateway(ldap_config(directory.uri, ldap_filter="(|(mail=%s)(mailLocalAddress=%s))"),
                 name="alias")
    assert rcpt_codes(gw, "postmaster@example.com", "dave@example.com", "carol@example.com") == \
        [(250, "2.1.5"), (250, "2.1.5"), (550, "5.1.1")]
    gw.stop()
    # %u and %d: carol has no mail attribute, only a uid and a domain
    gw = gateway(ldap_config(directory.uri, ldap_base="ou=people," + SUFFIX,
                             ldap_filter="(&(uid=%u)(associatedDomain=%d))"), name="parts")
    assert rcpt_codes(gw, "carol@example.com", "alice@example.com") == \
        [(250, "2.1.5"), (550, "5.1.1")]


def test_ldap_cache_answers_without_directory(gateway, directory):
    gw = gateway(ldap_config(directory.uri, callout_negative="10m", callout_cache="1h"))
    assert rcpt_codes(gw, "alice@example.com", "nobody@example.com") == \
        [(250, "2.1.5"), (550, "5.1.1")]
    directory.stop()
    # both answers come from the cache: still refused, still accepted
    assert rcpt_codes(gw, "nobody@example.com", "alice@example.com") == \
        [(550, "5.1.1"), (250, "2.1.5")]
    assert not inconclusive(gw, "nobody@example.com")
    # a new address needs the directory, which is down: accepted, and said so
    assert rcpt_codes(gw, "stranger@example.com") == [(250, "2.1.5")]
    assert inconclusive(gw, "stranger@example.com")
    # the directory is back
    directory.start()
    assert rcpt_codes(gw, "stranger2@example.com") == [(550, "5.1.1")]
    # a restart kills the kept connection: one fresh try answers
    directory.stop()
    directory.start()
    assert rcpt_codes(gw, "stranger3@example.com") == [(550, "5.1.1")]
    assert not inconclusive(gw, "stranger3@example.com")


def test_ldap_directory_down_accepts(gateway):
    gw = gateway(ldap_config("ldap://127.0.0.1:{}".format(free_port())))   # nothing listens there
    assert rcpt_codes(gw, "nobody@example.com") == [(250, "2.1.5")]
    assert inconclusive(gw, "nobody@example.com")
    assert "Can't contact LDAP server" in gw.log_text()


def test_ldap_bind(gateway, directory):
    gw = gateway(ldap_config(directory.uri, ldap_bind_dn=ROOT_DN, ldap_bind_password=ROOT_PW),
                 name="good")
    assert rcpt_codes(gw, "alice@example.com", "nobody@example.com") == \
        [(250, "2.1.5"), (550, "5.1.1")]
    gw.stop()
    gw = gateway(ldap_config(directory.uri, ldap_bind_dn=ROOT_DN, ldap_bind_password="wrong"),
                 name="bad")
    assert rcpt_codes(gw, "nobody@example.com") == [(250, "2.1.5")]
    assert inconclusive(gw, "nobody@example.com")
    assert "bind as {}: Invalid credentials".format(ROOT_DN) in gw.log_text()


@pytest.fixture
def silent_server():
    """Accepts connections (the kernel's backlog) and never says a word."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield "ldap://127.0.0.1:{}".format(s.getsockname()[1])
    s.close()


@pytest.mark.parametrize("bind", [False, True])
def test_ldap_hung_directory_times_out(gateway, silent_server, bind):
    keys = {"ldap_timeout": "500ms"}
    if bind:
        keys.update(ldap_bind_dn=ROOT_DN, ldap_bind_password=ROOT_PW)
    gw = gateway(ldap_config(silent_server, **keys))
    started = time.monotonic()
    assert rcpt_codes(gw, "nobody@example.com") == [(250, "2.1.5")]
    assert time.monotonic() - started < 5
    assert inconclusive(gw, "nobody@example.com")


def test_ldap_session_gone_and_reload_during_lookup(gateway, silent_server):
    """The client leaves, the config is reloaded and the gateway stops while
    look-ups hang: the late answers touch neither a freed session nor the
    old engine (the teardown fails on any sanitizer report)."""
    gw = gateway(ldap_config(silent_server, ldap_timeout="2s"))
    c = open_transaction(gw)
    c.send(b"RCPT TO:<nobody@example.com>\r\n")
    time.sleep(0.3)
    c.close()
    gw.update(ldap_config(silent_server, ldap_timeout="1s"))
    gw.reload_signal()
    time.sleep(2.5)
    assert gw.running()
    assert rcpt_codes(gw, "bob@local.test") == [(250, "2.1.5")]
    # stopping cancels the waiting session; the worker finishes its look-up
    c = open_transaction(gw)
    c.send(b"RCPT TO:<other@example.com>\r\n")
    time.sleep(0.3)
    assert gw.stop() == 0
    c.close()


def test_ldap_needs_uri_and_base(gateway):
    gw = gateway({"recipients": {"validation": "ldap"}}, start=False)
    with pytest.raises(AssertionError):
        gw.start()
    assert "validation = ldap needs ldap_uri and ldap_base" in gw.log_text()
