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
from harness.kitchen import PROVIDER_ADDR, salt_call
from harness.relay import PILLAR_FILE, converged_relay

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
    status = json.loads(staging.c.exec(*salt_call("postfix_relay.status")).stdout)["local"]
    assert status["queue"]["hold"] == 3 and status["relayhost"] == ""
    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-requeue" in staging.changed()
    seen = staging.wait_arrived("held", 3, timeout=60)
    assert len(seen) == 3 and all(n == 1 for n in seen.values()), seen
    assert staging.queue() == []


# --------------------------------------------------------------------------
# The off switch holds on every path an operator takes, and Django follows it
# --------------------------------------------------------------------------
OFF_REASON = "relaying disabled by pillar postfix_relay:enabled"
RELEASE_AND_FLUSH = (
    "postqueue -f; sendmail -q; postsuper -H ALL; postqueue -f; sendmail -q;"
    " systemctl restart postfix; sleep 2; postsuper -H ALL; postqueue -f"
)


def _message_id_of(relay, queue_id: str) -> str:
    """The Message-ID cleanup gave a message submitted without one (journal: '<id>: message-id=<...>')."""
    for line in relay.journal().splitlines():
        if line.startswith(f"{queue_id}: message-id="):
            return line.split("message-id=", 1)[1].strip()
    raise AssertionError(f"no message-id logged for {queue_id}")


def test_disabled_nothing_leaves_whatever_the_operator_runs(staging):
    """Flush, sendmail -q, release from hold, restart: the transport itself can only defer.

    Messages: one deferred before the switch, two SMTP submissions, and one local
    sendmail with a bare body (no headers, so no header_checks HOLD of its own).
    The provider runs throughout, so a leak would be seen there; and every
    queued message's reason must be the off switch (not, say, a DNS failure
    on the way to the recipient's MX, which is how the old defer_transports
    failed open).
    """
    provider.stop(staging.c)
    staging.submit("offbefore", 1)
    staging.wait_deferred(1)
    staging.set_pillar({"enabled": False})
    rc, out = staging.apply()
    assert rc == 0, out
    submitted = staging.submit("offsmtp", 2)
    assert submitted["accepted"] == 2, submitted
    staging.c.exec(
        "/usr/sbin/sendmail", "-f", "app@web.example.com", "bare@customer.example", input="just a body line\n"
    )
    provider.deploy(staging.c, staging.run.ca, staging.spec, listen=PROVIDER_ADDR)
    mark = len(provider.events(staging.c))
    staging.c.sh(RELEASE_AND_FLUSH)
    # Every message must have been tried since its release, and refused by the transport itself.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        reasons = {r.get("delay_reason") for e in staging.queue() for r in e["recipients"]}
        if reasons == {OFF_REASON}:
            break
        staging.c.sh("postqueue -f; sleep 3")
    assert [e for e in provider.events(staging.c)[mark:] if e["event"] != "listening"] == [], (
        "Postfix talked to the provider"
    )
    queue = staging.queue()
    assert len(queue) == 4, queue
    assert all(e["sender"] for e in queue), "a bounce notice was queued"
    reasons = {r.get("delay_reason") for e in queue if e["queue_name"] == "deferred" for r in e["recipients"]}
    assert reasons == {OFF_REASON}, reasons
    assert {e["queue_name"] for e in queue} <= {"deferred", "hold"}
    assert "status=bounced" not in staging.journal()
    bare = next(e for e in queue if e["recipients"][0]["address"] == "bare@customer.example")
    bare_id = _message_id_of(staging, bare["queue_id"])

    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-requeue" in staging.changed()
    for prefix, count in (("offbefore", 1), ("offsmtp", 2)):
        seen = staging.wait_arrived(prefix, count, timeout=90)
        assert len(seen) == count and all(n == 1 for n in seen.values()), (prefix, seen)
    got = provider.wait_for_messages(staging.c, bare_id, timeout=60)
    assert len(got) == 1 and got[0]["rcpt_tos"] == ["qa@example.com"], got
    assert staging.queue() == []


