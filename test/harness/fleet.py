"""A real salt-master with web and worker minions, a fake provider, and Django on the minions.

    master  salt-master, formula + _modules in file_roots, pillar from test/salt/pillar/fleet/
    web1    salt-minion, grain roles: [web]
    worker1 salt-minion, grain roles: [worker]
    provider  the fake provider (aiosmtpd), on the provider's real host name

All on a Docker network of their own created ``--internal`` (no route out).
Minions are also attached to the default bridge while Salt installs Postfix,
then cut off before any mail flows.  Used by test/fleet/ and ``make demo``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import images, provider
from harness.docker import Container, docker
from harness.formula import REPO
from harness.hostsetup import LABEL
from harness.pki import TestCA
from harness.provider import ProviderSpec

PILLAR_DIR = REPO / "test" / "salt" / "pillar" / "fleet"
APP_DIR = REPO / "test" / "fleet" / "djangoapp"
APP_ROOT = "/opt/relayapp"
DJANGO_PYTHON = "/opt/django/bin/python"
MASTER_CONFIG = {
    "interface": "0.0.0.0",
    "file_roots": {"base": ["/srv/salt", "/srv/formulas/postfix_relay"]},
    "pillar_roots": {"base": ["/srv/pillar"]},
    # debug: the secret searches of the master's log are meaningful only if the log says a lot
    # (at debug it holds every published command with its arguments).
    "log_level_logfile": "debug",
}
MASTER_LOG = "/var/log/salt/master"
SALT_RUN = "/opt/salt/bin/salt-run"  # the image links salt, salt-call, salt-key … into PATH, not salt-run
MASTER_CACHE = "/var/cache/salt/master"
STATE_TOP = "base:\n  'G@roles:web or G@roles:worker':\n    - match: compound\n    - postfix_relay\n"


def load_provider_spec() -> ProviderSpec:
    return provider.load_spec(REPO / "test" / "fleet" / "provider.yml", PILLAR_DIR / "postfix_relay.sls")


@dataclass
class Fleet:
    minions: dict[str, list[str]] = field(default_factory=lambda: {"web1": ["web"], "worker1": ["worker"]})
    platform: str = "debian-12"
    # Master and minions run this Salt (images.SALT_VERSIONS).
    salt_version: str = images.SALT_VERSION
    name: str = "fleet"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    spec: ProviderSpec = field(default_factory=load_provider_spec)
    progress: bool = True
    pillar_dir: Path = PILLAR_DIR
    # More fake providers (name -> spec), each in a container of its own.
    extra_providers: dict[str, ProviderSpec] = field(default_factory=dict)
    # Extra grains per minion (e.g. {"staging1": {"environment": "staging"}}).
    grains: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.ca = TestCA()
        self.network = f"pfr-{self.name}-{self.run_id}"
        self.containers: dict[str, Container] = {}
        self.addresses: dict[str, str] = {}

    # -- helpers --------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.progress:
            print(f"[{self.name}] {msg}", flush=True)

    def cname(self, role: str) -> str:
        return f"pfr-{self.name}-{role}-{self.run_id}"

    @property
    def master(self) -> Container:
        return self.containers["master"]

    @property
    def provider(self) -> Container:
        return self.containers["provider"]

    def minion(self, name: str) -> Container:
        return self.containers[name]

    def address(self, name: str) -> str:
        """A fleet member's address on the fleet network."""
        return self._ip(self.containers[name])

    def _ip(self, container: Container) -> str:
        fmt = f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}'
        return docker("inspect", "-f", fmt, container.name).stdout.strip()

    def salt(self, *args: str, timeout: float = 900, salt_timeout: int = 300) -> tuple[int, object, str]:
        """Run ``salt`` on the master; returns (rc, parsed JSON by minion, raw output)."""
        proc = self.master.exec(
            "salt", "--out=json", "--static", f"--timeout={salt_timeout}", *args, check=False, timeout=timeout
        )
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = None
        return proc.returncode, data, proc.stdout + proc.stderr

    # -- lifecycle ------------------------------------------------------------
    def up(self) -> Fleet:
        """Start everything; on failure, remove what was started and re-raise."""
        try:
            return self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> Fleet:
        started = time.monotonic()
        image = images.build(self.platform, self.salt_version)
        docker("network", "create", "--internal", "--label", LABEL, self.network)
        # NET_ADMIN: cut_off() deletes the default route the internal network still gets.
        run = ["--network", self.network, "--cap-add", "NET_ADMIN"]
        self.say(f"network {self.network} (internal: no route out)")

        self.containers["provider"] = Container.run_systemd(
            self.cname("provider"), image, hostname="provider.example.test", run_id=self.run_id, extra=run
        )
        provider.deploy(self.provider, self.ca, self.spec, listen="0.0.0.0")
        hosts = {self.spec.host: self._ip(self.provider)}
        self.say(f"fake provider {self.spec.host}:{self.spec.port} ({self.spec.tls}) at {hosts[self.spec.host]}")
        for key, spec in self.extra_providers.items():
            container = self.containers[f"provider-{key}"] = Container.run_systemd(
                self.cname(f"provider-{key}"), image, hostname=f"{key}.example.test", run_id=self.run_id, extra=run
            )
            provider.deploy(container, self.ca, spec, listen="0.0.0.0")
            hosts[spec.host] = self._ip(container)
            self.say(f"fake provider {spec.host}:{spec.port} ({spec.tls}) at {hosts[spec.host]}")

        master = self.containers["master"] = Container.run_systemd(
            self.cname("master"), image, hostname="salt.example.test", run_id=self.run_id,
            extra=[*run, "--network-alias", "salt"],
        )  # fmt: skip
        master.write("/etc/salt/master", yaml.safe_dump(MASTER_CONFIG))
        master.put(REPO / "postfix_relay", "/srv/formulas/postfix_relay/postfix_relay")
        master.put(REPO / "_modules", "/srv/formulas/postfix_relay/_modules")
        master.put(REPO / "_beacons", "/srv/formulas/postfix_relay/_beacons")
        master.write("/srv/salt/top.sls", STATE_TOP)
        for path in sorted(self.pillar_dir.rglob("*.sls")):
            master.write(f"/srv/pillar/{path.relative_to(self.pillar_dir)}", path.read_text(), mode="0600")
        master.exec("systemd-run", "--unit=salt-master", "/opt/salt/bin/salt-master")
        self.say("salt-master started")

        for name, roles in self.minions.items():
            m = self.containers[name] = Container.run_systemd(
                self.cname(name), image, hostname=f"{name}.example.test", run_id=self.run_id,
                extra=[*run, *(f"--add-host={host}:{ip}" for host, ip in hosts.items())],
            )  # fmt: skip
            # The default bridge, for apt only, until cut_off().
            docker("network", "connect", "bridge", m.name)
            provider.trust_ca(m, self.ca)
            m.write(
                "/etc/salt/minion",
                yaml.safe_dump({"master": "salt", "id": name, "grains": {"roles": roles, **self.grains.get(name, {})}}),
            )
            m.put(APP_DIR, APP_ROOT)
            m.exec("systemd-run", "--unit=salt-minion", "/opt/salt/bin/salt-minion")
        self.accept_keys()
        self.say(
            f"up in {time.monotonic() - started:.0f} s: master, {', '.join(self.minions)}, provider (salt {self.salt_version})"
        )
        return self

    def accept_keys(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        wanted = set(self.minions)
        while time.monotonic() < deadline:
            keys = json.loads(self.master.exec("salt-key", "-L", "--out=json").stdout or "{}")
            if wanted <= set(keys.get("minions_pre", [])) | set(keys.get("minions", [])):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"minion keys never reached the master: {keys}")
        self.master.exec("salt-key", "-A", "-y")
        while time.monotonic() < deadline:
            _rc, data, _ = self.salt("*", "test.ping", timeout=60, salt_timeout=10)
            if isinstance(data, dict) and wanted <= {k for k, v in data.items() if v is True}:
                self.say(f"keys accepted, {len(wanted)} minions answer")
                return
            time.sleep(2)
        raise AssertionError("minions do not answer test.ping")

    def cut_off(self) -> None:
        """No route out: minions leave the default bridge, and no container keeps a default route.

        The fleet network is ``--internal`` (Docker drops its forwarded traffic);
        deleting the default route as well leaves each container its subnet only.
        """
        for name in self.minions:
            docker("network", "disconnect", "-f", "bridge", self.minion(name).name, check=False)
        for container in self.containers.values():
            container.sh("ip route del default 2>/dev/null; ip -6 route del default 2>/dev/null; true")
        self.say("cut off: internal network only, no default route")

    def send_django_mail(self, minion: str, *, to: list[str], subject: str, message_id: str, env_file: str):
        """Send through Django as a service would: a transient unit with EnvironmentFile=."""
        unit = f"relayapp-send-{uuid.uuid4().hex[:6]}"
        return self.minion(minion).exec(
            "systemd-run", f"--unit={unit}", "--wait", "--pipe", "--quiet", "--collect",
            f"--property=EnvironmentFile={env_file}", f"--working-directory={APP_ROOT}",
            DJANGO_PYTHON, "manage.py", "sendtestmail", f"--to={','.join(to)}", f"--subject={subject}",
            f"--message-id={message_id}",
            check=False, timeout=180,
        )  # fmt: skip

    def wait_for_message(self, message_id: str, timeout: float = 90, provider_key: str | None = None) -> dict | None:
        """The provider's record of ``message_id`` (the main provider, or ``provider_key``'s)."""
        container = self.provider if provider_key is None else self.containers[f"provider-{provider_key}"]
        found = provider.wait_for_messages(container, message_id, timeout=timeout)
        return found[0] if found else None

    def master_secret_locations(self, secret: str) -> list[str]:
        """Files under the master's cache (job cache included) and its log that hold ``secret``."""
        out = self.master.exec("grep", "-rlF", "-e", secret, MASTER_CACHE, MASTER_LOG, check=False, timeout=300)
        return sorted(out.stdout.split())

    @contextlib.contextmanager
    def master_events(self) -> Iterator[EventCapture]:
        """Everything on the master's event bus meanwhile (``salt-run state.event pretty=True``)."""
        capture = EventCapture(self.master, uuid.uuid4().hex[:8])
        capture.start()
        try:
            yield capture
        finally:
            capture.stop()

    def down(self) -> None:
        for container in self.containers.values():
            container.remove()
        docker("network", "rm", self.network, check=False)


