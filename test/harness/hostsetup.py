"""Make this host able to run the container tests: Docker engine and debootstrap.

Runs with the system Python (standard library only), before the venv exists.
On CI there is no systemd: when no engine answers, start ``dockerd`` ourselves.

    python3 -m harness.hostsetup                      # install + start what is missing
    python3 -m harness.hostsetup --remove-containers  # remove every container we labelled
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

LABEL = "io.postfix_relay.test"
DOCKERD_LOG = "/var/log/postfix_relay-dockerd.log"
APT_PACKAGES = ("docker.io", "debootstrap", "iptables")


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def install_packages() -> None:
    missing = [p for p in ("dockerd", "debootstrap") if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        fail(f"{', '.join(missing)} missing; run as root or: apt-get install {' '.join(APT_PACKAGES)}")
    say(f"installing {' '.join(APT_PACKAGES)} from Debian (missing: {', '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *APT_PACKAGES], check=True, env=env)


def start_dockerd() -> None:
    if docker_answers():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        fail("dockerd not found after installing docker.io")
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen([dockerd], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if docker_answers():
            say("Docker engine is up")
            return
        time.sleep(1)
    fail(f"dockerd did not answer within 90 s; read {DOCKERD_LOG}, fix, then run `make test` again")


def remove_containers() -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True, check=False
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"label={LABEL}"], capture_output=True, text=True, check=False
    ).stdout.split()
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], capture_output=True, check=False)
    say(f"removed {len(ids)} test container(s) and {len(nets)} network(s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remove-containers", action="store_true", help="remove containers labelled " + LABEL)
    args = parser.parse_args(argv)
    install_packages()
    start_dockerd()
    if args.remove_containers:
        remove_containers()


if __name__ == "__main__":
    main()
