"""salt-ssh paths next to the converge (review 14): the state tarball holding the pillar must not stay on the target.

salt-ssh ships the target's whole pillar (the password included) in
``<thin_dir>/salt_state.tgz``; the formula's salt_ssh.sls removes it with a
``cmd.run`` ordered last.  A dry run (``test=True``: cmd.run only says it
*would* run) and ``state.apply postfix_relay.clean`` (clean.sls does not
include salt_ssh.sls) must not leave it behind either.  Neither needs Postfix
on the target, so no converge is needed here.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from harness import images, provider
from harness.docker import Container, docker
from harness.formula import REPO
from test_salt_ssh import PILLAR_SLS, SUITE, SaltSSH


@pytest.fixture(scope="module")
def spec():
    return provider.load_spec(REPO / "test" / "integration" / SUITE / "provider.yml", PILLAR_SLS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saltssh-tarball")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run_id = uuid.uuid4().hex[:8]
    target = Container.run_systemd(
        f"pfr-ssh-tarball-{run_id}", images.build_sshd("debian-12"), hostname="web1.example.test", run_id=run_id
    )
    try:
        target.write("/root/.ssh/authorized_keys", (tmp / "id_ed25519.pub").read_text(), mode="0600")
        target.exec("sh", "-c", "for i in $(seq 60); do systemctl is-active -q ssh && exit 0; sleep 1; done; exit 1")
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", target.name).stdout.strip()
        master = SaltSSH(tmp / "master", ip, key)
        master.configure(module_dirs=[str(master.roots)])
        yield master, target
    finally:
        if not os.environ.get("PFR_KEEP"):
            target.remove()


def _leaks(target, password: str) -> list[str]:
    """Files under the thin dir and /tmp holding the password, plain or inside a .tgz."""
    thin = target.sh("ls -d /var/tmp/.*_salt", check=False).stdout.split()
    assert thin, "no salt-ssh thin directory on the target"
    found = target.exec("grep", "-rlF", "-e", password, *thin, "/tmp", check=False).stdout.split()
    for archive in target.sh(f"find {' '.join(thin)} /tmp -name '*.tgz'", check=False).stdout.split():
        inside = target.sh(f"tar -xzOf {archive} 2>/dev/null | grep -cF -e '{password}'", check=False).stdout
        if inside.strip() not in ("", "0"):
            found.append(archive)
    return found


def test_dry_run_leaves_no_pillar_on_the_target(setup, spec):
    master, target = setup
    _rc, data, out = master.ssh("state.apply", "postfix_relay", "test=True")
    assert isinstance(data, dict) and isinstance(data.get("web1"), dict), out[-3000:]
    assert _leaks(target, spec.password) == []


def test_clean_leaves_no_pillar_on_the_target(setup, spec):
    master, target = setup
    target.sh("rm -f /var/tmp/.*_salt/salt_state.tgz", check=False)
    _rc, data, out = master.ssh("state.apply", "postfix_relay.clean")
    assert isinstance(data, dict) and isinstance(data.get("web1"), dict), out[-3000:]
    assert _leaks(target, spec.password) == []
