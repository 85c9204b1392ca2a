"""One converged relay instance with the fake provider inside it, for faults and benchmarks.

Created and converged twice exactly like a kitchen instance, then cut off
every network; the fake provider listens on 127.0.0.2 under the provider's
real name.  ``Relay`` wraps what scenarios do to it: apply the state, submit
batches, read the provider's log and Postfix's queue.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from harness import images, provider
from harness.formula import REPO
from harness.kitchen import KITCHEN_ROOT, PROVIDER_ADDR, Instance, Run

PILLAR_FILE = f"{KITCHEN_ROOT}/srv/pillar/postfix_relay.sls"
SALT_CALL = ["salt-call", "--local", f"--config-dir={KITCHEN_ROOT}/etc/salt", "--retcode-passthrough"]
SUBMIT = "/opt/faults/submit.py"
WATCHED = ("/etc/postfix/main.cf", "/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db")


class Relay:
    """The converged instance, its provider, and the operations the scenarios need."""

    def __init__(self, run: Run, inst: Instance, container):
        self.run, self.inst, self.c = run, inst, container
        self.spec = inst.spec
        self.last_states: dict | None = None

    # -- Salt -----------------------------------------------------------------
    def apply(self, *args: str, sls: str = "postfix_relay", out: str = "json") -> tuple[int, str]:
        """state.apply on the instance; the output is also kept there, so the secret search covers it."""
        proc = self.c.exec(*SALT_CALL, f"--out={out}", "state.apply", sls, *args, check=False, timeout=600)
        text = proc.stdout + proc.stderr
        self.c.write(f"{KITCHEN_ROOT}/log/apply-{time.monotonic_ns()}.out", text, mode="0600")
        self.last_states = None
        if out == "json":
            with contextlib.suppress(ValueError, KeyError):
                self.last_states = json.loads(proc.stdout)["local"]
        return proc.returncode, text

    def changed(self) -> set[str]:
        """State ids that reported changes in the last JSON apply."""
        assert isinstance(self.last_states, dict), self.last_states
        return {r["__id__"] for r in self.last_states.values() if r.get("changes")}

    def set_pillar(self, body: dict | str) -> None:
        text = body if isinstance(body, str) else yaml.safe_dump({"postfix_relay": body})
        self.c.write(PILLAR_FILE, text, mode="0600")

    def suite_pillar(self) -> dict:
        return yaml.safe_load((REPO / self.inst.pillars_from_files["postfix_relay.sls"]).read_text())["postfix_relay"]

    # -- mail -----------------------------------------------------------------
    def submit(self, prefix: str, count: int, clients: int = 1) -> dict:
        proc = self.c.exec("python3", SUBMIT, f"--prefix={prefix}", f"--count={count}", f"--clients={clients}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def submit_background(self, prefix: str, count: int, clients: int = 4) -> None:
        self.c.sh(
            f"mkdir -p /var/lib/faults && systemd-run --unit=submit-{prefix} --collect "
            f"sh -c 'python3 {SUBMIT} --prefix={prefix} --count={count} --clients={clients} "
            f"> /var/lib/faults/{prefix}.json'"
        )

    def wait_submitted(self, prefix: str, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.c.exec("cat", f"/var/lib/faults/{prefix}.json", check=False).stdout.strip()
            if out:
                return json.loads(out)
            time.sleep(1)
        raise AssertionError(f"submitter {prefix} did not finish")

    def arrived(self, prefix: str) -> collections.Counter:
        out = self.c.sh(f"grep -F '\"event\": \"message\"' {provider.EVENTS} | grep -F '<{prefix}-' || true").stdout
        return collections.Counter(json.loads(line)["message_id"] for line in out.splitlines() if line.strip())

    def wait_arrived(self, prefix: str, count: int, timeout: float) -> collections.Counter:
        deadline = time.monotonic() + timeout
        seen = self.arrived(prefix)
        while time.monotonic() < deadline and len(seen) < count:
            time.sleep(1)
            seen = self.arrived(prefix)
        return seen

    def queue(self) -> list[dict]:
        out = self.c.exec("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_deferred(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        entries: list[dict] = []
        while time.monotonic() < deadline:
            entries = self.queue()
            if sum(1 for e in entries if e["queue_name"] == "deferred") >= count:
                return entries
            time.sleep(0.5)
        raise AssertionError(f"expected {count} deferred, queue: {[e['queue_name'] for e in entries]}")

    def journal(self) -> str:
        return self.c.exec("journalctl", "-u", "postfix*", "--no-pager", "-o", "cat").stdout

    def bounces(self) -> int:
        log = self.journal()
        return log.count("status=bounced") + log.count("from=<>,")

    def commands_since(self, mark: int) -> list[str]:
        return [e["verb"] for e in provider.events(self.c)[mark:] if e["event"] == "command"]

    def watched_state(self) -> dict:
        sums = self.c.exec("sha256sum", *WATCHED).stdout
        return {"sha256": sums, "master_pid": self.c.exec("cat", "/var/spool/postfix/pid/master.pid").stdout.strip()}

    def secret_locations(self, secret: str) -> list[str]:
        out = self.c.exec(
            "grep", "-rlF", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", "-e", secret, "/",
            check=False, timeout=300,
        )  # fmt: skip
        return sorted(out.stdout.split())


@contextlib.contextmanager
def converged_relay(
    name: str, pillar: str, provider_yml: Path, platform: str = "debian-12", extra_packages: tuple[str, ...] = ()
) -> Iterator[Relay]:
    """Create, converge twice (the second must change nothing), cut off, start the provider."""
    run = Run()
    inst = Instance(
        name, platform, {"postfix_relay.sls": pillar}, {"top.sls": {"base": {"*": ["postfix_relay"]}}},
        provider_yml=provider_yml,
    )  # fmt: skip
    container = run.create(inst, images.build(platform))
    try:
        if extra_packages:  # while the instance still has a network
            container.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {' '.join(extra_packages)} >/dev/null")
        inst.results["converge1"] = run.converge(inst, container, 1)
        inst.results["converge2"] = run.converge(inst, container, 2)
        assert inst.results["converge2"]["changed"] == [], "second converge changed something"
        container.disconnect_all_networks()
        provider.deploy(container, run.ca, inst.spec, listen=PROVIDER_ADDR)
        container.put(REPO / "test" / "harness" / "submit.py", SUBMIT)
        yield Relay(run, inst, container)
    finally:
        container.remove()
