"""salt-ssh, no master, no minion: `salt-ssh web1 state.apply postfix_relay` on a fresh sshd container.

salt-ssh (this venv's Salt) runs on the host with a roster written here and key
authentication; the target has sshd and Python but no Salt.  Under salt-ssh the
SLS render on the master, so the module must run there as a wrapper module
(README, "salt-ssh"): without it the render names the fix; after
``salt-run saltutil.sync_wrapper`` the apply converges, changes nothing the
second time, the relay delivers, and the password is neither in salt-ssh's
output nor in the thin directory salt-ssh leaves on the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from harness import images, provider
from harness.docker import Container, docker
from harness.fakeprovider import sha256
from harness.formula import REPO
from harness.kitchen import PROVIDER_ADDR
from harness.pki import TestCA

BIN = Path(sys.executable).parent
SUITE = "sendgrid"
PILLAR_SLS = REPO / "test" / "salt" / "pillar" / f"{SUITE}.sls"


class SaltSSH:
    """A salt-ssh "master" in a temporary directory: file_roots = the repository's formula, one target."""

    def __init__(self, root: Path, host: str, key: Path):
        self.root = root
        self.conf = root / "etc"
        roots = self.roots = root / "roots"
        pillar = root / "pillar"
        for d in (self.conf, roots, pillar):
            d.mkdir(parents=True)
        for name in ("postfix_relay", "_modules", "_wrapper"):
            (roots / name).symlink_to(REPO / name)
        (pillar / "top.sls").write_text("base:\n  '*':\n    - postfix_relay\n")
        (pillar / "postfix_relay.sls").write_text(PILLAR_SLS.read_text())
        self.cachedir = root / "cache"
        self.extmods = root / "extmods"
        config = {
            "root_dir": str(root),
            "cachedir": str(self.cachedir),
            "extension_modules": str(self.extmods),
            "pki_dir": str(root / "pki"),
            "sock_dir": str(root / "sock"),
            "log_file": str(root / "master.log"),
            "ssh_log_file": str(root / "ssh.log"),
            "log_level_logfile": "info",
            "file_roots": {"base": [str(roots)]},
            "pillar_roots": {"base": [str(pillar)]},
        }
        self.config = config
        self.configure()
        roster = {"web1": {"host": host, "user": "root", "priv": str(key), "timeout": 30}}
        (self.conf / "roster").write_text(yaml.safe_dump(roster))

    def configure(self, **changes) -> None:
        self.config.update(changes)
        (self.conf / "master").write_text(yaml.safe_dump(self.config))

    def ssh(self, *args: str, timeout: float = 1200) -> tuple[int, object, str]:
        cmd = [
            str(BIN / "salt-ssh"), f"--config-dir={self.conf}", f"--roster-file={self.conf / 'roster'}",
            "--ignore-host-keys", "--out=json", "--log-level=warning", "web1", *args,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = None
        return proc.returncode, data, proc.stdout + proc.stderr

    def run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "salt-run"), f"--config-dir={self.conf}", "--out=json", "--log-level=warning", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def spec():
    return provider.load_spec(REPO / "test" / "integration" / SUITE / "provider.yml", PILLAR_SLS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, spec):
    tmp = tmp_path_factory.mktemp("saltssh")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run_id = uuid.uuid4().hex[:8]
    image = images.build_sshd("debian-12")
    target = Container.run_systemd(f"pfr-ssh-web1-{run_id}", image, hostname="web1.example.test", run_id=run_id)
    try:
        target.write("/root/.ssh/authorized_keys", (tmp / "id_ed25519.pub").read_text(), mode="0600")
        target.sh(f"echo '{PROVIDER_ADDR} {spec.host}' >> /etc/hosts")
        ca = TestCA()
        provider.trust_ca(target, ca)
        target.exec("sh", "-c", "for i in $(seq 60); do systemctl is-active -q ssh && exit 0; sleep 1; done; exit 1")
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", target.name).stdout.strip()
        assert target.exec("sh", "-c", "command -v salt-call || ls /opt/salt", check=False).returncode != 0
        yield SaltSSH(tmp / "master", ip, key), target, ca
    finally:
        if not os.environ.get("PFR_KEEP"):
            target.remove()


def _states(rc, data, out, spec):
    assert spec.password not in out, "the password is in salt-ssh's output"
    assert isinstance(data, dict) and isinstance(data.get("web1"), dict), out[-4000:]
    states = data["web1"]
    failed = {k: v.get("comment") for k, v in states.items() if v.get("result") is not True}
    assert not failed, failed
    assert rc == 0, out[-3000:]
    return states


