"""Staging that can never mail real customers: redirect_all_to, and enabled: false (hold).

One converged staging relay (Mailgun sandbox credentials, redirect_all_to:
qa@example.com) with the fake provider inside it.  Tests run in file order.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from harness import provider
from harness.formula import REPO
from harness.kitchen import KITCHEN_ROOT, PROVIDER_ADDR
from harness.relay import converged_relay

REAL = ["alice@customer.example", "bob@customer.example", "carol@customer.example"]
SMTP_TO_CC_BCC = """
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"] = "app@example.com"
msg["To"] = "alice@customer.example"
msg["Cc"] = "bob@customer.example"
msg["Subject"] = "Your order"
msg["Message-ID"] = sys.argv[1]
msg.set_content("order confirmation")
with smtplib.SMTP("127.0.0.1", 25) as smtp:
    smtp.send_message(msg, to_addrs=["alice@customer.example", "bob@customer.example", "carol@customer.example"])
"""


@pytest.fixture(scope="module")
def staging():
    with converged_relay(
        "staging", "test/salt/pillar/staging.sls", REPO / "test" / "environments" / "provider.yml"
    ) as relay:
        yield relay


def _messages(relay, message_id: str, timeout: float = 60) -> list[dict]:
    return provider.wait_for_messages(relay.c, message_id, timeout=timeout)


def test_real_recipients_replaced_originals_in_header(staging):
    message_id = f"<{uuid.uuid4().hex}@staging.test>"
    staging.c.exec("python3", "-c", SMTP_TO_CC_BCC, message_id)
    got = _messages(staging, message_id)
    assert len(got) == 1, got
    msg = got[0]
    assert msg["rcpt_tos"] == ["qa@example.com"]
    assert sorted(msg["headers"]["X-Original-To"]) == sorted(REAL)
    assert msg["from_header"] == "app@example.com"
    # To/Cc stay readable: QA sees who the message was for.
    assert (msg["to_header"], msg["cc_header"]) == ("alice@customer.example", "bob@customer.example")


def test_mail_from_cron_and_root_is_redirected_too(staging):
    message_id = f"<{uuid.uuid4().hex}@staging.test>"
    staging.c.exec(
        "/usr/sbin/sendmail", "-t",
        input=f"To: ceo@customer.example, root\nSubject: Cron backup\nMessage-ID: {message_id}\n\nok\n",
    )  # fmt: skip
    got = _messages(staging, message_id)
    assert got and all(m["rcpt_tos"] == ["qa@example.com"] for m in got), got


def test_mail_queued_before_the_redirect_is_redirected(staging):
    pillar = staging.suite_pillar()
    staging.set_pillar({k: v for k, v in pillar.items() if k != "redirect_all_to"})
    rc, out = staging.apply()
    assert rc == 0, out
    provider.stop(staging.c)
    message_id = f"<{uuid.uuid4().hex}@staging.test>"
    staging.c.exec("python3", "-c", SMTP_TO_CC_BCC, message_id)
    staging.wait_deferred(1)
    staging.set_pillar(pillar)  # redirect on while the message waits with real recipients
    rc, out = staging.apply()
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-requeue" in staging.changed()
    provider.deploy(staging.c, staging.run.ca, staging.spec, listen=PROVIDER_ADDR)
    staging.c.exec("postqueue", "-f")
    got = _messages(staging, message_id, timeout=90)
    assert got, "the queued message never left"
    assert all(m["rcpt_tos"] == ["qa@example.com"] for m in got), got


def test_disabled_holds_everything_then_delivers_exactly_once(staging):
    staging.set_pillar({"enabled": False})
    rc, out = staging.apply()
    assert rc == 0, out
    assert staging.c.exec("test", "-e", "/etc/postfix/sasl_passwd", check=False).returncode != 0
    submitted = staging.submit("held", 3)
    assert submitted["accepted"] == 3
    time.sleep(3)
    assert len(staging.arrived("held")) == 0
    status = json.loads(
        staging.c.exec(
            "salt-call", "--local", f"--config-dir={KITCHEN_ROOT}/etc/salt", "--out=json", "postfix_relay.status"
        ).stdout
    )["local"]
    assert status["queue"]["hold"] == 3 and status["relayhost"] == ""
    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-release-hold" in staging.changed()
    seen = staging.wait_arrived("held", 3, timeout=60)
    assert len(seen) == 3 and all(n == 1 for n in seen.values()), seen
    assert staging.queue() == []