DJANGO_SEND = """
import os, sys
import django
from django.conf import settings
settings.configure(
    EMAIL_HOST=os.environ["EMAIL_HOST"], EMAIL_PORT=int(os.environ["EMAIL_PORT"]),
    EMAIL_HOST_USER=os.environ["EMAIL_HOST_USER"], EMAIL_HOST_PASSWORD=os.environ["EMAIL_HOST_PASSWORD"],
    EMAIL_USE_TLS=os.environ["EMAIL_USE_TLS"] == "True", EMAIL_USE_SSL=os.environ["EMAIL_USE_SSL"] == "True",
)
django.setup()
from django.core.mail import EmailMessage
EmailMessage("Your order", "body", "app@example.com", ["alice@customer.example"],
             headers={"Message-ID": sys.argv[1]}).send()
print(os.environ["EMAIL_HOST"], os.environ["EMAIL_PORT"])
"""
ENV_PATH = "/etc/app/email.env"


def _django_send(relay, message_id: str) -> str:
    """Django's own SMTP backend with the settings from the env file, as the app's systemd unit loads them."""
    return relay.c.sh(
        f"set -a; . {ENV_PATH}; set +a; /opt/django/bin/python -c '{DJANGO_SEND}' '{message_id}'"
    ).stdout.strip()


def test_django_env_follows_the_off_switch_and_clean(staging):
    """Direct mode puts the password in Django's env file; disabling or clean must take it away."""
    direct = {k: v for k, v in staging.suite_pillar().items() if k != "redirect_all_to"}
    direct["django_env"] = {"path": ENV_PATH, "mode": "direct"}
    secret = direct["password"]
    staging.set_pillar(direct)
    rc, out = staging.apply()
    assert rc == 0, out
    assert ENV_PATH in staging.secret_locations(secret)

    # Off, django_env still in pillar: the file is rewritten for the local relay, which holds.
    staging.set_pillar({**direct, "enabled": False})
    rc, out = staging.apply()
    assert rc == 0, out
    assert staging.secret_locations(secret) == [PILLAR_FILE]
    mark = len(provider.events(staging.c))
    message_id = f"<{uuid.uuid4().hex}@django.test>"
    assert _django_send(staging, message_id) == "localhost 25"
    time.sleep(3)
    assert provider.events(staging.c)[mark:] == [], "Django reached the provider while relaying was off"
    assert sum(1 for e in staging.queue() if e["queue_name"] == "hold") == 1

    # Back to direct (relaying on: Django's held message goes out, once), then off with a
    # pillar that no longer names the file: found by the record.
    staging.set_pillar(direct)
    rc, out = staging.apply()
    assert rc == 0, out
    assert ENV_PATH in staging.secret_locations(secret)
    seen = provider.wait_for_messages(staging.c, message_id, timeout=60)
    assert len(seen) == 1 and seen[0]["rcpt_tos"] == ["alice@customer.example"], seen
    staging.set_pillar({"enabled": False})
    rc, out = staging.apply()
    assert rc == 0, out
    assert staging.secret_locations(secret) == []
    assert 'EMAIL_HOST="localhost"' in staging.c.exec("cat", ENV_PATH).stdout

    # Direct again, then clean: the env file and its record go.
    staging.set_pillar(direct)
    rc, out = staging.apply()
    assert rc == 0, out
    rc, out = staging.apply(sls="postfix_relay.clean")
    assert rc == 0, out
    assert staging.c.exec("test", "-e", ENV_PATH, check=False).returncode != 0
    assert staging.secret_locations(secret) == [PILLAR_FILE]

    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    assert staging.queue() == []


