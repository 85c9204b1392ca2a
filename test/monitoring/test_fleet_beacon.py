"""The beacon on a real salt-master's event bus: an outage is seen with its reason, then the recovery.

One master, one web minion, the fake provider in its own container.  Pillar
``monitoring: {interval: 5, beacon: {interval: 5, deferred: 1}}``: the collector
writes every 5 s, the beacon reads its state every 5 s, so the master must see an
event within 10 s of the deferral, plus slack for a loaded machine.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from harness import provider
from harness.fleet import Fleet
from harness.formula import REPO

PILLARS = REPO / "test" / "salt" / "pillar" / "monitoring-fleet"
SPEC = provider.load_spec(REPO / "test" / "monitoring" / "provider.yml", PILLARS / "postfix_relay.sls")
INTERVALS = 5 + 5  # collector + beacon
SLACK = 30
ALERT = r"salt/beacon/web1/postfix_relay/alert"
RECOVERY = r"salt/beacon/web1/postfix_relay/recovery"
SEND = """
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "app@web.example.com", "c@example.org", "x", sys.argv[1]
msg.set_content("beacon test")
with smtplib.SMTP("127.0.0.1", 25) as smtp:
    smtp.send_message(msg)
"""


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(name="beacon", minions={"web1": ["web"]}, pillar_dir=PILLARS, spec=SPEC).up()
    yield f
    f.down()


def _events(text: str, tag: str) -> list[dict]:
    """The data of each ``tag`` event in a ``state.event pretty=True`` capture."""
    found = []
    for match in re.finditer(re.escape(tag) + r"\s*(\{.*?\n\})", text, re.DOTALL):
        found.append(json.loads(match.group(1)))
    return found


def test_beacon_configured_by_the_state(fleet):
    rc, data, out = fleet.salt("web1", "state.apply", "postfix_relay")
    assert rc == 0, out[-3000:]
    assert SPEC.password not in out
    rc, data, out = fleet.salt("web1", "beacons.list", "return_yaml=False")
    assert rc == 0, out
    config = {k: v for item in data["web1"]["postfix_relay"] for k, v in item.items()}
    assert config["interval"] == 5 and config["deferred"] == 1, config
    fleet.cut_off()


def test_outage_alert_with_reason_then_recovery(fleet):
    web = fleet.minion("web1")
    with fleet.master_events() as events:
        provider.stop(fleet.provider)
        started = time.monotonic()
        web.exec("python3", "-c", SEND, "<beacon-1@postfix-relay.test>")
        text = events.wait_for(ALERT, timeout=INTERVALS + SLACK)
        alert_after = time.monotonic() - started
        alert = _events(text, ALERT)[0]
        assert alert["conditions"].get("deferred", 0) >= 1, alert
        assert alert["reasons"].get("connect", 0) >= 1, alert
        print(f"\n==> beacon: alert {alert_after:.0f} s after the deferral: {alert['conditions']} {alert['reasons']}")

        provider.deploy(fleet.provider, fleet.ca, SPEC, listen="0.0.0.0")
        started = time.monotonic()
        web.exec("postqueue", "-f")
        assert fleet.wait_for_message("<beacon-1@postfix-relay.test>", timeout=60), "the deferred message never left"
        text = events.wait_for(RECOVERY, timeout=INTERVALS + SLACK)
        recovery = _events(text, RECOVERY)[0]
        print(f"==> beacon: recovery {time.monotonic() - started:.0f} s after the flush: {recovery}")
        assert recovery["conditions"] == {} and "deferred" in recovery["previous"], recovery
        # Only changes fire: one alert, one recovery.
        assert len(_events(events.text(), ALERT)) == 1 and len(_events(events.text(), RECOVERY)) == 1
