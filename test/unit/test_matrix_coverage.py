"""The Salt version axis cannot shrink silently (review 14): `make integration` (what `make test` runs)
must select at least one kitchen instance per version in images.SALT_VERSIONS, and the fleet must run
on every version.  Dropping a kitchen.yml platform would otherwise leave a version untested while the
matrix still reports everything passed."""

from __future__ import annotations

import importlib.util

from harness import images, kitchen
from harness.formula import REPO


def test_make_integration_runs_every_salt_version():
    selected = kitchen._select(kitchen.load(), [], full=False)
    covered = {i.salt_version for i in selected}
    assert covered == set(images.SALT_VERSIONS), (
        f"versions with no instance in make integration: {set(images.SALT_VERSIONS) - covered}"
    )


def test_fleet_runs_every_other_salt_version():
    path = REPO / "test" / "fleet" / "test_fleet_versions.py"
    spec = importlib.util.spec_from_file_location("fleet_versions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.OTHER_VERSIONS) | {images.SALT_VERSION} == set(images.SALT_VERSIONS)
