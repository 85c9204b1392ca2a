"""The fleet on every other Salt version: a master of that version applies to fresh minions of it.

A part of test_fleet.py, per version in images.SALT_VERSIONS other than the
default (PFR_SALT_VERSION=<v> runs all of test_fleet.py on one of them): the
module reaches brand-new minions from a real master, the second apply changes
nothing, Django mail from the web minion reaches the provider once cut off, and
the master keeps the password only in its minion data cache.
"""

from __future__ import annotations

import json
import uuid

import pytest
from harness.fakeprovider import sha256
from harness.fleet import Fleet
from harness.images import SALT_VERSION, SALT_VERSIONS

ENV_FILE = "/etc/relayapp/email.env"
OTHER_VERSIONS = [v for v in SALT_VERSIONS if v != SALT_VERSION]


@pytest.fixture(scope="module", params=OTHER_VERSIONS, ids=[f"salt{v}" for v in OTHER_VERSIONS])
def fleet(request):
    f = Fleet(name=f"fleet{request.param.replace('.', '')}", salt_version=request.param).up()
    yield f
    f.down()


def _states(rc, data, out, fleet, minions):
    assert rc == 0, out[-4000:]
    assert fleet.spec.password not in out, "the password reached the master's output"
    assert set(data) == set(minions), out[-4000:]
    for minion in minions:
        assert isinstance(data[minion], dict), data[minion]  # a list would be render errors
        failed = {k: v["comment"] for k, v in data[minion].items() if v["result"] is not True}
        assert not failed, f"{minion}: {failed}"
    return data


def test_minions_run_the_version(fleet):
    rc, data, out = fleet.salt("*", "test.version")
    assert rc == 0 and data == {m: fleet.salt_version for m in fleet.minions}, out
    assert fleet.master.exec("salt-master", "--version").stdout.split()[1] == fleet.salt_version


def test_apply_converges_then_changes_nothing(fleet):
    """Brand-new minions (nothing synced): one state.apply from the master, then a second one."""
    target = ["-C", "G@roles:web or G@roles:worker"]
    _states(*fleet.salt(*target, "state.apply", "postfix_relay"), fleet, fleet.minions)
    data = _states(*fleet.salt(*target, "state.apply", "postfix_relay"), fleet, fleet.minions)
    changed = {m: [v["__id__"] for v in states.values() if v["changes"]] for m, states in data.items()}
    assert changed == {m: [] for m in fleet.minions}


def test_django_mail_reaches_the_provider(fleet):
    fleet.cut_off()
    message_id = f"<{uuid.uuid4().hex}@web1.fleet.test>"
    proc = fleet.send_django_mail(
        "web1", to=["alice@example.org"], subject="salt version", message_id=message_id, env_file=ENV_FILE
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["sent"] == 1
    msg = fleet.wait_for_message(message_id)
    assert msg, f"{message_id} never reached the provider"
    assert msg["tls"] is True and msg["auth_user_sha256"] == sha256(fleet.spec.username)


def test_master_keeps_the_password_only_in_its_minion_data_cache(fleet):
    """Job cache and log: nowhere.  Where the minion data cache keeps pillar differs by version (README)."""
    found = fleet.master_secret_locations(fleet.spec.password)
    outside = [
        p for p in found if not p.startswith(("/var/cache/salt/master/pillar/", "/var/cache/salt/master/minions/"))
    ]
    assert found, "the password is not even in the minion data cache: is the search looking in the right place?"
    assert outside == [], outside
