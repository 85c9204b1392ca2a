"""Fail-closed promises as pure Python: no secret in any answer, the off switch and Django's env file."""

from __future__ import annotations

import ast
import subprocess
import sys

from harness.formula import DEBIAN12, MODULE_PATH, REPO, pfr

SECRET = "Fail-Closed-Secret-7f3a"
SENDGRID = {"provider": "sendgrid", "password": SECRET}
ENV = {"path": "/etc/app/email.env", "user": "www-data", "group": "www-data"}
OLD_ENV = {"path": "/etc/old/email.env", "user": "root", "group": "root"}


def test_only_the_listed_functions_are_execution_functions():
    """Salt exposes a module's public functions unless __load__ names them: it must, and none returns a secret."""
    tree = ast.parse(MODULE_PATH.read_text())
    public = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert set(pfr.__load__) == {"settings", "status", "send_test", "map_is_current", "self_sync"}
    assert set(pfr.__load__) <= public
    assert not {"sasl_passwd", "django_env", "resolve"} & set(pfr.__load__)


def test_settings_of_every_mode_hold_no_secret():
    routes = [{"senders": ["@news.example.com"], "provider": "postmark", "password": "Route-Secret-19"}]
    for pillar in (
        {**SENDGRID, "routes": routes, "django_env": {**ENV, "mode": "direct"}},
        {"provider": "postmark", "password": SECRET, "django_env": {**ENV, "mode": "direct"}},
        {**SENDGRID, "enabled": False, "django_env": {**ENV, "mode": "direct"}},
    ):
        text = repr(pfr.resolve(pillar, DEBIAN12, recorded_env=OLD_ENV))
        assert SECRET not in text and "Route-Secret-19" not in text
    assert SECRET not in repr(pfr.resolve_clean(SENDGRID, DEBIAN12, recorded_env=OLD_ENV))


def test_disabled_writes_djangos_env_in_relay_mode():
    s = pfr.resolve({**SENDGRID, "enabled": False, "django_env": {**ENV, "mode": "direct"}}, DEBIAN12)
    env = s["django_env"]
    assert env["mode"] == "relay" and env["path"] == ENV["path"] and env["user"] == "www-data"
    assert {v["name"]: v["value"] for v in env["variables"]} == pfr.RELAY_ENV
    # The pillar no longer names it, but the formula wrote it before: still rewritten, no password left.
    s = pfr.resolve({"enabled": False}, DEBIAN12, recorded_env=OLD_ENV)
    assert s["django_env"]["path"] == OLD_ENV["path"] and s["django_env"]["mode"] == "relay"
    assert s["django_env_absent"] == []


def test_an_env_file_the_pillar_no_longer_names_is_removed():
    moved = pfr.resolve({**SENDGRID, "django_env": ENV}, DEBIAN12, recorded_env=OLD_ENV)
    assert moved["django_env_absent"] == [OLD_ENV["path"]]
    dropped = pfr.resolve(SENDGRID, DEBIAN12, recorded_env=OLD_ENV)
    assert dropped["django_env"] is None and dropped["django_env_absent"] == [OLD_ENV["path"]]
    same = pfr.resolve({**SENDGRID, "django_env": {**ENV, "path": OLD_ENV["path"]}}, DEBIAN12, recorded_env=OLD_ENV)
    assert same["django_env_absent"] == []


def test_clean_removes_djangos_env_file_from_pillar_and_record():
    s = pfr.resolve_clean({**SENDGRID, "django_env": ENV}, DEBIAN12, recorded_env=OLD_ENV)
    assert s["django_env_absent"] == sorted([ENV["path"], OLD_ENV["path"]])
    absent = {f["path"] for f in s["files"] if not f["present"]}
    assert {ENV["path"], OLD_ENV["path"], "/etc/postfix/postfix_relay.django_env"} <= absent
    assert pfr.resolve_clean({"django_env": "nonsense"}, DEBIAN12)["django_env_absent"] == []


def test_a_mangled_record_is_ignored():
    for raw in (None, "x", {"path": "relative"}, {"path": "/a/b", "user": "ro ot"}, {**ENV, "mode": "direct"}):
        assert pfr._valid_env_record(raw) is None
    assert pfr._valid_env_record(ENV) == ENV


