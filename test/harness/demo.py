"""``make demo``: master + web + worker + fake provider, the formula applied, Django mail sent.

    python -m harness.demo up     # build/reuse images, start, apply, send, report (leaves it running)
    python -m harness.demo down   # remove the demo's containers and network

Everything stays on this machine: the provider is a fake one, on a Docker
network with no route out.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from harness import provider
from harness.docker import docker
from harness.fleet import Fleet
from harness.hostsetup import LABEL

ENV_FILE = "/etc/relayapp/email.env"
DEMO_RUN = "demo"


def down() -> int:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}.run={DEMO_RUN}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    docker("network", "rm", f"pfr-demo-{DEMO_RUN}", check=False)
    print(f"==> demo removed ({len(ids)} containers)")
    return 0


def up() -> int:
    started = time.monotonic()
    down()
    fleet = Fleet(name="demo", run_id=DEMO_RUN)
    print("==> starting salt-master, web1 (roles: web), worker1 (roles: worker) and a fake SendGrid", flush=True)
    fleet.up()
    print("==> salt -C 'G@roles:web or G@roles:worker' state.apply postfix_relay", flush=True)
    rc, data, out = fleet.salt("-C", "G@roles:web or G@roles:worker", "state.apply", "postfix_relay")
    if rc != 0 or not isinstance(data, dict):
        print(out[-4000:], file=sys.stderr)
        print("ERROR: applying the formula failed; see above, then `make demo-down`", file=sys.stderr)
        return 1
    for minion, states in data.items():
        ok = sum(1 for s in states.values() if s["result"] is True)
        changed = sum(1 for s in states.values() if s["changes"])
        print(f"    {minion}: {ok}/{len(states)} states ok, {changed} changed")
    fleet.cut_off()
    rows = []
    for minion, roles in fleet.minions.items():
        message_id = f"<{uuid.uuid4().hex}@{minion}.demo>"
        print(f"==> {minion}: Django send_mail() -> localhost:25 -> Postfix -> {fleet.spec.host}", flush=True)
        proc = fleet.send_django_mail(
            minion, to=["customer@example.org"], subject=f"Hello from {minion}", message_id=message_id,
            env_file=ENV_FILE,
        )  # fmt: skip
        msg = fleet.wait_for_message(message_id, timeout=60) if proc.returncode == 0 else None
        users = {
            e["user_sha256"]: e["user"] for e in provider.events(fleet.provider) if e["event"] == "auth" and e["ok"]
        }
        rows.append(
            {
                "minion": minion,
                "role": ",".join(roles),
                "provider": f"{fleet.spec.host}:{fleet.spec.port}",
                "tls": msg.get("tls_version", "-") if msg else "-",
                "user": users.get(msg["auth_user_sha256"], "-") if msg else "-",
                "delivered": "yes" if msg else "NO",
            }
        )
    print("\n==> demo report")
    header = f"{'minion':9} {'role':7} {'provider host':24} {'TLS':8} {'auth user':10} delivered"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['minion']:9} {r['role']:7} {r['provider']:24} {r['tls']:8} {r['user']:10} {r['delivered']}")
    print(f"\n==> done in {time.monotonic() - started:.0f} s; the fleet is still running:")
    print(f"    docker exec -it {fleet.master.name} salt '*' postfix_relay.settings")
    print("    make demo-down   # removes it")
    return 0 if all(r["delivered"] == "yes" for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
