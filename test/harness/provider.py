"""Deploy the fake provider (fakeprovider.py) into a container, and trust its test CA.

Shared by the kitchen matrix (provider inside the instance, on 127.0.0.2) and
the fleet (provider in a container of its own on the fleet's network).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

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


def trust_ca(container: Container, ca: TestCA) -> None:
    """Put the test CA into the system store (ca-certificates picks it up when installed)."""
    container.write(CA_PATH, ca.cert_pem.decode())
    container.sh("command -v update-ca-certificates >/dev/null && update-ca-certificates >/dev/null || true")


def deploy(container: Container, ca: TestCA, spec: ProviderSpec, listen: str, *, unit: str = "fakeprovider") -> None:
    """Start the fake provider as a transient systemd unit and wait until it listens."""
    issued = ca.issue(spec.host)
    container.put(REPO / "test" / "harness" / "fakeprovider.py", f"{PROVIDER_DIR}/fakeprovider.py")
    container.write(f"{PROVIDER_DIR}/cert.pem", issued.cert_pem.decode())
    container.write(f"{PROVIDER_DIR}/key.pem", issued.key_pem.decode(), mode="0600")
    config = {
        "listen": listen,
        "port": spec.port,
        "tls": spec.tls,
        "hostname": spec.host,
        "cert": f"{PROVIDER_DIR}/cert.pem",
        "key": f"{PROVIDER_DIR}/key.pem",
        # Only a hash: the provider never writes the password anywhere.
        "credentials": [credential_hash(spec.username, spec.password)],
        "events": EVENTS,
    }
    container.write(f"{PROVIDER_DIR}/config.json", json.dumps(config, indent=1), mode="0600")
    container.exec(
        "systemd-run", f"--unit={unit}", "--collect", f"{PROVIDER_DIR}/bin/python",
        f"{PROVIDER_DIR}/fakeprovider.py", f"--config={PROVIDER_DIR}/config.json",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if '"listening"' in container.exec("cat", EVENTS, check=False).stdout:
            return
        time.sleep(0.5)
    status = container.exec("systemctl", "status", unit, "--no-pager", check=False).stdout
    raise AssertionError(f"fake provider did not start:\n{status}")


def events(container: Container) -> list[dict]:
    text = container.exec("cat", EVENTS, check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]