def test_direct_mode_with_a_redirect_is_refused():
    pillar = {**SENDGRID, "redirect_all_to": "qa@example.com", "django_env": {**ENV, "mode": "direct"}}
    try:
        pfr.resolve(pillar, DEBIAN12)
    except pfr.PillarError as exc:
        assert "postfix_relay:django_env:mode direct" in str(exc) and "redirect_all_to" in str(exc)
    else:
        raise AssertionError("accepted")


def test_module_imports_and_resolves_without_salt(tmp_path):
    """The module's promise: pure Python, unit-testable where Salt is not installed (-I -S: no site-packages, no PYTHONPATH)."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import postfix_relay as m\n"
        "assert 'salt' not in sys.modules\n"
        "s = m.resolve({'provider': 'sendgrid', 'password': 'x'}, {'os_family': 'Debian', 'os': 'Debian',"
        " 'osmajorrelease': 12, 'fqdn': 'a.example.com'})\n"
        "assert s['main_cf']['relayhost'] == '[smtp.sendgrid.net]:587'\n"
        "try:\n    m.resolve({}, {'os_family': 'Debian'})\nexcept m.PillarError as e:\n    print('refused:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(REPO / "_modules")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "postfix_relay:provider is required" in out.stdout


def test_disabled_keeps_the_staging_redirect_and_never_expires_mail():
    """Mail queued while off is redirected at submission, and is not returned after 5 days."""
    s = pfr.resolve({"enabled": False, "redirect_all_to": "qa@example.com"}, DEBIAN12)
    cf = s["main_cf"]
    assert cf["virtual_alias_maps"] == "regexp:/etc/postfix/redirect_recipients"
    assert cf["default_transport"].startswith("retry:")
    assert cf["maximal_queue_lifetime"] == cf["bounce_queue_lifetime"] == "100d"  # Postfix's maximum
    present = {f["id"] for f in s["files"] if f["present"]}
    assert {"redirect_recipients", "redirect_headers"} <= present


def test_queue_actions_hold_before_a_redirect_and_release_through_cleanup():
    staging = {**SENDGRID, "redirect_all_to": "qa@example.com"}
    actions = pfr.resolve(staging, DEBIAN12)["queue_actions"]
    assert [(a["id"], a["prereq"], a["onchanges"], a["after"]) for a in actions] == [
        ("hold-before-redirect", "redirect_recipients", None, None),
        ("owe-requeue", "mode", None, None),
        ("requeue", None, None, None),
    ]
    marker = "/etc/postfix/postfix_relay.requeue"
    # The hold owes a requeue first (a marker), and only a successful requeue pays it: a run that
    # fails between the two is finished by the next one.  Also a stopped Postfix's queue is held.
    assert actions[0]["command"] == f"touch {marker} && postsuper -h ALL"
    assert "postfix" not in actions[0]["onlyif"].split()[0]
    assert actions[-1]["onlyif"] == f"test -e {marker}"
    # Released mail goes through cleanup again (redirect, fresh arrival time), not just out of hold.
    assert actions[-1]["command"] == f"sleep 1 && postsuper -r ALL && rm -f {marker}"
    off = pfr.resolve({"enabled": False}, DEBIAN12)["queue_actions"]
    assert [(a["id"], a["command"]) for a in off] == [("hold", "postsuper -h ALL")]


def test_a_stale_env_file_stays_recorded_until_it_is_gone():
    s = pfr.resolve({**SENDGRID, "django_env": ENV}, DEBIAN12, recorded_env=OLD_ENV)
    record = next(f for f in s["files"] if f["id"] == "record")
    assert record["requires"] == [f"file-absent-{OLD_ENV['path']}", "file-managed-env"]
    clean = pfr.resolve_clean({}, DEBIAN12, recorded_env=OLD_ENV)
    record = next(f for f in clean["files"] if f["id"] == "django_env_record")
    assert record["requires"] == [f"file-absent-django_env-{OLD_ENV['path']}"]
