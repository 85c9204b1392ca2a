"""A real salt-master applies postfix_relay to web and worker minions; Django sends through it.

The tests run in file order on one fleet (module fixture): apply by grain
from the master, prove idempotence, cut the network, then send with Django
from the web minion and from a worker process, in relay mode and in direct
mode (Django -> provider, same pillar).  Last, the master side of the secret:
its job cache, log and event bus, and every execution function's answer.
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
from harness import provider
from harness.docker import docker
from harness.fakeprovider import sha256
from harness.fleet import MASTER_CACHE, MASTER_LOG, Fleet
from harness.images import SALT_VERSION

ENV_FILE = "/etc/relayapp/email.env"
RECIPIENTS = ["alice@example.org", "bob@example.net"]


@pytest.fixture(scope="module")
def fleet():
    # PFR_SALT_VERSION runs this whole file on another Salt (test_fleet_versions.py runs a part on each).
    f = Fleet(name="fleettest", salt_version=os.environ.get("PFR_SALT_VERSION", SALT_VERSION)).up()
    yield f
    f.down()


def _assert_applied(rc, data, out, minion, secret):
    assert rc == 0, out
    assert secret not in out, "the password reached the master's output"
    assert list(data) == [minion], out
    states = data[minion]
    assert isinstance(states, dict), states  # a list would be render errors
    failed = {k: v["comment"] for k, v in states.items() if v["result"] is not True}
    assert not failed, failed
    return states


def test_apply_to_web_by_grain(fleet):
    """A brand-new minion: the module reaches it without any manual sync."""
    rc, data, out = fleet.salt("-G", "roles:web", "state.apply", "postfix_relay")
    states = _assert_applied(rc, data, out, "web1", fleet.spec.password)
    assert any(v["__id__"] == "postfix_relay-django_env-file-managed-env" for v in states.values())


def test_apply_to_worker_by_grain(fleet):
    rc, data, out = fleet.salt("-G", "roles:worker", "state.apply", "postfix_relay")
    _assert_applied(rc, data, out, "worker1", fleet.spec.password)


def test_second_apply_changes_nothing(fleet):
    rc, data, out = fleet.salt("-C", "G@roles:web or G@roles:worker", "state.apply", "postfix_relay")
    assert rc == 0, out
    assert fleet.spec.password not in out
    assert set(data) == {"web1", "worker1"}
    for minion, states in data.items():
        changed = [v["__id__"] for v in states.values() if v["changes"]]
        assert changed == [], f"{minion}: {changed}"


def test_relay_env_file(fleet):
    for minion in fleet.minions:
        m = fleet.minion(minion)
        assert m.exec("stat", "-c", "%a %U %G", ENV_FILE).stdout.split() == ["600", "root", "root"]
        text = m.exec("cat", ENV_FILE).stdout
        assert 'EMAIL_HOST="localhost"' in text and 'EMAIL_PORT="25"' in text
        assert 'EMAIL_USE_TLS="False"' in text and 'EMAIL_USE_SSL="False"' in text


def test_fleet_is_cut_off_before_mail_flows(fleet):
    fleet.cut_off()
    assert docker("network", "inspect", "-f", "{{.Internal}}", fleet.network).stdout.strip() == "true"
    for name, container in fleet.containers.items():
        networks = docker(
            "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", container.name
        )
        assert networks.stdout.split() == [fleet.network], name
        routes = container.exec("ip", "route", "show").stdout + container.exec("ip", "-6", "route", "show").stdout
        assert "default" not in routes, f"{name}: {routes}"


@pytest.mark.parametrize("minion", ["web1", "worker1"])
def test_django_send_mail_relays_through_postfix(fleet, minion):
    message_id = f"<{uuid.uuid4().hex}@{minion}.fleet.test>"
    subject = f"password reset from {minion}"
    proc = fleet.send_django_mail(minion, to=RECIPIENTS, subject=subject, message_id=message_id, env_file=ENV_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"sent": 1, "email_host": "localhost", "email_port": 25, "use_tls": False, "use_ssl": False}
    msg = fleet.wait_for_message(message_id)
    assert msg, f"{message_id} never reached the provider"
    assert msg["mail_from"] == "noreply@example.com"
    assert sorted(msg["rcpt_tos"]) == sorted(RECIPIENTS)
    assert msg["subject"] == subject
    assert msg["tls"] is True and msg["auth_user_sha256"] == sha256(fleet.spec.username)
    # Relayed by the minion's Postfix: its log names the delivery.
    log = fleet.minion(minion).exec("journalctl", "-u", "postfix*", "--no-pager").stdout
    assert "status=sent" in log and f"relay={fleet.spec.host}" in log


def test_django_direct_mode_from_the_same_pillar(fleet):
    """direct: the env file points Django at the provider, with one TLS flag derived from `tls`."""
    override = {"postfix_relay": {"django_env": {"path": ENV_FILE, "mode": "direct"}}}
    rc, data, out = fleet.salt("web1", "state.apply", "postfix_relay.django_env", f"pillar={json.dumps(override)}")
    states = _assert_applied(rc, data, out, "web1", fleet.spec.password)
    assert [v["changes"] for v in states.values() if v["changes"]] == [{"diff": "<show_changes=False>"}]
    web = fleet.minion("web1")
    text = web.exec("cat", ENV_FILE).stdout
    assert f'EMAIL_HOST="{fleet.spec.host}"' in text and 'EMAIL_USE_TLS="True"' in text
    assert 'EMAIL_USE_SSL="False"' in text
    queued_before = web.exec("journalctl", "-u", "postfix*", "--no-pager").stdout.count("status=sent")
    message_id = f"<{uuid.uuid4().hex}@web1.direct.fleet.test>"
    proc = fleet.send_django_mail(
        "web1", to=RECIPIENTS, subject="direct from web1", message_id=message_id, env_file=ENV_FILE
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["email_host"] == fleet.spec.host and report["use_tls"] is True and report["use_ssl"] is False
    msg = fleet.wait_for_message(message_id, timeout=30)
    assert msg and msg["tls"] is True and msg["auth_user_sha256"] == sha256(fleet.spec.username)
    assert sorted(msg["rcpt_tos"]) == sorted(RECIPIENTS)
    # Django talked to the provider itself: the local Postfix delivered nothing new.
    assert web.exec("journalctl", "-u", "postfix*", "--no-pager").stdout.count("status=sent") == queued_before
    # Back to relay mode.
    rc, data, out = fleet.salt("web1", "state.apply", "postfix_relay.django_env")
    _assert_applied(rc, data, out, "web1", fleet.spec.password)
    assert 'EMAIL_HOST="localhost"' in web.exec("cat", ENV_FILE).stdout


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 25), timeout=5).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc)
"""


