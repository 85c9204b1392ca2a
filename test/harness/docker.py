"""A thin, logged wrapper over the docker CLI (the same CLI testinfra's docker backend uses)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

from harness.hostsetup import LABEL

# Flags that boot systemd as PID 1 here (--privileged fails on this machine).
SYSTEMD_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
]


class DockerError(RuntimeError):
    pass


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name:
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def docker(
    *args: str, check: bool = True, timeout: float = 900, input: str | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, input=input)
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} … failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


class Container:
    """One systemd container, labelled so that leftovers can always be removed."""

    def __init__(self, name: str):
        self.name = name

    @classmethod
    def run_systemd(cls, name: str, image: str, *, hostname: str, run_id: str, extra: list[str] | None = None):
        docker("rm", "-f", name, check=False)
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            hostname,
            "--label",
            LABEL,
            "--label",
            f"{LABEL}.run={run_id}",
            *SYSTEMD_FLAGS,
            *(extra or []),
            image,
        )
        container = cls(name)
        container.wait_for_systemd()
        return container

    def exec(self, *cmd: str, check: bool = True, timeout: float = 900, input: str | None = None):
        args = ["exec", *(["-i"] if input is not None else []), self.name, *cmd]
        return docker(*args, check=check, timeout=timeout, input=input)

    def sh(self, script: str, check: bool = True, timeout: float = 900):
        return self.exec("sh", "-c", script, check=check, timeout=timeout)

    def put(self, src: Path, dest: str) -> None:
        """Copy a file or directory to ``dest`` inside the container's own mounts.

        Streams a tar through ``docker exec`` rather than ``docker cp``, which
        writes beneath mounts such as Debian 13's tmpfs /tmp.
        """
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(src, arcname=Path(dest).name, filter=_root_owned)
        parent = str(Path(dest).parent)
        proc = subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c", f'mkdir -p "{parent}" && tar -x -C "{parent}"'],
            input=buffer.getvalue(),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DockerError(f"copying {src} to {self.name}:{dest} failed: {proc.stderr.decode()[-500:]}")

    def write(self, path: str, content: str, mode: str = "0644") -> None:
        self.exec(
            "sh", "-c", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode} "$1"', "-", path, input=content
        )

    def wait_for_systemd(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.exec("systemctl", "is-system-running", check=False, timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(1)
        raise DockerError(f"{self.name}: systemd did not come up (state {state!r}); see `docker logs {self.name}`")

    def disconnect_all_networks(self) -> None:
        """Cut the container off: afterwards it has a loopback interface only."""
        info = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", self.name)
        for network in info.stdout.split():
            docker("network", "disconnect", "-f", network, self.name)

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)
