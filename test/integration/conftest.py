"""Fixtures for the testinfra suites.

Backend-agnostic: tests use the ``host`` fixture only (``--hosts=docker://ID``
from Kitchen's shell verifier or from our harness).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from suites import Suite, load_suite


@pytest.fixture(scope="module")
def suite(request) -> Suite:
    """The suite is the name of the directory the test module lives in."""
    return load_suite(Path(request.module.__file__).parent.name)
