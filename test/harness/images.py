"""Test minion images built without a registry: debootstrap -> docker import -> Salt installed.

Each image is tagged with a hash of its recipe and reused until the recipe
changes.  Postfix is NOT in the image: installing it is the formula's job.

    python -m harness.images debian-12 debian-13      # build (or reuse) and print the tags
    python -m harness.images debian-12:3006.29        # the same with another Salt version
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.docker import docker, image_exists
from harness.hostsetup import LABEL

# The Salt version every suite runs on, and the others the matrix covers (kitchen.yml platforms
# name them; README "Supported Salt versions" says what each was seen doing).
SALT_VERSION = "3008.4"
SALT_VERSIONS = ("3008.4", "3007.16", "3006.29")
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
# host cache (salt compiles timelib), then installed offline.  {salt} is the
# Salt version (the text for SALT_VERSION is the recipe its images were built from).
BUILD_TEMPLATE = """
set -eu
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
apt-get update -q
apt-get install -y -q --no-install-recommends gcc python3-dev
python3 -m venv /opt/salt
/opt/salt/bin/pip wheel -q --find-links /wheels -w /wheels salt=={salt}
/opt/salt/bin/pip install -q --no-index --find-links /wheels salt=={salt}
for tool in salt-call salt-minion salt-master salt-key salt; do ln -sf /opt/salt/bin/$tool /usr/local/bin/$tool; done
python3 -m venv /opt/fakeprovider
/opt/fakeprovider/bin/pip wheel -q --find-links /wheels -w /wheels aiosmtpd=={aiosmtpd}
/opt/fakeprovider/bin/pip install -q --no-index --find-links /wheels aiosmtpd=={aiosmtpd}
# The fleet tests' Django app (real Django from PyPI) runs from /opt/django.
python3 -m venv /opt/django
/opt/django/bin/pip wheel -q --find-links /wheels -w /wheels Django=={django}
/opt/django/bin/pip install -q --no-index --find-links /wheels Django=={django}
apt-get purge -y -q gcc python3-dev >/dev/null
apt-get autoremove -y -q --purge >/dev/null
apt-get clean
rm -rf /root/.cache
# Nothing in the image may send mail or listen before the formula runs.
systemctl mask getty@.service console-getty.service >/dev/null 2>&1 || true
/opt/salt/bin/salt-call --version
"""


# (platform, Salt version) -> why it cannot be installed here (measured; README says so too).
NOT_INSTALLABLE: dict[tuple[str, str], str] = {}


def rootfs_hash(platform: str) -> str:
    """The debootstrap part of the recipe: rebuilt only when the suite or base packages change."""
    recipe = {"suite": PLATFORMS[platform], "packages": BASE_PACKAGES, "mirror": MIRROR}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def build_script(platform: str, salt: str = SALT_VERSION) -> str:
    script = BUILD_TEMPLATE.format(salt=salt, aiosmtpd=AIOSMTPD_VERSION, django=DJANGO_VERSION)
    if PLATFORMS[platform] == "bookworm" and not salt.startswith("3008"):
        # Salt 3006/3007 require `contextvars`, an sdist; bookworm's pip 23.0 builds it with
        # `setup.py bdist_wheel`, which fails without `wheel` ("invalid command 'bdist_wheel'"):
        # build it PEP 517 style instead.  (3008 has no sdist dependency: its recipe is unchanged.)
        script = script.replace("set -eu\n", "set -eu\nexport PIP_USE_PEP517=1\n", 1)
    return script


def recipe_hash(platform: str, salt: str = SALT_VERSION) -> str:
    recipe = {"rootfs": rootfs_hash(platform), "script": build_script(platform, salt)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def image_name(platform: str, salt: str = SALT_VERSION) -> str:
    """The stable name kitchen.yml's driver.image uses: ``postfix_relay-test/<platform>:salt-<version>``."""
    return f"postfix_relay-test/{platform}:salt-{salt}"


def image_ref(platform: str, salt: str = SALT_VERSION) -> str:
    """The recipe-pinned tag: ``postfix_relay-test/<platform>:salt-<version>-<recipe hash>``."""
    return f"{image_name(platform, salt)}-{recipe_hash(platform, salt)}"


def parse_image_name(name: str) -> tuple[str, str]:
    """(platform, salt version) from a driver.image as written in kitchen.yml."""
    repo, _, tag = name.partition(":")
    platform = repo.removeprefix("postfix_relay-test/")
    if platform not in PLATFORMS or not tag.startswith("salt-") or tag.removeprefix("salt-") not in SALT_VERSIONS:
        raise ValueError(
            f"driver.image {name!r} is not postfix_relay-test/<platform>:salt-<version> with platform in "
            f"{sorted(PLATFORMS)} and version in {list(SALT_VERSIONS)}"
        )
    return platform, tag.removeprefix("salt-")


