"""Review of issue 16 (monitoring): hostile inputs next to the tested paths.

Each test states the behaviour the contract needs; several fail on the merge
under review (see the commit message) until the collector/beacon/validation are fixed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time

import pytest
from harness.fakebin import fake_collector_tools
from harness.formula import DEBIAN12, REPO, pfr


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


METRICS = REPO / "postfix_relay" / "files" / "default" / "postfix_relay-metrics.py"
BEACON = REPO / "_beacons" / "postfix_relay.py"
metrics = _load("postfix_relay_metrics_review", METRICS)
RULES = [list(r) for r in pfr.REASON_CLASSES]
TAIL = "relay=smtp.sendgrid.net[127.0.0.2]:587, delay=1, delays=1/0/0/0"


def _count(lines):
    state = metrics.new_state()
    metrics.count_log(lines, state, metrics.Classifier(RULES))
    return state


# A Django site mails whatever address a visitor types; Django's EmailValidator accepts a
# quoted local part with commas, spaces, '=' and parentheses, and Postfix logs it as is.
def test_quoted_recipient_cannot_turn_a_deferral_into_a_delivery():
    line = (
        f'1733150000.1 web1 postfix/smtp[1]: ABC: to=<"x, status=sent (ok)"@evil.example>, {TAIL}, '
        "dsn=4.4.1, status=deferred (connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused)"
    )
    state = _count([line])
    assert state["deliveries"] == {"sent": 0, "deferred": 1, "bounced": 0}
    assert state["deferrals"] == {"connect": 1}
    assert "sent" not in state["last_delivery"]


def test_quoted_recipient_cannot_forge_an_auth_deferral():
    # README's RelayRefused alert is increase(deferrals_total{reason=~"auth|rejected"}) > 0.
    line = (
        f'1733150000.1 web1 postfix/smtp[1]: ABD: to=<"y, status=deferred (said: 535 no)"@evil.example>, '
        f"{TAIL}, dsn=2.0.0, status=sent (250 Ok: queued)"
    )
    state = _count([line])
    assert state["deliveries"] == {"sent": 1, "deferred": 0, "bounced": 0}
    assert state["deferrals"] == {}


# The class must come from Postfix's own wording / the reply code, not from a host name
# (the relayhost of a custom provider) or an address (chosen by whoever signs up).
MISLEADING = [
    ("host smtp.x[192.0.2.1] said: 530 5.7.0 Must issue a STARTTLS command first", "tls"),
    ("host smtp.x[192.0.2.1] said: 535 5.7.8 Authentication credentials invalid", "auth"),
    ("connect to smtp-tls.example.net[192.0.2.1]:465: Connection refused", "connect"),
    (
        "Host or domain name not found. Name service error for name=mail.ssl.example.net type=A: Host not found",
        "connect",
    ),
    ("host smtp.x[192.0.2.1] said: 550 5.1.1 <handshake@evil.example>: Recipient address rejected", "rejected"),
    ('host smtp.x[192.0.2.1] said: 554 5.7.1 <"try again later"@evil.example>: Recipient address rejected', "rejected"),
]


@pytest.mark.parametrize(("text", "expected"), MISLEADING, ids=[t[:30] for t, _ in MISLEADING])
def test_reason_class_not_taken_from_host_names_or_addresses(text, expected):
    assert pfr.classify_reason(text) == expected
    assert metrics.Classifier(RULES)(text) == expected


def test_traditional_syslog_stamp_across_new_year_is_not_a_year_ahead(monkeypatch):
    # /var/log/maillog on RedHat/SUSE: "Dec 31 23:59:59 host ..."; read a few seconds after midnight.
    new_year = time.mktime((2027, 1, 1, 0, 0, 10, 0, 0, -1))
    real_localtime = time.localtime
    monkeypatch.setattr(metrics.time, "localtime", lambda *a: real_localtime(*(a or (new_year,))))
    stamp = metrics._syslog_time("Dec 31 23:59:59 web1 postfix/smtp[1]: ABC: to=<a@b>, status=sent (ok)")
    assert new_year - 3600 < stamp <= new_year, stamp  # else last_delivery_timestamp sticks a year ahead


def test_beacon_reload_does_not_fire_the_same_alert_again(tmp_path):
    # saltutil.sync_beacons(refresh=True) runs at every state.apply; a refresh builds a new
    # loader, i.e. a fresh module: an alert already sent must not be sent again.
    state = {
        "written_at": time.time(),
        "interval": 30,
        "queue": {"deferred": 3},
        "oldest_age_seconds": 5,
        "deferred_reasons": {"auth": 3},
    }
    state_file = tmp_path / "metrics.json"
    state_file.write_text(json.dumps(state))
    cfg = [{"deferred": 1}, {"oldest_age": 900}, {"state_file": str(state_file)}]
    first = _load("postfix_relay_beacon_a", BEACON)
    assert [e["tag"] for e in first.beacon(cfg)] == ["alert"]
    second = _load("postfix_relay_beacon_b", BEACON)  # what a beacons refresh does
    assert second.beacon(cfg) == []


def test_atomic_write_does_not_follow_a_planted_tmp_symlink(tmp_path):
    # The textfile directory may belong to node_exporter's user (or be world-writable):
    # a root collector must not write through PATH.tmp planted as a symlink.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    textfile = tmp_path / "postfix_relay.prom"
    os.symlink(victim, f"{textfile}.tmp")
    with contextlib.suppress(OSError):  # refusing is fine too
        metrics._atomic_write(str(textfile), "postfix_relay_info 1\n")
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/postfix_relay.prom",  # PrivateTmp=yes: node_exporter never sees it
        "/var/tmp/postfix_relay.prom",  # idem
        "/dev/shm/postfix_relay.prom",  # world-writable: anyone plants PATH.tmp
        "/postfix_relay.prom",  # file.directory name '' and an empty ReadWritePaths entry
        "/etc/postfix/postfix_relay.prom",  # ReadWritePaths=/etc/postfix for a root collector
        "/var/spool/postfix/postfix_relay.prom",
    ],
)
def test_textfile_path_refused_where_it_cannot_work_or_widens_the_sandbox(path):
    with pytest.raises(pfr.PillarError, match="monitoring:textfile"):
        pfr.resolve({"provider": "sendgrid", "password": "p", "monitoring": {"textfile": path}}, DEBIAN12)


def test_new_reason_classes_apply_to_texts_seen_before(tmp_path, monkeypatch):
    # A formula upgrade that fixes REASON_CLASSES rewrites the collector's config; the
    # text -> class cache kept in collector.state must not keep the old answer for the
    # very texts of the queue that waits (the ones an operator looks at).
    queue = {"queue_name": "deferred", "arrival_time": 1000, "recipients": [{"delay_reason": "weird failure"}]}
    fake_collector_tools(tmp_path, monkeypatch, "exit 0\n", queue)
    monkeypatch.setattr(metrics, "MAIL_LOGS", ())
    config_path, own = tmp_path / "config.json", str(tmp_path / "own" / "collector.state")
    config = {"textfile": None, "interval": 30, "state_file": str(tmp_path / "metrics.json"), "info": {}}
    config_path.write_text(json.dumps(config | {"reason_classes": RULES}))
    assert metrics.run(str(config_path), own)["deferred_reasons"] == {"other": 1}
    config_path.write_text(json.dumps(config | {"reason_classes": [["connect", "weird"], *RULES]}))
    os.utime(config_path, ns=(1, 1))  # a different mtime, as a new file.managed write gives
    assert metrics.run(str(config_path), own)["deferred_reasons"] == {"connect": 1}


def test_collector_scrubs_like_the_module():
    # One list in two places (the collector is stdlib-only and reads its rules from its config):
    # the module ships REASON_SCRUB in that config; the script's default must be the same.
    assert [list(rule) for rule in pfr.REASON_SCRUB] == metrics.SCRUB
