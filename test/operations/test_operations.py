"""Operations on one converged relay: verified sender rewriting, root alias, per-sender providers.

Three fake providers run inside the instance: Postmark (the main route, STARTTLS
on 127.0.0.2), SendGrid (the route for @marketing.example.com, STARTTLS on
127.0.0.3) and Mailgun (the route for @mg.example.com, implicit TLS on 465 at
127.0.0.4, through its own clone of the smtp transport), each checking its own
credentials.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml
from harness import provider
from harness.fakeprovider import sha256
from harness.formula import REPO
from harness.kitchen import salt_call
from harness.relay import converged_relay

PILLAR = REPO / "test" / "salt" / "pillar" / "operations.sls"
ROUTE_UNIT = "fakeprovider-marketing"
ROUTE_ADDR = "127.0.0.3"
MG_UNIT = "fakeprovider-mailgun"
MG_ADDR = "127.0.0.4"
MAIN_UNIT = "fakeprovider"


@pytest.fixture(scope="module")
def ops():
    with converged_relay(
        "operations", "test/salt/pillar/operations.sls", REPO / "test" / "operations" / "provider.yml"
    ) as relay:
        routes = yaml.safe_load(PILLAR.read_text())["postfix_relay"]["routes"]
        relay.route_spec = provider.ProviderSpec("smtp.sendgrid.net", 587, "starttls", "apikey", routes[0]["password"])
        mg = routes[1]
        relay.mg_spec = provider.ProviderSpec("smtp.mailgun.org", 465, "implicit", mg["username"], mg["password"])
        relay.c.sh(
            f"echo '{ROUTE_ADDR} smtp.sendgrid.net' >> /etc/hosts && echo '{MG_ADDR} smtp.mailgun.org' >> /etc/hosts"
            " && systemctl restart postfix"
        )
        provider.deploy(relay.c, relay.run.ca, relay.route_spec, listen=ROUTE_ADDR, unit=ROUTE_UNIT)
        provider.deploy(relay.c, relay.run.ca, relay.mg_spec, listen=MG_ADDR, unit=MG_UNIT)
        yield relay


def _wait(relay, message_id: str, unit: str = "fakeprovider", timeout: float = 60) -> dict | None:
    found = provider.wait_for_messages(relay.c, message_id, unit=unit, timeout=timeout)
    return found[0] if found else None


def _sendmail(relay, *, sender_flag: str | None, to: str, subject: str, user: str = "root") -> str:
    message_id = f"<{uuid.uuid4().hex}@ops.test>"
    message = f"To: {to}\nSubject: {subject}\nMessage-ID: {message_id}\n\nbody\n"
    cmd = ["runuser", "-u", user, "--", "/usr/sbin/sendmail", "-t", *([f"-f{sender_flag}"] if sender_flag else [])]
    relay.c.exec(*cmd, input=message)
    return message_id


def test_cron_mail_from_root_leaves_with_the_verified_sender(ops):
    message_id = _sendmail(ops, sender_flag=None, to="customer@example.org", subject="Cron <root@web1> backup")
    msg = _wait(ops, message_id)
    assert msg, "cron-style mail never reached the provider"
    assert msg["mail_from"] == "noreply@example.com"
    assert "noreply@example.com" in msg["from_header"] and "root@" not in msg["from_header"]
    assert msg["auth_user_sha256"] == sha256(ops.spec.username)


def test_local_user_mapped_to_its_own_sender(ops):
    message_id = _sendmail(ops, sender_flag=None, to="customer@example.org", subject="app mail", user="www-data")
    msg = _wait(ops, message_id)
    assert msg and msg["mail_from"] == "app@example.com", msg


def test_sender_in_allowed_domain_is_kept(ops):
    message_id = _sendmail(ops, sender_flag="billing@example.com", to="customer@example.org", subject="invoice")
    msg = _wait(ops, message_id)
    assert msg and msg["mail_from"] == "billing@example.com", msg


def test_mail_for_root_is_forwarded_through_the_relay(ops):
    message_id = _sendmail(ops, sender_flag=None, to="root", subject="disk full")
    msg = _wait(ops, message_id)
    assert msg, "root's mail stayed local"
    assert msg["rcpt_tos"] == ["ops@example.com"]


def test_marketing_sender_goes_through_its_own_provider(ops):
    marketing = _sendmail(ops, sender_flag="news@marketing.example.com", to="list@example.org", subject="newsletter")
    msg = _wait(ops, marketing, unit=ROUTE_UNIT)
    assert msg, "the marketing route's provider never saw the message"
    assert msg["mail_from"] == "news@marketing.example.com"
    assert msg["tls"] is True and msg["auth_user_sha256"] == sha256("apikey")
    assert _wait(ops, marketing, timeout=1) is None, "the main provider saw it too"
    # Everything else still goes through the main route, with its own credentials.
    other = _sendmail(ops, sender_flag="billing@example.com", to="customer@example.org", subject="receipt")
    msg = _wait(ops, other)
    assert msg and msg["auth_user_sha256"] == sha256(ops.spec.username)
    assert _wait(ops, other, unit=ROUTE_UNIT, timeout=1) is None


def test_implicit_tls_route_beside_starttls_main_route(ops):
    """A route on 465 (implicit TLS) while the main route uses STARTTLS: each provider sees only its
    senders and its credentials, and settings/status show each route's relay and TLS mode."""
    assert ops.c.exec("postconf", "-M", "postfix_relay_implicit/unix").stdout.split() == [
        "postfix_relay_implicit", "unix", "-", "-", "n", "-", "-", "smtp", "-o", "smtp_tls_wrappermode=yes",
    ]  # fmt: skip
    assert ops.c.exec("postconf", "-M", "postfix_relay_starttls/unix").stdout == ""
    assert ops.c.exec("postconf", "-h", "smtp_tls_wrappermode").stdout.strip() == "no"
    sent = {
        "mg": _sendmail(ops, sender_flag="news@mg.example.com", to="a@example.org", subject="mg"),
        "marketing": _sendmail(ops, sender_flag="x@marketing.example.com", to="b@example.org", subject="mk"),
        "main": _sendmail(ops, sender_flag="billing@example.com", to="c@example.org", subject="main"),
    }
    units = {"mg": MG_UNIT, "marketing": ROUTE_UNIT, "main": MAIN_UNIT}
    users = {"mg": ops.mg_spec.username, "marketing": "apikey", "main": ops.spec.username}
    for route, message_id in sent.items():
        msg = _wait(ops, message_id, unit=units[route])
        assert msg, f"the {route} provider never saw its message:\n{ops.journal()[-3000:]}"
        assert msg["tls"] is True and msg["auth_user_sha256"] == sha256(users[route])
    for route, unit in units.items():
        seen = {e["message_id"] for e in provider.events(ops.c, unit) if e["event"] == "message"}
        assert seen & set(sent.values()) == {sent[route]}, f"{route} provider saw {seen & set(sent.values())}"
        auths = {e["user_sha256"] for e in provider.events(ops.c, unit) if e["event"] == "auth"}
        assert auths == {sha256(users[route])}, f"{route} provider got another route's credentials"
    # The implicit route's provider spoke TLS from the first byte: no STARTTLS command ever reached it.
    assert "STARTTLS" not in {e["verb"] for e in provider.events(ops.c, MG_UNIT) if e["event"] == "command"}
    settings = json.loads(ops.c.exec(*salt_call("postfix_relay.settings")).stdout)["local"]
    shown = {r["senders"][0]: (r["host"], r["port"], r["tls"], r["transport"]) for r in settings["routes"]}
    assert shown == {
        "@marketing.example.com": ("smtp.sendgrid.net", 587, "starttls", "smtp"),
        "@mg.example.com": ("smtp.mailgun.org", 465, "implicit", "postfix_relay_implicit"),
    }
    status = json.loads(ops.c.exec(*salt_call("postfix_relay.status")).stdout)["local"]
    assert status["tls"] == "starttls"
    assert {(r["sender"], r["relay"], r["tls"]) for r in status["routes"]} == {
        ("@marketing.example.com", "[smtp.sendgrid.net]:587", "starttls"),
        ("@mg.example.com", "[smtp.mailgun.org]:465", "implicit"),
    }


