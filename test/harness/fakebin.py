"""Stand-in commands on PATH for unit tests of scripts that shell out (the metrics collector)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fake_collector_tools(tmp_path: Path, monkeypatch, journalctl: str, queue: dict) -> None:
    """``journalctl`` runs the given shell body; ``postqueue -j`` prints ``queue`` as its one entry."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text(f"#!/bin/sh\n{journalctl}")
    (bin_dir / "postqueue").write_text(f"#!/bin/sh\necho '{json.dumps(queue)}'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
