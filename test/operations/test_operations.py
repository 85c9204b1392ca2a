"""Operations on one converged relay: verified sender rewriting, root alias, per-sender providers.

Two fake providers run inside the instance: Postmark (the main route, on
127.0.0.2) and SendGrid (the route for @marketing.example.com, on 127.0.0.3),
each checking its own credentials.
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from harness import provider
from harness.fakeprovider import sha256
from harness.formula import REPO
from harness.relay import converged_relay

PILLAR = REPO / "test" / "salt" / "pillar" / "operations.sls"
ROUTE_UNIT = "fakeprovider-marketing"
ROUTE_ADDR = "127.0.0.3"


@pytest.fixture(scope="module")
def ops():
    with converged_relay(
        "operations", "test/salt/pillar/operations.sls", REPO / "test" / "operations" / "provider.yml"
    ) as relay:
        route = yaml.safe_load(PILLAR.read_text())["postfix_relay"]["routes"][0]
        relay.route_spec = provider.ProviderSpec("smtp.sendgrid.net", 587, "starttls", "apikey", route["password"])
        relay.c.sh(f"echo '{ROUTE_ADDR} smtp.sendgrid.net' >> /etc/hosts && systemctl restart postfix")
        provider.deploy(relay.c, relay.run.ca, relay.route_spec, listen=ROUTE_ADDR, unit=ROUTE_UNIT)
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


def test_route_password_only_in_sasl_files(ops):
    found = ops.secret_locations(ops.route_spec.password)
    assert found == sorted(
        ["/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db", "/tmp/kitchen/srv/pillar/postfix_relay.sls"]
    )
