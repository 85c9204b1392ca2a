"""postfix_relay.self_sync is an exposed execution function (review 14): what an operator with only
``postfix_relay.*`` rights can make a minion run.

The module promises that a master ACL allowing postfix_relay.* must not let
operators collect the fleet's API keys.  ``self_sync`` takes the saltenv from
its caller: called by hand with another saltenv (any gitfs branch is one), it
installs that saltenv's copy of the module into the minion's extension-module
cache, and the next ``postfix_relay.*`` call runs that code as root.  Called
outside a state run, it must not install a module from a saltenv the caller
picks.
"""

from __future__ import annotations

import yaml
from harness.formula import DEBIAN12, MODULE_PATH, REPO
from harness.saltlocal import LocalMinion

PILLAR = {"provider": "sendgrid", "password": "SG.self-sync-acl-key"}


def test_self_sync_by_hand_does_not_install_another_saltenvs_module(tmp_path):
    minion = LocalMinion(tmp_path, DEBIAN12, PILLAR)
    dev = tmp_path / "dev"
    (dev / "_modules").mkdir(parents=True)
    (dev / "postfix_relay").symlink_to(REPO / "postfix_relay")
    marker = tmp_path / "dev-code-ran"
    other = MODULE_PATH.read_text().replace(
        "def status():\n", f"def status():\n    open({str(marker)!r}, 'w').write('ran')\n", 1
    )
    assert other != MODULE_PATH.read_text()
    (dev / "_modules" / "postfix_relay.py").write_text(other)
    conf = minion.conf / "minion"
    config = yaml.safe_load(conf.read_text())
    config["file_roots"] = {"base": [str(minion.file_root)], "dev": [str(dev)]}
    config["pillar_roots"] = {"base": [str(minion.pillar_dir)], "dev": [str(minion.pillar_dir)]}
    conf.write_text(yaml.safe_dump(config))

    res = minion.show_sls()  # the formula installs base's module
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    synced = minion.extmods / "modules" / "postfix_relay.py"
    assert synced.read_bytes() == MODULE_PATH.read_bytes()

    minion.call("postfix_relay.self_sync", "saltenv=dev")  # an operator with postfix_relay.* rights
    minion.call("postfix_relay.status")
    assert synced.read_bytes() == MODULE_PATH.read_bytes(), "self_sync installed the dev saltenv's module"
    assert not marker.exists(), "the next postfix_relay.* call ran the dev saltenv's code"