def test_without_the_wrapper_the_render_names_the_fix(setup, spec):
    master, _target, _ca = setup
    rc, _data, out = master.ssh("state.apply", "postfix_relay")
    assert rc != 0, out[-3000:]
    assert "postfix_relay under salt-ssh" in out and "module_dirs" in out, out[-3000:]
    assert "is required" not in out  # not the misleading pillar error the module would give on the target
    assert spec.password not in out


def test_sync_wrapper_is_not_enough(setup, spec):
    """``salt-run saltutil.sync_wrapper`` fills the master's extmods/wrapper, which salt-ssh 3008 does not read
    when it renders states (its wrapper loader takes extension_modules from the target's opts)."""
    master, _target, _ca = setup
    proc = master.run("saltutil.sync_wrapper")
    assert proc.returncode == 0 and json.loads(proc.stdout) == ["wrapper.postfix_relay"], proc.stdout + proc.stderr
    assert (master.extmods / "wrapper" / "postfix_relay.py").is_file()
    rc, _data, out = master.ssh("state.apply", "postfix_relay")
    assert rc != 0 and "postfix_relay under salt-ssh" in out, out[-3000:]


def test_module_dirs_puts_the_wrapper_on_the_master(setup):
    master, _target, _ca = setup
    master.configure(module_dirs=[str(master.roots)])
    rc, _data, out = master.ssh("sys.list_functions", "postfix_relay")
    assert rc == 0, out[-2000:]


def test_apply_converges(setup, spec):
    master, target, _ca = setup
    states = _states(*master.ssh("state.apply", "postfix_relay"), spec)
    assert any(v["__id__"] == "postfix_relay-package-pkg-installed-postfix" and v["changes"] for v in states.values())
    assert target.exec("postconf", "-h", "relayhost").stdout.strip() == f"[{spec.host}]:{spec.port}"


def test_second_apply_changes_nothing(setup, spec):
    master, _target, _ca = setup
    states = _states(*master.ssh("state.apply", "postfix_relay"), spec)
    assert [v["__id__"] for v in states.values() if v["changes"]] == []


def test_operations_run_on_the_target(setup, spec):
    """The wrapper copy runs on the master; status reads the target's Postfix (this host has none)."""
    master, _target, _ca = setup
    rc, data, out = master.ssh("postfix_relay.status")
    assert rc == 0 and isinstance(data, dict), out[-3000:]
    assert data["web1"]["relayhost"] == f"[{spec.host}]:{spec.port}", out[-3000:]
    assert spec.password not in out


def test_relay_delivers(setup, spec):
    _master, target, ca = setup
    target.disconnect_all_networks()
    provider.deploy(target, ca, spec, listen=PROVIDER_ADDR)
    message_id = f"<{uuid.uuid4().hex}@web1.example.test>"
    message = f"From: app@example.com\nTo: alice@example.org\nSubject: salt-ssh\nMessage-ID: {message_id}\n\nhello\n"
    target.exec("/usr/sbin/sendmail", "-f", "app@example.com", "alice@example.org", input=message)
    found = provider.wait_for_messages(target, message_id, timeout=90)
    assert found, f"{message_id} never reached the provider"
    assert found[0]["tls"] is True and found[0]["auth_user_sha256"] == sha256(spec.username)


def test_no_password_in_the_thin_dir_left_on_the_target(setup, spec):
    _master, target, _ca = setup
    thin = target.sh("ls -d /var/tmp/.*_salt", check=False).stdout.split()
    assert thin, "no salt-ssh thin directory on the target: is this looking in the right place?"
    assert target.exec("test", "-f", f"{thin[0]}/salt-call", check=False).returncode == 0
    # salt-ssh ships the pillar in salt_state.tgz (compressed: a plain grep would not see it); the formula removes it.
    assert target.exec("test", "-e", f"{thin[0]}/salt_state.tgz", check=False).returncode != 0
    leaks = target.exec("grep", "-rlF", "-e", spec.password, *thin, check=False).stdout.split()
    assert leaks == [], leaks
    archives = target.sh(
        f"find {thin[0]} -name '*.tgz' -o -name '*.tar.gz' -o -name '*.zip'", check=False
    ).stdout.split()
    for archive in archives:
        listing = target.sh(f"tar -xzOf {archive} 2>/dev/null | grep -c -F -e '{spec.password}'", check=False).stdout
        assert listing.strip() in ("", "0"), archive
    # Where the password belongs (positive control for the search): the map source, root-only.
    assert target.exec("grep", "-lF", "-e", spec.password, "/etc/postfix/sasl_passwd", check=False).returncode == 0
