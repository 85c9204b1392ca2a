"""One master, one pillar tree: a staging and a production minion, each through its own provider.

The pillar top file picks postfix_relay settings by the `environment` grain:
staging -> Mailgun sandbox + redirect_all_to, production -> SES.  Two fake
providers, each accepting only its own credentials.
"""

from __future__ import annotations

import pytest
import yaml
from harness.fakeprovider import sha256
from harness.fleet import Fleet
from harness.formula import REPO
from harness.provider import ProviderSpec

PILLARS = REPO / "test" / "salt" / "pillar" / "environments"


def _spec(env: str, host: str) -> ProviderSpec:
    pillar = yaml.safe_load((PILLARS / "postfix_relay" / f"{env}.sls").read_text())["postfix_relay"]
    return ProviderSpec(host, 587, "starttls", pillar["username"], pillar["password"])


PRODUCTION = _spec("production", "email-smtp.eu-west-1.amazonaws.com")
STAGING = _spec("staging", "smtp.mailgun.org")


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(
        name="envs",
        minions={"staging1": ["web"], "prod1": ["web"]},
        grains={"staging1": {"environment": "staging"}, "prod1": {"environment": "production"}},
        pillar_dir=PILLARS,
        spec=PRODUCTION,
        extra_providers={"staging": STAGING},
    ).up()
    yield f
    f.down()


def test_one_apply_each_environment_gets_its_own_settings(fleet):
    rc, data, out = fleet.salt("-G", "roles:web", "state.apply", "postfix_relay")
    assert rc == 0, out
    assert set(data) == {"staging1", "prod1"}
    assert STAGING.password not in out and PRODUCTION.password not in out
    rc, data, out = fleet.salt("-G", "roles:web", "postfix_relay.settings")
    assert data["staging1"]["relay"]["nexthop"] == "[smtp.mailgun.org]:587"
    assert data["staging1"]["redirect_all_to"] == ["qa@example.com"]
    assert data["prod1"]["relay"]["nexthop"] == "[email-smtp.eu-west-1.amazonaws.com]:587"
    assert data["prod1"]["redirect_all_to"] == []
    fleet.cut_off()


@pytest.mark.parametrize(
    ("minion", "provider_key", "spec", "delivered_to"),
    [
        ("staging1", "staging", STAGING, ["qa@example.com"]),
        ("prod1", None, PRODUCTION, ["customer@customer.example"]),
    ],
)
def test_each_environment_relays_through_its_own_provider(fleet, minion, provider_key, spec, delivered_to):
    rc, data, out = fleet.salt(minion, "postfix_relay.send_test", "to=customer@customer.example", "timeout=60")
    assert rc == 0, out
    result = data[minion]
    assert result["status"] == "sent", result
    msg = fleet.wait_for_message(result["message_id"], timeout=10, provider_key=provider_key)
    assert msg, f"{minion}'s mail did not reach its own provider"
    assert msg["rcpt_tos"] == delivered_to
    assert msg["tls"] is True and msg["auth_user_sha256"] == sha256(spec.username)
    other = "staging" if provider_key is None else None
    assert fleet.wait_for_message(result["message_id"], timeout=1, provider_key=other) is None
    if minion == "staging1":
        assert msg["headers"]["X-Original-To"] == ["customer@customer.example"]
    print(f"\n{minion}: {msg['rcpt_tos']} via {spec.host}, message {result['message_id']}")
