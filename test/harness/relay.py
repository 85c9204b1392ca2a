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
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import images, provider
from harness.formula import REPO
from harness.kitchen import KITCHEN_ROOT, PROVIDER_ADDR, Instance, Run, salt_call

PILLAR_FILE = f"{KITCHEN_ROOT}/srv/pillar/postfix_relay.sls"
SUBMIT = "/opt/faults/submit.py"
WATCHED = ("/etc/postfix/main.cf", "/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db")
# What Postfix's bounce(8) notices look like: null envelope sender, MAILER-DAEMON, these subjects.
BOUNCE_SUBJECT = re.compile(
    r"^(Undelivered Mail Returned to Sender|Delayed Mail|Mail Delivery Status Report"
    r"|Successful Mail Delivery Report|Postmaster (Copy|Warning))",
    re.IGNORECASE,
)
BOUNCE_SOURCES = ("journal", "journal_dsn", "provider", "queue", "mailbox")


@dataclass(frozen=True)
class Bounces:
    """Bounces counted from every place one can show up, relative to a baseline.

    ``journal``: Postfix log lines ``status=bounced`` (bounced recipients);
    ``journal_dsn``: queue ids with ``from=<>`` in the log (notices created).
    The log is a witness, not the record: journald may drop lines.  The
    sources of truth for a notice are where it can be: ``provider`` (sent
    out: a null sender, MAILER-DAEMON or a bounce subject arrived there),
    ``queue`` (waiting: a null-sender entry in ``postqueue -j``) and
    ``mailbox`` (delivered locally, e.g. to /var/mail/root for a local
    sender).  ``total`` is the largest of the log counts and the notices
    found in those three places.
    """

    sources: dict[str, int] = field(default_factory=dict)

    @property
    def notices(self) -> int:
        return self.sources["provider"] + self.sources["queue"] + self.sources["mailbox"]

    @property
    def total(self) -> int:
        return max(self.sources["journal"], self.sources["journal_dsn"], self.notices)

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.sources.items())


class Relay:
    """The converged instance, its provider, and the operations the scenarios need."""

    def __init__(self, run: Run, inst: Instance, container):
        self.run, self.inst, self.c = run, inst, container
        self.spec = inst.spec
        self.last_states: dict | None = None
        # Raw bounce counts that bounces() subtracts (set after a deliberate bounce).
        self.bounce_baseline: dict[str, int] = dict.fromkeys(BOUNCE_SOURCES, 0)

    # -- Salt -----------------------------------------------------------------
    def apply(self, *args: str, sls: str = "postfix_relay", out: str = "json") -> tuple[int, str]:
        """state.apply on the instance; the output is also kept there, so the secret search covers it."""
        proc = self.c.exec(*salt_call("state.apply", sls, *args, out=out), check=False, timeout=600)
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
    def submit(self, prefix: str, count: int, clients: int = 1, sender: str | None = None) -> dict:
        """``sender`` (envelope and From:): e.g. root@localhost, so that a bounce would land in /var/mail/root."""
        extra = [f"--sender={sender}"] if sender else []
        proc = self.c.exec("python3", SUBMIT, f"--prefix={prefix}", f"--count={count}", f"--clients={clients}", *extra)
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

    def bounces(self) -> Bounces:
        """Bounces since the baseline, from the log and from where a notice can be (see ``Bounces``)."""
        raw = self.bounce_sources()
        return Bounces({k: raw[k] - self.bounce_baseline[k] for k in BOUNCE_SOURCES})

    def bounce_sources(self) -> dict[str, int]:
        """Raw counts, not relative to the baseline."""
        log = self.journal()
        return {
            "journal": log.count("status=bounced"),
            "journal_dsn": len(set(re.findall(r"(?m)\b([0-9A-Za-z]+): from=<>,", log))),
            "provider": self._provider_notices(),
            "queue": sum(1 for e in self.queue() if e.get("sender", "") in ("", "MAILER-DAEMON")),
            "mailbox": self._mailbox_notices(),
        }

    def _provider_notices(self) -> int:
        """Messages the provider received (or refused at DATA) that are delivery notices."""
        out = self.c.sh(
            f'grep -E \'"event": "(message|refused)"\' {provider.EVENTS} '
            '| grep -iE \'"mail_from": "(<>)?"|MAILER-DAEMON|"subject": "[^"]*(Mail|Postmaster)\' || true'
        ).stdout
        found = 0
        for line in out.splitlines():
            event = json.loads(line)
            if (
                event.get("mail_from") in ("", "<>")
                or "MAILER-DAEMON" in event.get("from_header", "").upper()
                or BOUNCE_SUBJECT.match(event.get("subject", ""))
            ):
                found += 1
        return found

    def _mailbox_notices(self) -> int:
        """Delivery notices in the local mailboxes (/var/mail/*), mbox format."""
        text = self.c.sh("cat /var/mail/* 2>/dev/null || true").stdout
        found = 0
        for message in re.split(r"(?m)^From ", text)[1:]:
            envelope_sender = message.split(None, 1)[0] if message.strip() else ""
            headers = message.split("\n\n", 1)[0]
            subject = re.search(r"(?mi)^Subject: *(.*)$", headers)
            if (
                envelope_sender.upper() == "MAILER-DAEMON"
                or "report-type=delivery-status" in headers.lower()
                or (subject and BOUNCE_SUBJECT.match(subject.group(1)))
            ):
                found += 1
        return found

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
