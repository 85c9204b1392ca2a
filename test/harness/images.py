"""Test minion images built without a registry: debootstrap -> docker import -> Salt installed.

Each image is tagged with a hash of its recipe and reused until the recipe
changes.  Postfix is NOT in the image: installing it is the formula's job.

    python -m harness.images debian-12 debian-13      # build (or reuse) and print the tags
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.docker import docker, image_exists
from harness.hostsetup import LABEL

SALT_VERSION = "3008.4"
AIOSMTPD_VERSION = "1.4.6"
DJANGO_VERSION = "5.2.19"
CACHE = Path(os.environ.get("PFR_CACHE", "/var/cache/postfix_relay-test"))
MIRROR = os.environ.get("PFR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"

# platform name (as in kitchen.yml) -> Debian suite
PLATFORMS = {"debian-12": "bookworm", "debian-13": "trixie"}

# Packages the minion needs before Salt can run: systemd as PID 1, Python for Salt,
# and the tools the tests read state with (ss, ps).
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2", "procps"]

# Runs inside the imported rootfs, with network, to add Salt and the fake
# provider's Python dependencies.  Wheels are built once per platform into a
# host cache (salt compiles timelib), then installed offline.
BUILD_SCRIPT = f"""
set -eu
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
apt-get update -q
apt-get install -y -q --no-install-recommends gcc python3-dev
python3 -m venv /opt/salt
/opt/salt/bin/pip wheel -q --find-links /wheels -w /wheels salt=={SALT_VERSION}
/opt/salt/bin/pip install -q --no-index --find-links /wheels salt=={SALT_VERSION}
for tool in salt-call salt-minion salt-master salt-key salt; do ln -sf /opt/salt/bin/$tool /usr/local/bin/$tool; done
python3 -m venv /opt/fakeprovider
/opt/fakeprovider/bin/pip wheel -q --find-links /wheels -w /wheels aiosmtpd=={AIOSMTPD_VERSION}
/opt/fakeprovider/bin/pip install -q --no-index --find-links /wheels aiosmtpd=={AIOSMTPD_VERSION}
# The fleet tests' Django app (real Django from PyPI) runs from /opt/django.
python3 -m venv /opt/django
/opt/django/bin/pip wheel -q --find-links /wheels -w /wheels Django=={DJANGO_VERSION}
/opt/django/bin/pip install -q --no-index --find-links /wheels Django=={DJANGO_VERSION}
apt-get purge -y -q gcc python3-dev >/dev/null
apt-get autoremove -y -q --purge >/dev/null
apt-get clean
rm -rf /root/.cache
# Nothing in the image may send mail or listen before the formula runs.
systemctl mask getty@.service console-getty.service >/dev/null 2>&1 || true
/opt/salt/bin/salt-call --version
"""


def rootfs_hash(platform: str) -> str:
    """The debootstrap part of the recipe: rebuilt only when the suite or base packages change."""
    recipe = {"suite": PLATFORMS[platform], "packages": BASE_PACKAGES, "mirror": MIRROR}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def recipe_hash(platform: str) -> str:
    recipe = {"rootfs": rootfs_hash(platform), "script": BUILD_SCRIPT}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def image_ref(platform: str) -> str:
    return f"postfix_relay-test/{platform}:{recipe_hash(platform)}"


def _say(platform: str, msg: str) -> None:
    print(f"[image {platform}] {msg}", flush=True)


def build(platform: str) -> str:
    """Build the image for ``platform`` unless one with the same recipe exists; return its tag."""
    if platform not in PLATFORMS:
        raise SystemExit(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    ref = image_ref(platform)
    if image_exists(ref):
        _say(platform, f"reusing {ref}")
        return ref
    started = time.monotonic()
    suite = PLATFORMS[platform]
    rootfs_ref = f"postfix_relay-test/{platform}-rootfs:{rootfs_hash(platform)}"
    if not image_exists(rootfs_ref):
        with tempfile.TemporaryDirectory(prefix=f"pfr-{platform}-", dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _say(platform, f"debootstrap --variant=minbase {suite} (about a minute) …")
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    suite,
                    str(rootfs),
                    MIRROR,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.splitlines()[-15:] + proc.stderr.splitlines()[-15:])
                raise SystemExit(
                    f"debootstrap {suite} failed:\n{tail}\nCheck that {MIRROR} answers "
                    "(set PFR_DEBIAN_MIRROR to another Debian mirror), then run `make test` again."
                )
            _say(platform, f"docker import → {rootfs_ref}")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(
                ["docker", "import", "-", rootfs_ref], stdin=tar.stdout, capture_output=True, check=False
            )
            tar.wait()
            if imp.returncode != 0 or tar.returncode != 0:
                raise SystemExit(f"docker import failed: {imp.stderr.decode()[-500:]}")
    wheels = CACHE / "wheels" / platform
    wheels.mkdir(parents=True, exist_ok=True)
    builder = f"postfix_relay-build-{platform}"
    docker("rm", "-f", builder, check=False)
    _say(
        platform,
        f"installing salt {SALT_VERSION} and aiosmtpd {AIOSMTPD_VERSION} (first time: builds wheels, ~3 min) …",
    )
    mounts = ["-v", f"{wheels}:/wheels"]
    env = []
    if Path(HOST_CA).exists():  # this machine's CA bundle, for HTTPS to the package index
        mounts += ["-v", f"{HOST_CA}:/host-ca.crt:ro"]
        env += ["-e", "PIP_CERT=/host-ca.crt"]
    proc = docker(
        "run", "--name", builder, "--label", LABEL, *mounts, *env, rootfs_ref, "sh", "-c", BUILD_SCRIPT,
        check=False, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        docker("rm", "-f", builder, check=False)
        raise SystemExit(
            f"building {ref} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n"
            "The package index must be reachable from containers on the default bridge; fix, then `make test`."
        )
    docker("commit", "--change", 'CMD ["/sbin/init"]', "--change", "ENV container=docker", builder, ref)
    docker("rm", "-f", builder, check=False)
    _say(platform, f"built {ref} in {time.monotonic() - started:.0f} s")
    return ref


def main(argv: list[str]) -> None:
    for platform in argv or list(PLATFORMS):
        print(build(platform))


if __name__ == "__main__":
    main(sys.argv[1:])
