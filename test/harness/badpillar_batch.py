"""Apply the formula once per bad pillar, on a converged minion, from inside the instance.

Runs IN the instance (standard library only).  Each case is the real CLI run,
``salt-call --local state.apply postfix_relay`` (the same command line as every
harness step), one process per case as an operator's run is; what this saves is
the three ``docker exec`` round trips per case of driving it from the host.
After each case the minion's Postfix configuration (every file under
/etc/postfix, /etc/aliases*, modes, owners, mtimes, contents) and the master's
PID are compared with the state before the first case.

(Tried and rejected: one in-process ``salt.client.Caller`` for every case cut
the CPU per case from ~1.1 s to ~0.3 s, but the formula's module then saw a
stale pillar in some runs while templates saw the new one: not the path a real
run takes.)

    python3 badpillar_batch.py PILLAR_FILE SALT_CALL_ARGV_JSON < cases.json
    cases.json: [{"id": "...", "pillar": "<YAML text>"}, ...]
    stdout: one JSON line per case: {"id", "rc", "output", "changed": [paths]}
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

WATCHED_TREES = ("/etc/postfix",)
WATCHED_FILES = ("/etc/aliases", "/etc/aliases.db", "/var/spool/postfix/pid/master.pid")


def snapshot() -> dict[str, str]:
    """path -> mode, owner and content hash of everything a refused run must leave alone."""
    paths = list(WATCHED_FILES)
    for tree in WATCHED_TREES:
        for root, _dirs, files in os.walk(tree):
            paths += [os.path.join(root, name) for name in files]
    out = {}
    for path in sorted(paths):
        try:
            st = os.lstat(path)
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
        except OSError as exc:
            out[path] = f"absent ({exc.strerror})"
            continue
        out[path] = f"{st.st_mode:o} {st.st_uid}:{st.st_gid} {st.st_mtime_ns} {digest}"
    return out


def main() -> int:
    pillar_file, argv = sys.argv[1], json.loads(sys.argv[2])
    cases = json.load(sys.stdin)
    before = snapshot()
    for case in cases:
        fd = os.open(pillar_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(case["pillar"])
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
        now = snapshot()
        changed = sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
        row = {"id": case["id"], "rc": proc.returncode, "output": proc.stdout + proc.stderr, "changed": changed}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
