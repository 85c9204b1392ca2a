"""Real Salt on this host, masterless, in a throw-away config dir.

Renders the formula the way a minion would (``salt-call --local``) with a
chosen pillar and chosen grains, without touching the host's /etc or /var.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.formula import REPO

SALT_CALL = Path(sys.executable).with_name("salt-call")


@dataclass
class Result:
    returncode: int
    data: object
    stdout: str
    stderr: str


class LocalMinion:
    """A masterless minion whose file_roots is this repository."""

    def __init__(self, root: Path, grains: dict, pillar: dict | None, minion_id: str = "web1.example.com"):
        self.root = root
        self.conf = root / "conf"
        self.pillar_dir = root / "pillar"
        self.extmods = root / "extmods"
        for d in (self.conf, self.pillar_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Serve what a master serves (the formula and _modules/), not the whole checkout:
        # Salt's fileserver would walk .venv/ and .cache/ on every call (~0.3 s each).
        self.file_root = root / "roots"
        self.file_root.mkdir(exist_ok=True)
        for name in ("postfix_relay", "_modules"):
            (self.file_root / name).symlink_to(REPO / name)
        config = {
            "id": minion_id,
            "file_client": "local",
            "file_roots": {"base": [str(self.file_root)]},
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            "cachedir": str(root / "cache"),
            "extension_modules": str(self.extmods),
            "pki_dir": str(root / "pki"),
            "sock_dir": str(root / "sock"),
            "log_file": str(root / "minion.log"),
            "log_level_logfile": "info",
            "grains": grains,
        }
        (self.conf / "minion").write_text(yaml.safe_dump(config))
        self.set_pillar(pillar)

    def set_pillar(self, pillar: dict | None) -> None:
        (self.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - relay\n")
        body = {} if pillar is None else {"postfix_relay": pillar}
        (self.pillar_dir / "relay.sls").write_text(yaml.safe_dump(body))

    def call(self, *args: str, out: str = "json") -> Result:
        cmd = [str(SALT_CALL), "--local", f"--config-dir={self.conf}", f"--out={out}", "--log-level=warning", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        try:
            data = json.loads(proc.stdout)["local"] if out == "json" else proc.stdout
        except (ValueError, KeyError):
            data = None
        return Result(proc.returncode, data, proc.stdout, proc.stderr)

    def show_sls(self, sls: str = "postfix_relay") -> Result:
        return self.call("state.show_sls", sls)

    def render(self, template: str, **context: str) -> str:
        """Render one of the formula's file templates as file.managed would."""
        dest = self.root / "rendered" / template
        dest.parent.mkdir(parents=True, exist_ok=True)
        args = [f"{k}={v}" for k, v in {"tplroot": "postfix_relay", **context}.items()]
        res = self.call("cp.get_template", f"salt://postfix_relay/files/default/{template}", str(dest), *args)
        if res.returncode != 0 or not dest.exists():
            raise AssertionError(f"rendering {template} failed:\n{res.stdout}\n{res.stderr}")
        return dest.read_text()

    def render_state(self, show: Result, state_id: str) -> str:
        """Render the template of a file.managed state with exactly the context the SLS gives it."""
        args = state_args(show.data, state_id)
        template = args["source"].rsplit("/", 1)[1]
        context = {k: json.dumps(v) for k, v in (args.get("context") or {}).items()}
        return self.render(template, **context)

    def log_text(self) -> str:
        log = self.root / "minion.log"
        return log.read_text() if log.exists() else ""

    def files_containing(self, needle: str) -> list[Path]:
        """Every file under this minion's root (cache, logs, rendered) that holds ``needle``."""
        hits = []
        for path in self.root.rglob("*"):
            if path.is_file() and needle.encode() in path.read_bytes():
                hits.append(path)
        return hits


def state_args(states: dict, state_id: str) -> dict:
    """One state's arguments in ``state.show_sls`` data, merged into one mapping."""
    body = states[state_id]
    (function,) = (k for k in body if not k.startswith("__"))
    args: dict = {}
    for item in body[function]:
        if isinstance(item, dict):
            args.update(item)
    return args


def main_cf_param(text: str, name: str) -> str | None:
    """The value of ``name = value`` in a rendered main.cf, or None."""
    for line in text.splitlines():
        if line.startswith(f"{name} = "):
            return line.split(" = ", 1)[1]
    return None
