"""Suite custom, after the relay checks: reload vs restart, validation before install, clean.

Runs on the converged instance (after test_custom.py, pytest's file order) and
drives Salt there the way an operator would, with a pillar override on the
command line.
"""

from __future__ import annotations

import itertools
import time

from suites import PILLAR_SOURCE, SMTP_SEND, changed_ids, events, master_pid, salt_apply, wait_for_messages

MAIN_CF = "/etc/postfix/main.cf"


def _sha(host, path):
    return host.file(path).sha256sum


def _journal_since(host, cursor_ts: float) -> str:
    return host.check_output("journalctl -u 'postfix*' --no-pager --since @%s", str(int(cursor_ts)))


def test_nothing_changed_means_nothing_touched(host):
    pid = master_pid(host)
    rc, states, out = salt_apply(host)
    assert rc == 0, out
    assert changed_ids(states) == set()
    assert master_pid(host) == pid


def test_main_cf_change_reloads_without_restart(host):
    pid = master_pid(host)
    since = time.time() - 1
    rc, states, out = salt_apply(host, pillar={"postfix_relay": {"main_cf": {"maximal_backoff_time": "11m"}}})
    assert rc == 0, out
    assert "postfix_relay-config-file-managed-main_cf" in changed_ids(states)
    assert host.check_output("postconf -h maximal_backoff_time") == "11m"
    assert master_pid(host) == pid, "a main.cf change must reload, not restart"
    assert "reload" in _journal_since(host, since)


def test_listener_change_restarts(host):
    pid = master_pid(host)
    rc, states, out = salt_apply(
        host,
        pillar={
            "postfix_relay": {
                "main_cf": {"inet_interfaces": "127.0.0.1"},
                "allow_unsafe_overrides": ["inet_interfaces"],
            }
        },
    )
    assert rc == 0, out
    assert "postfix_relay-config-file-managed-restart_marker" in changed_ids(states)
    assert master_pid(host) != pid, "inet_interfaces needs a restart"
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(":25")]
    assert listening == ["tcp://127.0.0.1:25"]


def test_restart_heals_a_master_older_than_its_listener_settings(host):
    """A run that changed inet_interfaces and died before the restart leaves the marker newer
    than the master: the next apply restarts, once, though nothing changes any more."""
    rc, _, out = salt_apply(host)  # back to the suite pillar (restarts: the listener changed)
    assert rc == 0, out
    host.check_output("touch /etc/postfix/postfix_relay.restart")  # as if the restart had not happened
    pid = master_pid(host)
    rc, states, out = salt_apply(host)
    assert rc == 0, out
    assert changed_ids(states) == {"postfix_relay-service-module-run-restart"}
    assert master_pid(host) != pid
    pid = master_pid(host)
    rc, states, out = salt_apply(host)
    assert rc == 0 and changed_ids(states) == set(), out
    assert master_pid(host) == pid, "restarted again though the master is newer than the marker"


def test_rejected_main_cf_never_replaces_the_working_one(host):
    rc, states, out = salt_apply(host)  # back to the suite pillar
    assert rc == 0, out
    before, pid = _sha(host, MAIN_CF), master_pid(host)
    rc, states, out = salt_apply(host, pillar={"postfix_relay": {"main_cf": {"no_such_parameter": "1"}}})
    assert rc != 0
    main_cf = states["file_|-postfix_relay-config-file-managed-main_cf_|-/etc/postfix/main.cf_|-managed"]
    assert main_cf["result"] is False
    assert "unused parameter: no_such_parameter=1" in main_cf["comment"]
    assert _sha(host, MAIN_CF) == before
    assert master_pid(host) == pid


def test_password_rotation_never_shows_either_password(host, suite):
    rotated = "R0tated-Custom-Pa55!"
    rc, states, out = salt_apply(host, pillar={"postfix_relay": {"password": rotated}})
    assert rc == 0, out
    assert {"postfix_relay-config-file-managed-sasl_passwd", "postfix_relay-config-cmd-run-postmap-sasl_passwd"} <= (
        changed_ids(states)
    )
    assert rotated not in out and suite.password not in out
    assert host.check_output("postmap -q %s hash:/etc/postfix/sasl_passwd", suite.nexthop).endswith(":" + rotated)
    rc, states, out = salt_apply(host)  # rotate back to the suite's password
    assert rc == 0 and rotated not in out and suite.password not in out, out
    assert host.check_output("postmap -q %s hash:/etc/postfix/sasl_passwd", suite.nexthop).endswith(
        ":" + suite.password
    )


