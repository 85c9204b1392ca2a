"""Monitoring as pure Python: pillar, reason classes, the collector's counting and textfile, the beacon's events."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import pytest
from harness.fakebin import fake_collector_tools
from harness.formula import DEBIAN12, REPO, pfr
from prometheus_client.parser import text_string_to_metric_families

SECRET = "Mon-S3cret pass:word!"
TEXTFILE = "/var/lib/prometheus/node-exporter/postfix_relay.prom"
PILLAR = {"provider": "sendgrid", "password": SECRET, "monitoring": {"textfile": TEXTFILE}}


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


metrics = _load("postfix_relay_metrics", REPO / "postfix_relay" / "files" / "default" / "postfix_relay-metrics.py")
BEACON = REPO / "_beacons" / "postfix_relay.py"
beacon = _load("postfix_relay_beacon", BEACON)

# Deferral texts as Postfix 3.7 logs them (seen in the faults suite, Postfix's source, providers' docs).
REASONS = [
    ("connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused", "connect"),
    ("delivery temporarily suspended: connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused", "connect"),
    ("Host or domain name not found. Name service error for name=smtp.sendgrid.net type=A: Host not found", "connect"),
    ("conversation with smtp.sendgrid.net[127.0.0.2] timed out while receiving the initial server greeting", "connect"),
    ("lost connection with smtp.sendgrid.net[127.0.0.2] while receiving the initial server greeting", "connect"),
    ("TLS is required, but was not offered by host smtp.sendgrid.net[127.0.0.2]", "tls"),
    ("Cannot start TLS: handshake failure", "tls"),
    ("Server certificate not verified", "tls"),
    ("delivery temporarily suspended: Server certificate not trusted", "tls"),
    (
        "SASL authentication failed; server smtp.sendgrid.net[127.0.0.2] said: 535 5.7.8 Authentication failed",
        "auth",
    ),
    ("SASL authentication failed; cannot authenticate to server smtp.x[1.2.3.4]: no mechanism available", "auth"),
    ("host smtp.sendgrid.net[127.0.0.2] said: 530 5.7.0 Authentication required (in reply to MAIL FROM)", "auth"),
    (
        "host email-smtp.eu-west-1.amazonaws.com[1.2.3.4] said: 454 Throttling failure: Maximum sending rate",
        "throttled",
    ),
    ("host smtp.mailgun.org[1.2.3.4] said: 421 4.7.0 Too many connections (in reply to end of DATA)", "throttled"),
    (
        "host email-smtp.eu-west-1.amazonaws.com[1.2.3.4] said: 554 Message rejected: Email address is not "
        "verified. (in reply to end of DATA command)",
        "rejected",
    ),
    ("host smtp.sendgrid.net[127.0.0.2] said: 550 5.7.1 Sender suspended (in reply to end of DATA)", "rejected"),
    ("relaying disabled by pillar postfix_relay:enabled", "other"),
]


@pytest.mark.parametrize(("text", "expected"), REASONS, ids=[e for _, e in REASONS])
def test_reason_classes(text, expected):
    assert pfr.classify_reason(text) == expected
    # The collector classifies with the very rules the module hands it in its config.
    assert metrics.Classifier([list(r) for r in pfr.REASON_CLASSES])(text) == expected


def test_off_by_default_everything_absent():
    s = pfr.resolve({"provider": "sendgrid", "password": SECRET}, DEBIAN12)
    mon = [f for f in s["files"] if f["sls"] == "monitoring"]
    assert s["monitoring"] is None
    assert mon and not any(f["present"] for f in mon)
    assert {f["path"] for f in mon} >= {"/usr/local/sbin/postfix_relay-metrics", "/var/lib/postfix_relay"}


def _files(s):
    return {f["id"]: f for f in s["files"] if f["sls"] == "monitoring"}


def test_textfile_collector_files_and_config():
    s = pfr.resolve(PILLAR, DEBIAN12)
    files = _files(s)
    assert s["monitoring"]["interval"] == 30 and s["monitoring"]["beacon"] is None
    assert files["monitoring_script"]["source"] == "postfix_relay-metrics.py"
    assert files["monitoring_script"]["mode"] == "0755"
    assert not files["monitoring_beacon_marker"]["present"]
    config = json.loads(files["monitoring_config"]["contents"])
    assert config["textfile"] == TEXTFILE
    assert config["info"] == {
        "provider": "sendgrid",
        "relayhost": "[smtp.sendgrid.net]:587",
        "tls": "starttls",
        "enabled": "true",
    }
    assert [name for name, _ in config["reason_classes"]] == ["auth", "tls", "connect", "throttled", "rejected"]
    timer = files["monitoring_timer"]["contents"]
    assert "OnUnitActiveSec=30s" in timer and "AccuracySec=1s" in timer
    assert (
        "ReadWritePaths=/var/lib/postfix_relay /var/lib/prometheus/node-exporter"
        in files["monitoring_service"]["contents"]
    )
    assert SECRET not in json.dumps(s)


def test_monitoring_while_disabled_and_beacon_defaults():
    pillar = {"enabled": False, "monitoring": {"beacon": True, "interval": 10}}
    s = pfr.resolve(pillar, DEBIAN12)
    config = json.loads(_files(s)["monitoring_config"]["contents"])
    assert config["info"]["enabled"] == "false" and config["textfile"] is None
    assert s["monitoring"]["beacon"] == {
        "interval": 10,
        "deferred": 1,
        "oldest_age": 900,
        "state_file": "/var/lib/postfix_relay/metrics.json",
    }
    assert _files(s)["monitoring_beacon_marker"]["present"]


def test_clean_removes_monitoring():
    s = pfr.resolve({"monitoring": {"textfile": TEXTFILE}}, DEBIAN12, action="clean")
    assert s["monitoring"] is None and not any(f["present"] for f in _files(s).values())


# -- the collector --------------------------------------------------------------
def _line(stamp: float, status: str, reason: str, qid: str = "4F2A1C") -> str:
    return (
        f"{stamp:.6f} web1 postfix/smtp[812]: {qid}: to=<customer@example.org>, relay=smtp.sendgrid.net"
        f"[127.0.0.2]:587, delay=0.4, delays=0.1/0/0.2/0.1, dsn=2.0.0, status={status} ({reason})"
    )


def _config():
    return json.loads(_files(pfr.resolve(PILLAR, DEBIAN12))["monitoring_config"]["contents"])


def _families(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_counts_and_textfile_parses():
    config = _config()
    classify = metrics.Classifier(config["reason_classes"])
    state = metrics.new_state()
    lines = [
        _line(1000.5, "deferred", "connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused"),
        _line(1001.5, "deferred", "SASL authentication failed; server x said: 535 5.7.8 Authentication failed"),
        _line(1002.5, "sent", "250 Ok: queued as 9"),
        _line(1003.5, "sent", "250 Ok: queued as 10"),
        _line(1004.5, "expired", "host x said: 554 rejected"),
        "1005.0 web1 postfix/qmgr[1]: 4F2A1C: removed",
    ]
    metrics.count_log(lines, state, classify)
    snapshot = {"ok": True, "queue": dict.fromkeys(metrics.QUEUES, 0) | {"deferred": 2}, "oldest_age_seconds": 61.2}
    text = metrics.render(config, state, snapshot, [*classify.names, "other"])
    got = _families(text)
    assert got[("postfix_relay_queue_messages", (("queue", "deferred"),))] == 2
    assert got[("postfix_relay_oldest_message_age_seconds", ())] == 61
    assert got[("postfix_relay_deliveries_total", (("status", "sent"),))] == 2
    assert got[("postfix_relay_deliveries_total", (("status", "deferred"),))] == 2
    assert got[("postfix_relay_deliveries_total", (("status", "bounced"),))] == 1
    assert got[("postfix_relay_deferrals_total", (("reason", "connect"),))] == 1
    assert got[("postfix_relay_deferrals_total", (("reason", "auth"),))] == 1
    assert got[("postfix_relay_deferrals_total", (("reason", "rejected"),))] == 0
    assert got[("postfix_relay_last_delivery_timestamp_seconds", (("status", "sent"),))] == 1003.5
    assert got[("postfix_relay_last_delivery_timestamp_seconds", (("status", "deferred"),))] == 1001.5
    info = (
        ("enabled", "true"),
        ("provider", "sendgrid"),
        ("relayhost", "[smtp.sendgrid.net]:587"),
        ("tls", "starttls"),
    )
    assert got[("postfix_relay_info", info)] == 1


def test_mail_log_offsets_survive_rotation(tmp_path):
    """A syslog file: counted once, across a rotation (rest of mail.log.1 first, then the new file)."""
    log = tmp_path / "mail.log"
    classify = metrics.Classifier(_config()["reason_classes"])
    state = metrics.new_state()
    sent = "2026-12-02T15:00:00.000000+00:00 web1 postfix/smtp[1]: A1: to=<a@b.c>, relay=x, status=sent (250 ok)\n"
    log.write_text(sent * 3)
    metrics.count_log(metrics._file_lines(str(log), state), state, classify)
    with log.open("a") as handle:
        handle.write(sent * 2)
    os.rename(log, tmp_path / "mail.log.1")
    log.write_text(sent)
    metrics.count_log(metrics._file_lines(str(log), state), state, classify)
    metrics.count_log(metrics._file_lines(str(log), state), state, classify)
    assert state["deliveries"]["sent"] == 6


def test_atomic_write_mode(tmp_path):
    old = os.umask(0o077)
    try:
        metrics._atomic_write(str(tmp_path / "x.prom"), "a 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.prom").stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "x.prom.tmp").exists()


# -- the beacon -------------------------------------------------------------------
def _state(deferred=0, oldest=0.0, reasons=None, at=1000.0):
    queue = dict.fromkeys(metrics.QUEUES, 0) | {"deferred": deferred}
    return {"queue": queue, "oldest_age_seconds": oldest, "deferred_reasons": reasons or {}, "written_at": at}


def test_beacon_fires_on_changes_and_recovery_only():
    cfg = {"deferred": 1, "oldest_age": 900}
    last, data = beacon.event(_state(), cfg, 1001, None)
    assert data is None and last == []
    last, data = beacon.event(_state(3, 40, {"connect": 3}), cfg, 1001, last)
    assert data["tag"] == "alert" and data["conditions"] == {"deferred": 3} and data["reasons"] == {"connect": 3}
    last, data = beacon.event(_state(4, 50, {"connect": 4}), cfg, 1001, last)
    assert data is None  # same conditions: silent
    last, data = beacon.event(_state(4, 950, {"auth": 4}), cfg, 1001, last)
    assert data["tag"] == "alert" and sorted(data["conditions"]) == ["auth", "deferred", "oldest_age"]
    last, data = beacon.event(_state(), cfg, 1001, last)
    assert last == [] and data["conditions"] == {}
    assert data["tag"] == "recovery" and data["previous"] == ["auth", "deferred", "oldest_age"]
    _, data = beacon.event(_state(at=0), cfg, 1001, [])
    assert data["conditions"] == {"collector": "no fresh state from postfix_relay-metrics.timer"}


def test_beacon_sends_a_recovery_that_happened_while_it_was_not_running(tmp_path):
    state_file = tmp_path / "metrics.json"
    cfg = [{"deferred": 1}, {"oldest_age": 900}, {"state_file": str(state_file)}]
    now = time.time()
    state_file.write_text(json.dumps(_state(2, 10, {"tls": 2}, at=now)))
    # No beacon.last.json yet (first start): an ongoing fault is reported, a healthy relay is not.
    assert [e["tag"] for e in _load("postfix_relay_beacon_r1", BEACON).beacon(cfg)] == ["alert"]
    assert json.loads((tmp_path / "beacon.last.json").read_text())["conditions"] == ["deferred", "tls"]
    assert not (tmp_path / "beacon.last.json.tmp").exists()
    state_file.write_text(json.dumps(_state(at=now)))  # the relay recovers while the minion is down
    events = _load("postfix_relay_beacon_r2", BEACON).beacon(cfg)  # the minion starts again
    assert [(e["tag"], e["previous"]) for e in events] == [("recovery", ["deferred", "tls"])]
    assert _load("postfix_relay_beacon_r3", BEACON).beacon(cfg) == []
    (tmp_path / "beacon.last.json").unlink()
    assert _load("postfix_relay_beacon_r4", BEACON).beacon(cfg) == []


def test_beacon_validate():
    assert beacon.validate([{"interval": 30}, {"deferred": 5}])[0]
    assert not beacon.validate([{"deferd": 5}])[0]
    assert not beacon.validate([{"oldest_age": "15m"}])[0]
    assert not beacon.validate({"deferred": 5})[0]


def test_collector_run_end_to_end_with_fake_commands(tmp_path, monkeypatch):
    """run(): journal lines after the cursor, postqueue -j, textfile + beacon state; nothing counted twice."""
    journal = tmp_path / "journal.txt"
    queue = {"queue_name": "deferred", "arrival_time": 1000, "recipients": [{"delay_reason": "Connection refused"}]}
    fake_collector_tools(
        tmp_path,
        monkeypatch,
        f'case "$*" in *--after-cursor=c1*) exit 0;; esac\ncat {journal}\necho "-- cursor: c1"\n',
        queue,
    )
    monkeypatch.setattr(metrics, "MAIL_LOGS", ())
    journal.write_text(
        _line(1000.5, "deferred", "connect to x[127.0.0.2]:587: Connection refused")
        + "\n"
        + _line(1002.5, "sent", "250 Ok")
        + "\n"
    )
    config = _config() | {"textfile": str(tmp_path / "m.prom"), "state_file": str(tmp_path / "metrics.json")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for _ in range(2):
        metrics.run(str(tmp_path / "config.json"), str(tmp_path / "own" / "collector.state"))
    got = _families((tmp_path / "m.prom").read_text())
    assert got[("postfix_relay_deliveries_total", (("status", "sent"),))] == 1
    assert got[("postfix_relay_deferrals_total", (("reason", "connect"),))] == 1
    assert got[("postfix_relay_queue_messages", (("queue", "deferred"),))] == 1
    assert got[("postfix_relay_oldest_message_age_seconds", ())] > 0
    state = json.loads((tmp_path / "metrics.json").read_text())  # hand-written JSON, read by the beacon
    assert state["deferred_reasons"] == {"connect": 1} and state["journal_cursor"] == "c1"
    assert "config" not in state


def test_hand_written_json_round_trips():
    value = {"a": [1, 2.5, None, True], "b": 'q"\\\n\x7fé', "c": {"d": "s=1;i=2"}}
    assert json.loads(metrics._json(value)) == value


def test_queue_lines_read_without_json():
    entry = {
        "queue_name": "deferred",
        "queue_id": "4F2A1C",
        "arrival_time": 1733150000,
        "sender": 'odd"name@example.com',
        "recipients": [
            {"address": "a@example.org", "delay_reason": 'host x said: 554 "Message rejected" / unverified'},
            {"address": "b@example.org"},
        ],
    }
    line = json.dumps(entry)
    assert list(metrics._json_values(line, "queue_name")) == ["deferred"]
    assert list(metrics._json_values(line, "arrival_time")) == [1733150000]
    assert list(metrics._json_values(line, "delay_reason")) == [entry["recipients"][0]["delay_reason"]]
    classify = metrics.Classifier(_config()["reason_classes"])
    assert classify(entry["recipients"][0]["delay_reason"]) == "rejected"
    assert classify.cache == {entry["recipients"][0]["delay_reason"]: "rejected"}


def test_beacon_quiet_while_relaying_is_disabled():
    """enabled: false holds every message on purpose: the beacon does not alert on the waiting queue
    (only on a collector that stopped writing); relaying again, the same queue is trouble."""
    now = time.time()
    state = {
        "written_at": now,
        "interval": 30,
        "queue": {"deferred": 4, "hold": 9},
        "oldest_age_seconds": 7200,
        "deferred_reasons": {"auth": 4},
    }
    cfg = {"deferred": 1, "oldest_age": 900}
    assert beacon.conditions({**state, "relaying": "disabled"}, cfg, now) == {}
    assert set(beacon.conditions({**state, "relaying": "enabled"}, cfg, now)) == {"deferred", "oldest_age", "auth"}
    stale = {**state, "relaying": "disabled", "written_at": now - 3600}
    assert set(beacon.conditions(stale, cfg, now)) == {"collector"}