def test_not_an_open_relay_from_the_network(fleet):
    """From another host on the same network, SMTP to a minion's address is refused (loopback only)."""
    web_ip = fleet.address("web1")
    probe = fleet.minion("worker1").exec("python3", "-c", PROBE, web_ip, check=False)
    assert probe.stdout.strip() == "refused", probe.stdout + probe.stderr
    # Not even the minion itself reaches its SMTP server on a non-loopback address.
    own = fleet.minion("web1").exec("python3", "-c", PROBE, web_ip, check=False)
    assert own.stdout.strip() == "refused", own.stdout + own.stderr


def test_send_test_and_status_from_the_master(fleet):
    rc, data, out = fleet.salt("-G", "roles:web", "postfix_relay.send_test", "to=ops@example.org", "timeout=60")
    assert rc == 0, out
    result = data["web1"]
    assert result["status"] == "sent" and result["queue_id"], result
    assert result["relay"].startswith(f"{fleet.spec.host}[")
    assert fleet.wait_for_message(result["message_id"], timeout=10)
    rc, data, out = fleet.salt("-C", "G@roles:web or G@roles:worker", "postfix_relay.status")
    assert rc == 0, out
    for minion, status in data.items():
        assert status["relayhost"] == f"[{fleet.spec.host}]:{fleet.spec.port}", minion
        assert status["last_delivery"]["status"] == "sent", (minion, status)
        assert status["queue"]["deferred"] == 0 and status["deferral_reasons"] == []
    print("\nsend_test:", json.dumps(result), "\nstatus:", json.dumps(data["web1"]))


def test_send_test_and_status_with_the_provider_down(fleet):
    provider.stop(fleet.provider)
    try:
        rc, data, out = fleet.salt("web1", "postfix_relay.send_test", "to=ops@example.org", "timeout=30")
        assert rc == 0, out
        result = data["web1"]
        assert result["status"] == "deferred", result
        assert "Connection refused" in result["reason"]
        rc, data, out = fleet.salt("web1", "postfix_relay.status")
        assert rc == 0, out
        status = data["web1"]
        assert status["queue"]["deferred"] >= 1
        assert "Connection refused" in status["deferral_reasons"][0]["reason"]
        print("\nsend_test (down):", json.dumps(result), "\nstatus (down):", json.dumps(status))
    finally:
        provider.deploy(fleet.provider, fleet.ca, fleet.spec, listen="0.0.0.0")
    fleet.salt("web1", "cmd.run", "postqueue -f")
    assert fleet.wait_for_message(result["message_id"], timeout=60), "the deferred test message never left"


