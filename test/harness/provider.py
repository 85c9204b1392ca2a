"""Deploy the fake provider (fakeprovider.py) into a container, and trust its test CA.

Shared by the kitchen matrix (provider inside the instance, on 127.0.0.2) and
the fleet (provider in a container of its own on the fleet's network).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.docker import Container
from harness.fakeprovider import credential_hash
from harness.formula import REPO
from harness.pki import TestCA

PROVIDER_DIR = "/opt/fakeprovider"
EVENTS = "/var/lib/fakeprovider/events.jsonl"
CA_PATH = "/usr/local/share/ca-certificates/postfix_relay-test-ca.crt"


@dataclass(frozen=True)
class ProviderSpec:
    host: str
    port: int
    tls: str
    username: str
    password: str


def load_spec(provider_yml: Path, pillar_sls: Path) -> ProviderSpec:
    """What the fake provider impersonates: ``provider.yml`` (from the provider's docs) + the pillar's password."""
    desc = yaml.safe_load(provider_yml.read_text())
    password = yaml.safe_load(pillar_sls.read_text())["postfix_relay"]["password"]
    username = password if desc.get("username_is_password") else desc["username"]
    return ProviderSpec(desc["host"], int(desc["port"]), desc["tls"], username, password)


def trust_ca(container: Container, ca: TestCA) -> None:
    """Put the test CA into the system store (ca-certificates picks it up when installed)."""
    container.write(CA_PATH, ca.cert_pem.decode())
    container.sh("command -v update-ca-certificates >/dev/null && update-ca-certificates >/dev/null || true")


def deploy(
    container: Container,
    ca: TestCA,
    spec: ProviderSpec,
    listen: str,
    *,
    unit: str = "fakeprovider",
    cert_for: tuple[str, ...] | None = None,
    signing_ca: TestCA | None = None,
    accept: tuple[tuple[str, str], ...] | None = None,
    data_reply: str | None = None,
) -> None:
    """Start the fake provider as a transient systemd unit and wait until it listens.

    Faults are made by the arguments: a certificate for other names
    (``cert_for``) or from an untrusted CA (``signing_ca``), other accepted
    credentials (``accept``), a DATA reply (``data_reply``), ``spec.tls="none"``.
    """
    issued = (signing_ca or ca).issue(*(cert_for or (spec.host,)))
    files = f"{PROVIDER_DIR}/{unit}"
    container.put(REPO / "test" / "harness" / "fakeprovider.py", f"{PROVIDER_DIR}/fakeprovider.py")
    container.write(f"{files}-cert.pem", issued.cert_pem.decode())
    container.write(f"{files}-key.pem", issued.key_pem.decode(), mode="0600")
    credentials = accept or ((spec.username, spec.password),)
    config = {
        "listen": listen,
        "port": spec.port,
        "tls": spec.tls,
        "hostname": spec.host,
        "cert": f"{files}-cert.pem",
        "key": f"{files}-key.pem",
        # Only hashes: the provider never writes a password anywhere.
        "credentials": [credential_hash(user, password) for user, password in credentials],
        "events": events_path(unit),
        "data_reply": data_reply,
    }
    container.write(f"{files}-config.json", json.dumps(config, indent=1), mode="0600")
    stop(container, unit)
    mark = len(events(container, unit))
    container.exec(
        "systemd-run", f"--unit={unit}", "--collect", f"{PROVIDER_DIR}/bin/python",
        f"{PROVIDER_DIR}/fakeprovider.py", f"--config={files}-config.json",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e["event"] == "listening" for e in events(container, unit)[mark:]):
            return
        time.sleep(0.3)
    status = container.exec("systemctl", "status", unit, "--no-pager", check=False).stdout
    raise AssertionError(f"fake provider did not start:\n{status}")


def stop(container: Container, unit: str = "fakeprovider") -> None:
    """The provider goes down (connections refused) until the next deploy()."""
    container.exec("systemctl", "stop", unit, check=False)


def wait_for_messages(
    container: Container, message_id: str, *, unit: str = "fakeprovider", timeout: float = 60
) -> list[dict]:
    """Every copy of ``message_id`` the provider received, as soon as one arrived ([] on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(container, unit) if e["event"] == "message" and e["message_id"] == message_id]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def events_path(unit: str = "fakeprovider") -> str:
    """Each provider unit logs to its own file; the default one to EVENTS."""
    return EVENTS if unit == "fakeprovider" else f"/var/lib/fakeprovider/{unit}-events.jsonl"


def events(container: Container, unit: str = "fakeprovider") -> list[dict]:
    text = container.exec("cat", events_path(unit), check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]