def test_first_routes_map_is_built_before_main_cf_names_it(staging):
    """Adding routes to a running relay: Postfix must never read a main.cf that names a missing map."""
    route = {
        "senders": ["@news.example.com"],
        "provider": "custom",
        "host": "smtp.mailgun.org",
        "username": "news",
        "password": "route-pw-3e1b",
    }
    since = staging.c.exec("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    staging.set_pillar({**staging.suite_pillar(), "routes": [route]})
    rc, out = staging.apply()
    assert rc == 0, out
    order = {r["__id__"]: r["__run_num__"] for r in staging.last_states.values() if r.get("changes")}
    assert (
        order["postfix_relay-config-cmd-run-postmap-sender_relay"] < order["postfix_relay-config-file-managed-main_cf"]
    )
    assert (
        order["postfix_relay-config-cmd-run-postmap-sasl_passwd"] < order["postfix_relay-config-file-managed-main_cf"]
    )
    log = staging.c.exec("journalctl", "-u", "postfix*", "--since", since, "--no-pager", "-o", "cat").stdout
    assert "sender_relay" not in log, log
    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    assert staging.c.exec("test", "-e", "/etc/postfix/sender_relay.db", check=False).returncode != 0


def test_mail_queued_while_disabled_reaches_only_the_redirect(staging):
    """Off with the redirect in pillar, mail to customers, an operator's release, then on again.

    Found by review: the disabled main.cf used to drop the redirect, and re-enabling
    released held mail that still had its real recipients.
    """
    staging.set_pillar({**staging.suite_pillar(), "enabled": False})
    rc, out = staging.apply()
    assert rc == 0, out
    victims = ["victim-a@customer.example", "victim-b@customer.example"]
    ids = []
    for victim in victims:
        message_id = f"<{uuid.uuid4().hex}@victims.test>"
        staging.c.exec(
            "/usr/sbin/sendmail", "-f", "app@example.com", victim,
            input=f"To: {victim}\nSubject: invoice\nMessage-ID: {message_id}\n\nhello\n",
        )  # fmt: skip
        ids.append(message_id)
    staging.c.sh("sleep 1; postsuper -H ALL; postqueue -f")
    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
    for message_id in ids:
        got = provider.wait_for_messages(staging.c, message_id, timeout=60)
        assert len(got) == 1 and got[0]["rcpt_tos"] == ["qa@example.com"], got
    assert staging.queue() == []


# Found by the second review: a redirect turned on while mail waits must never let that mail
# out with its real recipients, whether Postfix was stopped or the run failed half-way.
ORDER = """
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage(); msg["From"] = "app@example.com"; msg["To"] = "alice@customer.example"
msg["Subject"] = "Your order"; msg["Message-ID"] = sys.argv[1]; msg.set_content("x")
with smtplib.SMTP("127.0.0.1", 25) as smtp:
    smtp.send_message(msg)
"""


def _quick_retry_pillars(staging) -> tuple[dict, dict]:
    """Without and with the redirect; short backoff, so that deferred mail is due at once."""
    pillar = staging.suite_pillar()
    fast = {**pillar["main_cf"], "minimal_backoff_time": "5s", "maximal_backoff_time": "10s"}
    plain = {**{k: v for k, v in pillar.items() if k != "redirect_all_to"}, "main_cf": fast}
    return plain, {**plain, "redirect_all_to": pillar["redirect_all_to"]}


def _deferred_order(staging, plain: dict) -> str:
    staging.set_pillar(plain)
    rc, out = staging.apply()
    assert rc == 0, out
    provider.stop(staging.c)
    message_id = f"<{uuid.uuid4().hex}@order.test>"
    staging.c.exec("python3", "-c", ORDER, message_id)
    staging.wait_deferred(1)
    return message_id


def test_redirect_turned_on_while_postfix_is_stopped(staging):
    plain, redirected = _quick_retry_pillars(staging)
    message_id = _deferred_order(staging, plain)
    staging.c.exec("systemctl", "stop", "postfix")
    time.sleep(11)  # the deferred message is due when Postfix starts again
    provider.deploy(staging.c, staging.run.ca, staging.spec, listen=PROVIDER_ADDR)
    staging.set_pillar(redirected)
    rc, out = staging.apply()  # starts Postfix: its queue manager must not see the real recipient
    assert rc == 0, out
    got = provider.wait_for_messages(staging.c, message_id, timeout=60)
    assert len(got) == 1 and got[0]["rcpt_tos"] == ["qa@example.com"], got
    assert staging.queue() == []


def test_a_run_that_fails_after_the_hold_is_finished_by_the_next(staging):
    plain, redirected = _quick_retry_pillars(staging)
    message_id = _deferred_order(staging, plain)
    staging.set_pillar({**redirected, "main_cf": {**redirected["main_cf"], "no_such_parameter": "1"}})
    rc, out = staging.apply()  # holds the queue, writes the redirect map, then main.cf is refused
    assert rc != 0
    assert [e["queue_name"] for e in staging.queue()] == ["hold"]
    staging.set_pillar(redirected)
    rc, out = staging.apply()
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-requeue" in staging.changed()
    provider.deploy(staging.c, staging.run.ca, staging.spec, listen=PROVIDER_ADDR)
    staging.c.exec("postqueue", "-f")
    got = provider.wait_for_messages(staging.c, message_id, timeout=60)
    assert len(got) == 1 and got[0]["rcpt_tos"] == ["qa@example.com"], got
    assert staging.queue() == []
    staging.set_pillar(staging.suite_pillar())
    rc, out = staging.apply()
    assert rc == 0, out
