"""What a relay suite expects, read from its files (never from the formula's own module).

``test/integration/<suite>/provider.yml`` is written from the provider's docs;
the password comes from the suite's pillar ``test/salt/pillar/<suite>.sls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

TEST_DIR = Path(__file__).resolve().parents[1]
EVENTS = "/var/lib/fakeprovider/events.jsonl"
PILLAR_SOURCE = "/tmp/kitchen/srv/pillar/postfix_relay.sls"


@dataclass(frozen=True)
class Suite:
    name: str
    host: str
    port: int
    tls: str
    username: str
    password: str

    @property
    def nexthop(self) -> str:
        return f"[{self.host}]:{self.port}"


def load_suite(name: str) -> Suite:
    provider = yaml.safe_load((TEST_DIR / "integration" / name / "provider.yml").read_text())
    pillar = yaml.safe_load((TEST_DIR / "salt" / "pillar" / f"{name}.sls").read_text())["postfix_relay"]
    password = pillar["password"]
    username = password if provider.get("username_is_password") else provider["username"]
    return Suite(name, provider["host"], int(provider["port"]), provider["tls"], username, password)