def test_implicit_tls_route_reuses_its_connections(ops):
    """A burst on the cloned transport: one AUTH per parallel connection, not one per message."""
    mark = len(provider.events(ops.c, MG_UNIT))
    result = ops.submit("mgburst", 40, clients=4, sender="news@mg.example.com")
    assert result["accepted"] == 40, result
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        window = provider.events(ops.c, MG_UNIT)[mark:]
        arrived = {e["message_id"] for e in window if e["event"] == "message" and "<mgburst-" in e["message_id"]}
        if len(arrived) == 40:
            break
        time.sleep(1)
    assert len(arrived) == 40, f"{len(arrived)} of 40 reached the implicit-TLS route's provider"
    auth_peers = [e["peer"] for e in window if e["event"] == "command" and e["verb"] == "AUTH"]
    assert len(auth_peers) == len(set(auth_peers)), "a connection authenticated twice"
    assert len(auth_peers) <= 10, f"{len(auth_peers)} AUTHs for 40 messages: connections are not reused"


def test_route_password_only_in_sasl_files(ops):
    for spec in (ops.route_spec, ops.mg_spec):
        found = ops.secret_locations(spec.password)
        assert found == sorted(
            ["/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db", "/tmp/kitchen/srv/pillar/postfix_relay.sls"]
        )


def test_removing_the_route_removes_its_transport(ops):
    """Last (it changes the pillar): the route goes, its clone and map go, its senders use the main route."""
    pillar = ops.suite_pillar()
    pillar["routes"] = pillar["routes"][:1]
    ops.set_pillar(pillar)
    rc, out = ops.apply()
    assert rc == 0, out[-3000:]
    assert ops.c.exec("postconf", "-M", "postfix_relay_implicit/unix").stdout == ""
    assert "postfix_relay_implicit" not in ops.c.exec("cat", "/etc/postfix/master.cf").stdout
    assert ops.c.exec("postconf", "-h", "sender_dependent_default_transport_maps").stdout.strip() == ""
    for path in ("/etc/postfix/sender_transport", "/etc/postfix/sender_transport.db"):
        assert ops.c.exec("test", "-e", path, check=False).returncode != 0, path
    rc, out = ops.apply()
    assert rc == 0 and ops.changed() == set(), ops.changed()
    moved = _sendmail(ops, sender_flag="news@mg.example.com", to="d@example.org", subject="after")
    assert _wait(ops, moved, unit=MAIN_UNIT), "the former route's sender did not go through the main route"