def _sendmail_burst(host, message_ids: list[str]) -> None:
    """Queue these messages at once (local sendmail, one shell): their timing is Postfix's alone."""
    script = "".join(
        f"printf 'Message-ID: {m}\\nSubject: paced\\n\\nhello\\n' "
        "| /usr/sbin/sendmail -f app@web.example.com customer@example.org && "
        for m in message_ids
    )
    host.check_output(script + "true")


def test_rate_per_second_spaces_deliveries(host):
    """rate_per_second: 1 (what sandbox: true sets for SES): a burst leaves one message per second."""
    rc, _, out = salt_apply(host, pillar={"postfix_relay": {"rate_per_second": 1}})
    assert rc == 0, out
    assert host.check_output("postconf -h smtp_destination_rate_delay") == "1s"
    # Warm up: the first delivery after the reload opens a TLS connection, which delays its arrival
    # (not its start) by up to a second on a busy machine; the burst then reuses the connection.
    warm = f"<paced-warm-{time.time_ns()}@kitchen.test>"
    _sendmail_burst(host, [warm])
    assert wait_for_messages(host, [warm], timeout=60, poll=0.1), "warm-up message never arrived"
    ids = [f"<paced-{i}-{time.time_ns()}@kitchen.test>" for i in range(4)]
    _sendmail_burst(host, ids)
    arrived = {e["message_id"]: e["ts"] for e in wait_for_messages(host, ids, timeout=60)}
    assert len(arrived) == len(ids), f"only {len(arrived)} of {len(ids)} paced messages arrived"
    times = sorted(arrived.values())
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    # Unpaced, these four arrive within a few hundredths of a second.
    assert times[-1] - times[0] >= 2.7 and min(gaps) >= 0.9, f"deliveries not spaced by the 1 s rate delay: {gaps}"
    rc, _, out = salt_apply(host)  # back to the suite pillar: no delay
    assert rc == 0, out
    assert "smtp_destination_rate_delay" not in host.check_output("postconf -n")


def test_clean_removes_credentials_and_relay_keeps_local_postfix(host, suite):
    rc, states, out = salt_apply(host, "postfix_relay.clean")
    assert rc == 0, out
    for path in ("/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db", "/etc/postfix/postfix_relay.restart"):
        assert not host.file(path).exists, path
    assert host.check_output("postconf -h relayhost") == ""
    assert host.check_output("postconf -h inet_interfaces") == "loopback-only"
    assert host.check_output("postconf -h default_transport").startswith("retry:")
    assert host.run("postfix status").rc == 0
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(":25")]
    assert listening and all(s.startswith(("tcp://127.0.0.1:", "tcp://::1:")) for s in listening)
    found = host.run(
        "grep -rlF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e %s / 2>/dev/null", suite.password
    ).stdout.split()
    assert found == [PILLAR_SOURCE], f"password left behind after clean: {found}"
    rc, states, out = salt_apply(host, "postfix_relay.clean")
    assert rc == 0 and changed_ids(states) == set(), "clean is not idempotent"


def test_after_clean_nothing_leaves_and_nothing_bounces(host):
    """SMTP submissions get a temporary 450 (the app knows); local mail waits in the deferred queue."""
    sent_before = len([e for e in events(host) if e["event"] == "message"])
    out = host.run("/usr/bin/python3 -c %s %s %s", SMTP_SEND, "<after-clean@kitchen.test>", "after clean")
    assert out.rc != 0 and "450" in out.stderr and "outbound relay removed" in out.stderr, out.stderr
    local = host.run("printf 'Subject: cron output\\n\\nhello\\n' | /usr/sbin/sendmail -f root customer@example.org")
    assert local.rc == 0, local.stderr
    deadline = time.monotonic() + 30
    queue = ""
    while time.monotonic() < deadline and '"deferred"' not in queue:
        time.sleep(1)
        queue = host.check_output("postqueue -j")
    entries = [line for line in queue.splitlines() if line.strip()]
    assert len(entries) == 1, queue
    assert '"queue_name": "deferred"' in entries[0] and "outbound relay removed" in entries[0]
    assert len([e for e in events(host) if e["event"] == "message"]) == sent_before