class EventCapture:
    """``salt-run state.event pretty=True`` running on the master into a file, until stopped."""

    def __init__(self, master: Container, key: str):
        self.master = master
        self.unit = f"pfr-events-{key}"
        self.path = f"/var/tmp/{self.unit}.txt"
        self.marker = f"postfix_relay/test/capture-ready/{key}"

    def start(self, timeout: float = 60) -> None:
        self.master.exec(
            "systemd-run", f"--unit={self.unit}", "--collect", "--setenv=PYTHONUNBUFFERED=1",
            "sh", "-c", f"exec {SALT_RUN} state.event pretty=True > {self.path} 2>&1",
        )  # fmt: skip
        # Listening once an event fired now shows up in the capture.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.master.exec(SALT_RUN, "event.send", self.marker, check=False, timeout=60)
            if self.marker in self.text():
                return
            time.sleep(0.5)
        raise AssertionError(f"salt-run state.event never showed {self.marker}:\n{self.text()[-2000:]}")

    def text(self) -> str:
        return self.master.exec("cat", self.path, check=False).stdout

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> str:
        """The capture once ``pattern`` (a regular expression, e.g. a tag) matches ``count`` times."""
        deadline = time.monotonic() + timeout
        text = self.text()
        while len(re.findall(pattern, text)) < count and time.monotonic() < deadline:
            time.sleep(0.5)
            text = self.text()
        assert len(re.findall(pattern, text)) >= count, f"{pattern!r} x{count} never reached the event capture"
        return text

    def stop(self) -> None:
        self.master.exec("systemctl", "stop", self.unit, check=False)
