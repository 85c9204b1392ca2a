"""Run the container suites side by side: their waits (retry schedules, restarts, Django) overlap.

Each suite is its own ``make`` target with its own containers (names carry a
run id), so they do not see each other.  Output goes to one log per suite
under ``.test-logs/``; a progress line every 30 s says what runs and what each
suite printed last; the end prints every suite's time and the log tail of each
one that failed.

    python -m harness.parallel integration faults environments fleet operations [--jobs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.formula import REPO

LOGS = REPO / ".test-logs"
PROGRESS_EVERY = 30.0


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = [ln for ln in handle.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:100] if lines else ""


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def run(targets: list[str], jobs: int) -> int:
    LOGS.mkdir(exist_ok=True)
    pending = list(targets)
    running: dict[str, tuple[subprocess.Popen, float, Path]] = {}
    results: dict[str, tuple[int, float]] = {}
    start = time.monotonic()
    last_report = start
    print(f"==> container suites, {jobs} at a time: {', '.join(targets)} (logs: {LOGS.relative_to(REPO)}/)", flush=True)
    while pending or running:
        while pending and len(running) < jobs:
            target = pending.pop(0)
            log = LOGS / f"{target}.log"
            handle = log.open("w")
            proc = subprocess.Popen(
                ["make", "--no-print-directory", target],
                cwd=REPO,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            handle.close()
            running[target] = (proc, time.monotonic(), log)
            print(f"[{_clock(time.monotonic() - start)}] {target}: started", flush=True)
        for target, (proc, began, log) in list(running.items()):
            if proc.poll() is not None:
                del running[target]
                results[target] = (proc.returncode, time.monotonic() - began)
                verdict = "passed" if proc.returncode == 0 else f"FAILED (rc {proc.returncode})"
                print(
                    f"[{_clock(time.monotonic() - start)}] {target}: {verdict} in {_clock(results[target][1])}"
                    f" -- {_last_line(log)}",
                    flush=True,
                )
        now = time.monotonic()
        if running and now - last_report >= PROGRESS_EVERY:
            last_report = now
            for target, (_proc, began, log) in running.items():
                print(f"[{_clock(now - start)}]   {target} ({_clock(now - began)}): {_last_line(log)}", flush=True)
        time.sleep(0.5)
    print(f"==> container suites done in {_clock(time.monotonic() - start)}:", flush=True)
    for target in targets:
        rc, took = results[target]
        print(f"    {target:<14} {'ok    ' if rc == 0 else 'FAILED'} {_clock(took)}", flush=True)
    failed = [t for t in targets if results[t][0] != 0]
    for target in failed:
        lines = (LOGS / f"{target}.log").read_text(errors="replace").splitlines()
        print(f"\n==> {target} FAILED; last 150 lines of {LOGS.name}/{target}.log:", flush=True)
        print("\n".join(lines[-150:]), flush=True)
    if failed:
        print(f"\n==> next step: rerun one suite alone, e.g. `make {failed[0]}`, and read its log", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("PFR_SUITE_JOBS", "3")))
    args = parser.parse_args(argv)
    return run(args.targets, max(1, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
