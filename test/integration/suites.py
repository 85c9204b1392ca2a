"""What a relay suite expects, read from its files (never from the formula's own module).

``test/integration/<suite>/provider.yml`` is written from the provider's docs;
the password comes from the suite's pillar ``test/salt/pillar/<suite>.sls``.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from harness.kitchen import salt_call
from harness.provider import load_spec

TEST_DIR = Path(__file__).resolve().parents[1]
EVENTS = "/var/lib/fakeprovider/events.jsonl"
PILLAR_SOURCE = "/tmp/kitchen/srv/pillar/postfix_relay.sls"


@dataclass(frozen=True)
class Suite:
    name: str
    host: str
    port: int
    tls: str
    username: str
    password: str

    @property
    def nexthop(self) -> str:
        return f"[{self.host}]:{self.port}"


def load_suite(name: str) -> Suite:
    spec = load_spec(TEST_DIR / "integration" / name / "provider.yml", TEST_DIR / "salt" / "pillar" / f"{name}.sls")
    return Suite(name, spec.host, spec.port, spec.tls, spec.username, spec.password)


SALT_CALL = shlex.join(salt_call())


def salt_apply(host, sls: str = "postfix_relay", pillar: dict | None = None) -> tuple[int, dict | list | None, str]:
    """state.apply on the instance, as the converge did; returns (rc, states or errors, raw output)."""
    cmd = f"{SALT_CALL} state.apply {sls}"
    out = host.run(cmd + " pillar=%s", json.dumps(pillar)) if pillar is not None else host.run(cmd)
    try:
        data = json.loads(out.stdout)["local"]
    except (ValueError, KeyError):
        data = None
    return out.rc, data, out.stdout + out.stderr


def changed_ids(states: dict) -> set[str]:
    return {r["__id__"] for r in states.values() if r.get("changes")}


def master_pid(host) -> str:
    return host.check_output("cat /var/spool/postfix/pid/master.pid").strip()


# Submits one message to 127.0.0.1:25 as a Django app would (argv: Message-ID, Subject).
SMTP_SEND = """
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"] = "app@web.example.com"
msg["To"] = "customer@example.org"
msg["Subject"] = sys.argv[2]
msg["Message-ID"] = sys.argv[1]
msg.set_content("Password reset link: https://example.com/reset/abc\\n")
with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
    smtp.send_message(msg)
print("submitted")
"""


# A web app's trickle, run inside the instance in one process: each message is submitted as
# soon as the previous one reached the provider (its event log polled every 20 ms), so the gap
# between two messages is Postfix's own, not docker exec's (which can take seconds on a busy
# machine, longer than Postfix keeps an idle connection).  argv: events path, count, prefix.
TRICKLE = """
import json, os, smtplib, sys, time
from email.message import EmailMessage
path, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def arrived(message_id):
    if not os.path.exists(path):
        return False
    with open(path) as handle:
        return any(message_id in line and '"message"' in line for line in handle)
for i in range(count):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "app@web.example.com", "customer@example.org", "trickle"
    msg["Message-ID"] = f"<{prefix}{i}@kitchen.postfix-relay.test>"
    msg.set_content("Password reset link: https://example.com/reset/abc\\n")
    with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
        smtp.send_message(msg)
    deadline = time.monotonic() + 30
    while not arrived(msg["Message-ID"]):
        if time.monotonic() > deadline:
            sys.exit(f"message {i} of the trickle never arrived")
        time.sleep(0.02)
print("trickled", count)
"""


def events(host, path: str = EVENTS) -> list[dict]:
    """A fake provider's event log on the instance (the suite's own by default)."""
    content = host.file(path).content_string if host.file(path).exists else ""
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def wait_for_messages(
    host, message_ids, *, since: int = 0, timeout: float = 90, poll: float = 1, path: str = EVENTS
) -> list[dict]:
    """The provider's ``message`` events for these Message-IDs (logged after event ``since``),
    once all of them arrived or at the deadline, whichever comes first."""
    wanted = set(message_ids)
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(host, path)[since:] if e["event"] == "message" and e["message_id"] in wanted]
        if {e["message_id"] for e in found} >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(poll)