def _say(platform: str, msg: str) -> None:
    print(f"[image {platform}] {msg}", flush=True)


def build(platform: str, salt: str = SALT_VERSION) -> str:
    """Build the image for ``platform`` with Salt ``salt`` unless one with the same recipe exists; return its tag.

    Also tags it with its stable name (``image_name``), the one kitchen.yml names.
    """
    # Container suites run side by side (harness.parallel): the first to need an image builds
    # it, the others wait for it here instead of building it again.
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"image-{platform}-salt{salt}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            ref = _build(platform, salt)
            docker("tag", ref, image_name(platform, salt))
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return ref


def _build(platform: str, salt: str) -> str:
    if platform not in PLATFORMS:
        raise SystemExit(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    if salt not in SALT_VERSIONS:
        raise SystemExit(f"unknown Salt version {salt!r}; known: {', '.join(SALT_VERSIONS)}")
    if (platform, salt) in NOT_INSTALLABLE:
        raise SystemExit(f"salt {salt} on {platform} cannot be installed here: {NOT_INSTALLABLE[platform, salt]}")
    ref = image_ref(platform, salt)
    if image_exists(ref):
        _say(platform, f"reusing {ref}")
        return ref
    # Images built before the version axis existed carry the hash alone (same recipe, same hash).
    legacy = f"postfix_relay-test/{platform}:{recipe_hash(platform, salt)}"
    if image_exists(legacy):
        docker("tag", legacy, ref)
        _say(platform, f"reusing {legacy} as {ref}")
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
    builder = f"postfix_relay-build-{platform}-salt{salt}"
    docker("rm", "-f", builder, check=False)
    _say(
        platform,
        f"installing salt {salt} and aiosmtpd {AIOSMTPD_VERSION} (first time: builds wheels, ~3 min) …",
    )
    mounts = ["-v", f"{wheels}:/wheels"]
    env = []
    if Path(HOST_CA).exists():  # this machine's CA bundle, for HTTPS to the package index
        mounts += ["-v", f"{HOST_CA}:/host-ca.crt:ro"]
        env += ["-e", "PIP_CERT=/host-ca.crt"]
    with _wheel_lock(platform):  # builds for one platform share its wheel cache: one at a time
        proc = docker(
            "run", "--name", builder, "--label", LABEL, *mounts, *env, rootfs_ref, "sh", "-c", build_script(platform, salt),
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


# A salt-ssh target: the test image with sshd, and without Salt (salt-ssh brings its own, the
# "thin"); the fake provider's venv stays.  Root logs in with a key only.
SSHD_SCRIPT = """
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends openssh-server >/dev/null
apt-get clean
rm -rf /opt/salt /opt/django /usr/local/bin/salt* /var/cache/salt /etc/salt
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\n' > /etc/ssh/sshd_config.d/pfr.conf
install -d -m 0700 /root/.ssh
systemctl enable ssh >/dev/null 2>&1
"""


def sshd_image_ref(platform: str) -> str:
    recipe = {"base": recipe_hash(platform), "script": SSHD_SCRIPT}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"postfix_relay-test/{platform}-sshd:{digest}"


def build_sshd(platform: str = "debian-12") -> str:
    """The salt-ssh target image for ``platform`` (built from its default image); return its tag."""
    ref = sshd_image_ref(platform)
    if image_exists(ref):
        _say(platform, f"reusing {ref}")
        return ref
    base = build(platform)
    started = time.monotonic()
    builder = f"postfix_relay-build-{platform}-sshd"
    docker("rm", "-f", builder, check=False)
    _say(platform, "adding openssh-server for the salt-ssh target (~30 s) …")
    proc = docker("run", "--name", builder, "--label", LABEL, base, "sh", "-c", SSHD_SCRIPT, check=False, timeout=900)
    if proc.returncode != 0:
        docker("rm", "-f", builder, check=False)
        raise SystemExit(f"building {ref} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    docker("commit", "--change", 'CMD ["/sbin/init"]', "--change", "ENV container=docker", builder, ref)
    docker("rm", "-f", builder, check=False)
    _say(platform, f"built {ref} in {time.monotonic() - started:.0f} s")
    return ref


@contextlib.contextmanager
def _wheel_lock(platform: str) -> Iterator[None]:
    with open(CACHE / "wheels" / f"{platform}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def main(argv: list[str]) -> None:
    """Arguments: ``<platform>`` (default Salt) or ``<platform>:<salt version>``; none = every default image."""
    for arg in argv or list(PLATFORMS):
        platform, _, salt = arg.partition(":")
        print(build(platform, salt or SALT_VERSION))


if __name__ == "__main__":
    main(sys.argv[1:])