# --------------------------------------------------------------------------
# The master side of the secret: job cache, log, event bus, function answers
# --------------------------------------------------------------------------
# Given on the command line by the positive control only: a password that must show up.
CONTROL_SECRET = "SG.cmdline-Kx5v.positive-control-3b8e"
RET_WEB1 = r"salt/job/\d+/ret/web1\b"
# Salt's minion data cache (minion_data_cache: True, the default): the master keeps each
# minion's compiled pillar here, by design, as it keeps the pillar source (README).
PILLAR_BANK = f"{MASTER_CACHE}/pillar/"


def _outside_pillar_bank(locations: list[str]) -> list[str]:
    return [path for path in locations if not path.startswith(PILLAR_BANK)]


def test_master_keeps_no_password_after_an_apply(fleet):
    """After state.apply from the master, the password is in its job cache, log and event bus nowhere.

    The whole cache directory is searched: the password is only in the minion
    data cache's pillar bank (Salt's default, see README).  Positive control in
    the same run, with another distinctive password: the same apply with the
    password given as ``pillar=`` on the command line puts it into the job
    cache, the log and the event bus, which proves the searches find what is
    there (README: never pass secrets that way).
    """
    secret = fleet.spec.password
    log_start = len(fleet.master.exec("cat", MASTER_LOG).stdout)
    with fleet.master_events() as events:
        rets = len(re.findall(RET_WEB1, events.text()))
        rc, data, out = fleet.salt("web1", "state.apply", "postfix_relay")
        _assert_applied(rc, data, out, "web1", secret)
        events.wait_for(RET_WEB1, rets + 1)
        # Searched now: the control's apply below replaces web1's entry in the pillar bank.
        found = fleet.master_secret_locations(secret)
        log = fleet.master.exec("cat", MASTER_LOG).stdout[log_start:]
        # test=True: the job is published, cached and returned all the same; the minion keeps its password.
        control = {"postfix_relay": {"password": CONTROL_SECRET}}
        rc, data, out = fleet.salt("web1", "state.apply", "postfix_relay", f"pillar={json.dumps(control)}", "test=True")
        assert rc == 0 and isinstance(data["web1"], dict), out
        would_change = [v["__id__"] for v in data["web1"].values() if v["result"] is None]
        assert any("sasl_passwd" in state for state in would_change), would_change  # the override was rendered
        bus = events.wait_for(RET_WEB1, rets + 2)
    # The master logs to its file, at debug: the publication with its arguments.
    assert log.count("Published command state.apply with jid") == 1, log[-3000:]
    assert "Published command details" in log
    leaks = {"job cache, other cache or log": _outside_pillar_bank(found), "event bus": secret in bus}
    assert not any(leaks.values()), f"the password is on the master: {leaks}"
    assert f"{PILLAR_BANK}web1.p" in found, found  # Salt's minion data cache, as README says
    # The control: the same searches find a password given on the command line.
    found = fleet.master_secret_locations(CONTROL_SECRET)
    seen = {
        "job cache": any(path.startswith(f"{MASTER_CACHE}/jobs/") for path in found),
        "log": MASTER_LOG in found,
        "event bus": CONTROL_SECRET in bus,
    }
    assert all(seen.values()), f"the searches missed the control password: {seen} {found}"


# Arguments for the functions that need some; every other function is called without any.
FUNCTION_ARGS = {
    "postfix_relay.send_test": ["to=someone@example.com", "timeout=5"],
    "postfix_relay.map_is_current": ["/etc/postfix/sasl_passwd"],
}


def test_no_execution_function_returns_the_password(fleet):
    """What a master ACL that allows postfix_relay.* allows: list the functions, call each one.

    No answer (value or error) holds the password, and the master's job cache
    and log do not hold it afterwards.
    """
    secret = fleet.spec.password
    rc, data, out = fleet.salt("web1", "sys.list_functions", "postfix_relay")
    assert rc == 0, out
    functions = [f for f in data["web1"] if f.startswith("postfix_relay.")]
    assert {"postfix_relay.settings", "postfix_relay.status"} <= set(functions), functions
    args: list[str] = []
    for n, function in enumerate(functions):
        args += ([","] if n else []) + FUNCTION_ARGS.get(function, [])
    # One compound job: every function with its arguments, each answering on its own.
    _rc, data, out = fleet.salt("web1", ",".join(functions), *args)
    answers = data["web1"]
    assert sorted(answers) == sorted(functions), out
    assert answers["postfix_relay.settings"]["provider"] == "sendgrid", answers  # really called, really answered
    assert answers["postfix_relay.status"]["relayhost"] == f"[{fleet.spec.host}]:{fleet.spec.port}", answers
    leaked = sorted(f for f, answer in answers.items() if secret in json.dumps(answer))
    assert leaked == [], f"the password is in the answer of {leaked}"
    assert secret not in out
    found = fleet.master_secret_locations(secret)
    assert _outside_pillar_bank(found) == [], f"the password is in the master's job cache or log: {found}"
