"""Review of issue 16: with the beacon configured, a converged minion must report nothing under test=True.

Salt's ``saltutil.sync_*`` states return result None ("would have been run") under
test=True whatever is synced (salt/states/saltutil.py ``_sync_single``), so an
unconditional ``saltutil.sync_beacons`` makes every dry run of a converged minion
report one change.  It needs a guard evaluated before the function (onlyif/unless,
or onchanges on a test-accurate state such as a file.managed copy of the beacon).
FAILS on the merge under review.
"""

from __future__ import annotations

from harness.formula import DEBIAN12
from harness.saltlocal import LocalMinion


def test_sync_beacons_is_guarded_so_a_converged_dry_run_reports_nothing(tmp_path):
    pillar = {"provider": "sendgrid", "password": "Rvw-S3cret", "monitoring": {"beacon": True}}
    show = LocalMinion(tmp_path, DEBIAN12, pillar).show_sls()
    assert show.returncode == 0, show.stdout + show.stderr
    syncs = {sid: body for sid, body in show.data.items() if "sync_beacons" in body.get("saltutil", [])}
    assert syncs, "no saltutil.sync_beacons state: update this test"
    for sid, body in syncs.items():
        keys = {k for item in body["saltutil"] if isinstance(item, dict) for k in item}
        assert keys & {"onchanges", "onlyif", "unless", "prereq"}, (sid, body)
