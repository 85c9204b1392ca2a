"""The module's self-sync: only its own file, once per run, and modules of other saltenvs survive.

Real Salt on this host (salt-call --local) with two saltenvs, ``base`` and
``staging``, each serving the formula and a custom module of its own.
"""

from __future__ import annotations

import re
import shutil

import yaml
from harness.formula import DEBIAN12, MODULE_PATH, REPO
from harness.saltlocal import LocalMinion

PILLAR = {"provider": "sendgrid", "password": "SG.saltenvs-test-key"}
STALE = "def settings(action='apply'):\n    raise RuntimeError('stale module still loaded')\n"
CHECKED = re.compile(
    r"postfix_relay\.self_sync: \S+ checked against salt://_modules/postfix_relay\.py \(saltenv (\w+)\)"
)


def _two_saltenvs(tmp_path) -> LocalMinion:
    minion = LocalMinion(tmp_path, DEBIAN12, PILLAR)
    roots = {"base": minion.file_root, "staging": tmp_path / "staging"}
    for env, root in roots.items():
        root.mkdir(exist_ok=True)
        if not (root / "postfix_relay").exists():
            (root / "postfix_relay").symlink_to(REPO / "postfix_relay")
        modules = root / "_modules"
        if modules.is_symlink():
            modules.unlink()
        modules.mkdir()
        shutil.copy(MODULE_PATH, modules / "postfix_relay.py")
        (modules / f"{env}mod.py").write_text(f"def hello():\n    return '{env}'\n")
    conf = minion.conf / "minion"
    config = yaml.safe_load(conf.read_text())
    config["file_roots"] = {env: [str(root)] for env, root in roots.items()}
    config["pillar_roots"] = {env: [str(minion.pillar_dir)] for env in roots}
    config["log_level_logfile"] = "debug"
    conf.write_text(yaml.safe_dump(config))
    return minion


def test_apply_in_staging_keeps_the_modules_synced_from_base(tmp_path):
    minion = _two_saltenvs(tmp_path)
    res = minion.call("saltutil.sync_modules", "saltenv=base,staging")
    assert res.returncode == 0, res.stdout + res.stderr
    synced = minion.extmods / "modules"
    assert {p.name for p in synced.iterdir()} == {"basemod.py", "stagingmod.py", "postfix_relay.py"}
    # An older formula's module: the self-sync must replace it, and only it.
    (synced / "postfix_relay.py").write_text(STALE)
    log_start = len(minion.log_text())
    res = minion.call("state.show_sls", "postfix_relay", "saltenv=staging")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert isinstance(res.data, dict) and res.data, res.stdout[-2000:]
    assert {p.name for p in synced.iterdir()} == {"basemod.py", "stagingmod.py", "postfix_relay.py"}
    assert (synced / "postfix_relay.py").read_bytes() == MODULE_PATH.read_bytes()
    # Once per run: four SLS import map.jinja, one fileserver check (in the saltenv applied).
    log = minion.log_text()[log_start:]
    assert CHECKED.findall(log) == ["staging"], log[-3000:]
    assert "stale module still loaded" not in res.stdout + res.stderr
    # Both saltenvs' modules still load; a current module is checked once more (next run) and not rewritten.
    before = (synced / "postfix_relay.py").stat().st_mtime_ns
    log_start = len(minion.log_text())
    res = minion.call("state.show_sls", "postfix_relay,postfix_relay.clean", "saltenv=staging")
    assert res.returncode == 0, res.stdout[-2000:]
    assert (synced / "postfix_relay.py").stat().st_mtime_ns == before
    assert CHECKED.findall(minion.log_text()[log_start:]) == ["staging"]
    loaded = minion.call("sys.list_modules").data
    assert {"basemod", "stagingmod", "postfix_relay"} <= set(loaded), loaded
    # The control: what the formula must not do (clean_dynamic_modules) removes base's module here.
    assert minion.call("saltutil.sync_modules", "saltenv=staging").returncode == 0
    assert not (synced / "basemod.py").exists() and (synced / "stagingmod.py").exists()


def test_stale_copy_that_has_self_sync_is_replaced_and_reloaded_in_the_same_run(tmp_path):
    """A later upgrade: the minion's copy has self_sync but an older settings(); this run uses the new one."""
    minion = LocalMinion(tmp_path, DEBIAN12, PILLAR)
    synced = minion.extmods / "modules" / "postfix_relay.py"
    synced.parent.mkdir(parents=True)
    text = MODULE_PATH.read_text()
    stale = text.replace(
        '    """\n    return resolve(_pillar()',
        '    """\n    raise RuntimeError("stale settings")\n    return resolve(_pillar()',
        1,
    )
    assert stale != text
    synced.write_text(stale)
    res = minion.show_sls()
    assert res.returncode == 0, res.stdout[-3000:]
    assert "stale settings" not in res.stdout + res.stderr
    assert synced.read_bytes() == MODULE_PATH.read_bytes()
