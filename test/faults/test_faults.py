"""Faults, security and bad input on one converged relay: nothing lost, nothing leaked.

One Debian 12 instance (converged twice like the kitchen matrix, then cut off
every network) with the fake provider inside it.  Each fault scenario submits
a batch to 127.0.0.1:25, checks that Postfix deferred it (never bounced) while
the fault lasted, repairs the fault and checks that exactly that batch, by
Message-ID, reached the provider once.  Bounces are counted from the log and
from every place a bounce notice can be (the provider, the queue, the local
mailboxes: ``Relay.bounces``); the first test makes Postfix really bounce, to
prove that count sees one.  The tests run in file order; a table of the
figures is printed at the end (and kept in .cache/faults/results.json).
"""

from __future__ import annotations

import collections
import json
import os
import time

import pytest
import yaml
from harness import provider
from harness.badpillars import BAD_PILLARS
from harness.formula import REPO
from harness.kitchen import KITCHEN_ROOT, PROVIDER_ADDR, salt_call
from harness.pki import TestCA
from harness.relay import PILLAR_FILE, Bounces, converged_relay

BATCH = int(os.environ.get("PFR_FAULT_BATCH", "40"))
FLOW = int(os.environ.get("PFR_FLOW_N", "2000"))
BATCH_SCRIPT = "/opt/faults/badpillar_batch.py"
RESULTS: list[dict] = []


COLUMNS = ("scenario", "in", "arrived", "lost", "duplicated", "bounced", "bounced_by_source")


def record(scenario: str, submitted: dict, seen: collections.Counter, bounced: Bounces, **extra) -> None:
    dup = sum(n - 1 for n in seen.values() if n > 1)
    RESULTS.append(
        {
            "scenario": scenario,
            "in": submitted["accepted"],
            "arrived": len(seen),
            "lost": submitted["accepted"] - len(seen),
            "duplicated": dup,
            "bounced": bounced.total,
            "bounced_by_source": bounced.sources,
            **extra,
        }
    )


def assert_no_bounce(relay) -> Bounces:
    bounced = relay.bounces()
    assert bounced.total == 0, f"bounced: {bounced}"
    return bounced


@pytest.fixture(scope="module")
def relay():
    # gnupg: for the encrypted-pillar test.
    with converged_relay(
        "faults", "test/salt/pillar/faults.sls", REPO / "test" / "faults" / "provider.yml", extra_packages=("gnupg",)
    ) as relay:
        try:
            yield relay
        finally:
            _print_results()


def _print_results() -> None:
    if not RESULTS:
        return
    out = REPO / ".cache" / "faults"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(RESULTS, indent=1))
    print("\n==> faults: messages in / arrived / lost / duplicated / bounced [bounces by source] extra")
    for r in RESULTS:
        extra = {k: v for k, v in r.items() if k not in COLUMNS}
        sources = " ".join(f"{k} {v}" for k, v in r.get("bounced_by_source", {}).items())
        print(
            f"{r['scenario']:34} {r['in']:>6} {r['arrived']:>8} {r['lost']:>5} {r['duplicated']:>5} "
            f"{r['bounced']:>5}  [{sources or 'not counted'}]  {extra or ''}"
        )


def _assert_exactly(submitted: dict, seen: collections.Counter, count: int) -> None:
    assert submitted["accepted"] == submitted["unique"] == count, submitted
    assert len(seen) == count, f"{count - len(seen)} message(s) lost"
    assert all(n == 1 for n in seen.values()), {k: n for k, n in seen.items() if n > 1}


# --------------------------------------------------------------------------
# The bounce count is not blind: real bounces are seen where they land
# --------------------------------------------------------------------------
PROBE = "From: {sender}\nTo: nosuchuser@localhost\nSubject: bounce probe\nMessage-ID: <bounceprobe-{n}@postfix-relay.test>\n\nNo such local user: local(8) bounces this.\n"  # fmt: skip


def _wait_bounces(relay, done, timeout: float = 30) -> Bounces:
    deadline = time.monotonic() + timeout
    bounced = relay.bounces()
    while not done(bounced) and time.monotonic() < deadline:
        time.sleep(0.5)
        bounced = relay.bounces()
    return bounced


def test_bounce_count_sees_real_bounces(relay):
    """With soft_bounce off for a moment, Postfix bounces two messages for an unknown local user.

    The notice to root@localhost must be found in /var/mail/root; the notice to
    an outside sender in the queue while the provider is down, then at the
    provider: each in a place where a bounce really is, not only in the log.
    The scenarios after this one count from what it left (the baseline).
    """
    assert_no_bounce(relay)
    rc, out = relay.apply(f"pillar={json.dumps({'postfix_relay': {'main_cf': {'soft_bounce': 'no'}}})}")
    assert rc == 0, out
    provider_up = False
    try:
        assert relay.c.exec("postconf", "-h", "soft_bounce").stdout.strip() == "no"
        provider.stop(relay.c)
        for n, sender in enumerate(("root@localhost", "app@web.example.com")):
            probe = PROBE.format(sender=sender, n=n)
            relay.c.exec("/usr/sbin/sendmail", "-i", "-f", sender, "nosuchuser@localhost", input=probe)
        waiting = _wait_bounces(relay, lambda b: b.sources["mailbox"] >= 1 and b.sources["queue"] >= 1)
        assert (waiting.sources["mailbox"], waiting.sources["queue"], waiting.sources["provider"]) == (1, 1, 0), waiting
        provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR)
        provider_up = True
        relay.c.exec("postqueue", "-f")
        sent = _wait_bounces(relay, lambda b: b.sources["provider"] >= 1 and b.sources["queue"] == 0)
        assert (sent.sources["mailbox"], sent.sources["queue"], sent.sources["provider"]) == (1, 0, 1), sent
        assert sent.notices == sent.total == 2, sent
    finally:
        if not provider_up:
            provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR)
        rc, out = relay.apply()  # the suite pillar: soft_bounce = yes again
    assert rc == 0, out
    assert relay.c.exec("postconf", "-h", "soft_bounce").stdout.strip() == "yes"
    RESULTS.append({"scenario": "forced bounces (soft_bounce=no)", "in": 2, "arrived": 0, "lost": 0, "duplicated": 0,
                    "bounced": sent.total, "bounced_by_source": sent.sources})  # fmt: skip
    relay.bounce_baseline = relay.bounce_sources()
    assert_no_bounce(relay)


# --------------------------------------------------------------------------
# Faults: N in, N arrive, none bounced
# --------------------------------------------------------------------------
def test_provider_down_then_back_normal_retry(relay):
    """No flush: the formula's retry schedule (60 s backoff, 60 s queue scan) brings the batch out."""
    provider.stop(relay.c)
    submitted = relay.submit("down", BATCH)
    relay.wait_deferred(BATCH)
    assert_no_bounce(relay)
    assert "Connection refused" in relay.journal()
    back = time.monotonic()
    provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR)
    seen = relay.wait_arrived("down", BATCH, timeout=200)
    record("provider down, back (retry)", submitted, seen, relay.bounces(), retry_s=round(time.monotonic() - back))
    _assert_exactly(submitted, seen, BATCH)
    assert_no_bounce(relay)


def test_wrong_credentials_then_fixed_pillar_flushes(relay):
    """A local sender (root@localhost): a bounce would land in /var/mail/root, which the count reads."""
    rc, out = relay.apply(f"pillar={json.dumps({'postfix_relay': {'password': 'Wrong-Key-0000'}})}")
    assert rc == 0, out
    mark = len(provider.events(relay.c))
    submitted = relay.submit("badauth", BATCH, sender="root@localhost")
    relay.wait_deferred(BATCH)
    auths = [e for e in provider.events(relay.c)[mark:] if e["event"] == "auth"]
    assert auths and not any(a["ok"] for a in auths)
    assert "535" in relay.journal()
    assert_no_bounce(relay)
    fixed = time.monotonic()
    rc, out = relay.apply()  # the suite pillar again: map rebuilt, Postfix reloaded, queue flushed
    assert rc == 0, out
    assert "postfix_relay-service-cmd-run-flush" in relay.changed()
    seen = relay.wait_arrived("badauth", BATCH, timeout=40)
    took = round(time.monotonic() - fixed)
    record(
        "wrong credentials, pillar fixed", submitted, seen, relay.bounces(), after_apply_s=took, sender="root@localhost"
    )
    _assert_exactly(submitted, seen, BATCH)
    assert took < 40, "arrived only by the normal retry: the flush did not happen"
    senders = {e["mail_from"] for e in provider.events(relay.c)[mark:] if e["event"] == "message"}
    assert senders == {"root@localhost"}, senders
    assert_no_bounce(relay)


def _fault_then_repair(relay, name: str, prefix: str, expect: tuple[str, ...], **fault) -> list[str]:
    """Deploy a faulty provider, submit a batch, check it was deferred because of the fault, repair.

    ``expect``: the commands the faulty provider must have received while the
    batch was deferred, so that a scenario cannot pass because Postfix never
    tried (a provider that did not listen would defer the batch as well).
    """
    provider.deploy(relay.c, relay.run.ca, **fault)
    fault_mark = len(provider.events(relay.c))
    submitted = relay.submit(prefix, BATCH)
    relay.wait_deferred(BATCH)
    verbs = relay.commands_since(fault_mark)
    missing = [verb for verb in expect if verb not in verbs]
    assert not missing, f"the faulty provider never got {missing} (got {verbs}): Postfix did not try it"
    assert_no_bounce(relay)
    provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR)
    relay.c.exec("postqueue", "-f")
    seen = relay.wait_arrived(prefix, BATCH, timeout=60)
    bounced = relay.bounces()
    record(name, submitted, seen, bounced, auth_during_fault=verbs.count("AUTH"), ehlo_during_fault=verbs.count("EHLO"))
    _assert_exactly(submitted, seen, BATCH)
    assert bounced.total == 0, f"bounced: {bounced}"
    return verbs


def test_no_starttls_offered_no_plaintext_auth(relay):
    plain = provider.ProviderSpec(relay.spec.host, relay.spec.port, "none", relay.spec.username, relay.spec.password)
    verbs = _fault_then_repair(
        relay, "no STARTTLS offered", "nostarttls", ("EHLO",), spec=plain, listen=PROVIDER_ADDR
    )  # fmt: skip
    assert "EHLO" in verbs
    assert "AUTH" not in verbs and "MAIL" not in verbs, verbs
    assert "TLS is required, but was not offered" in relay.journal()


def test_certificate_for_wrong_name_no_auth(relay):
    verbs = _fault_then_repair(
        relay, "certificate for another name", "wrongname", ("EHLO", "STARTTLS"), spec=relay.spec, listen=PROVIDER_ADDR,
        cert_for=("smtp.wrong-name.example.net",),
    )  # fmt: skip
    assert "STARTTLS" in verbs and "AUTH" not in verbs, verbs


def test_certificate_from_untrusted_ca_no_auth(relay):
    verbs = _fault_then_repair(
        relay, "certificate from an untrusted CA", "untrusted", ("EHLO", "STARTTLS"), spec=relay.spec,
        listen=PROVIDER_ADDR,
        signing_ca=TestCA("not trusted by the minion"),
    )  # fmt: skip
    assert "STARTTLS" in verbs and "AUTH" not in verbs, verbs
    assert "certificate verification failed" in relay.journal() or "not verified" in relay.journal()


def test_postfix_restarted_mid_batch(relay):
    """A hard restart loses nothing; SMTP is at-least-once across it.

    systemd stops Postfix by killing its processes: a delivery killed after the
    provider answered "250" but before Postfix read it is sent again.  Such
    duplicates are bounded by the deliveries in flight (the destination
    concurrency, 10); the formula itself never restarts for a config change
    it can reload (see the next test: zero duplicates).
    """
    count = 5 * BATCH
    relay.submit_background("restart", count, clients=4)
    deadline = time.monotonic() + 60
    while len(relay.arrived("restart")) < count // 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    relay.c.exec("systemctl", "restart", "postfix")
    submitted = relay.wait_submitted("restart")
    seen = relay.wait_arrived("restart", count, timeout=120)
    record("postfix restarted mid-batch", submitted, seen, relay.bounces(), client_retries=submitted["retries"])
    assert submitted["accepted"] == submitted["unique"] == count, submitted
    assert len(seen) == count, f"{count - len(seen)} message(s) lost"
    assert sum(n - 1 for n in seen.values()) <= 10, "more duplicates than deliveries in flight"
    assert_no_bounce(relay)


def test_state_reapplied_with_changed_setting_while_mail_flows(relay):
    relay.submit_background("flow", FLOW, clients=4)
    deadline = time.monotonic() + 120
    while len(relay.arrived("flow")) < FLOW // 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    at_start = len(relay.arrived("flow"))
    rc, out = relay.apply(f"pillar={json.dumps({'postfix_relay': {'main_cf': {'maximal_backoff_time': '11m'}}})}")
    assert rc == 0, out
    at_end = len(relay.arrived("flow"))
    assert {"postfix_relay-config-file-managed-main_cf", "postfix_relay-service-running-postfix"} <= relay.changed()
    submitted = relay.wait_submitted("flow")
    seen = relay.wait_arrived("flow", FLOW, timeout=900)
    record(
        f"re-apply during a {FLOW}-message flow", submitted, seen, relay.bounces(),
        submit_s=submitted["seconds"], arrived_when_apply_began=at_start, arrived_when_apply_ended=at_end,
    )  # fmt: skip
    assert at_start < FLOW, "the flow was over before the re-apply began"
    _assert_exactly(submitted, seen, FLOW)
    assert_no_bounce(relay)
    rc, out = relay.apply()
    assert rc == 0, out


# --------------------------------------------------------------------------
# Bad pillar on a converged minion: refused, nothing changed, mail still flows
# --------------------------------------------------------------------------
def test_every_bad_pillar_changes_nothing(relay):
    """Every case of harness.badpillars through the real salt-call on the converged minion
    (driven from inside it: harness/badpillar_batch.py): refused with its message, and
    nothing under /etc/postfix, /etc/aliases* or the master's PID changed."""
    before = relay.watched_state()
    cases = [
        {"id": case_id, "pillar": "{}\n" if pillar is None else yaml.safe_dump({"postfix_relay": pillar})}
        for case_id, pillar, _fragments in BAD_PILLARS
    ]
    relay.c.put(REPO / "test" / "harness" / "badpillar_batch.py", BATCH_SCRIPT)
    argv = json.dumps(salt_call("state.apply", "postfix_relay"))
    proc = relay.c.exec("python3", BATCH_SCRIPT, PILLAR_FILE, argv, input=json.dumps(cases), timeout=1800)
    rows = {row["id"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert list(rows) == [c["id"] for c in cases], "the batch did not run every case"
    refused = []
    for case_id, _pillar, fragments in BAD_PILLARS:
        rc, out, changed = rows[case_id]["rc"], rows[case_id]["output"], rows[case_id]["changed"]
        assert rc != 0, f"{case_id}: accepted"
        missing = [f for f in fragments if f not in out]
        assert not missing, f"{case_id}: {missing} not in\n{out[-1500:]}"
        assert changed == [], f"{case_id} changed the minion: {changed}"
        refused.append(case_id)
    assert relay.watched_state() == before
    relay.set_pillar(relay.suite_pillar())
    rc, out = relay.apply()
    assert rc == 0, out
    assert relay.changed() == set(), "the refused runs left something to change"
    assert relay.watched_state() == before
    submitted = relay.submit("afterbad", 5)
    seen = relay.wait_arrived("afterbad", 5, timeout=60)
    _assert_exactly(submitted, seen, 5)
    bounced = assert_no_bounce(relay)
    RESULTS.append({"scenario": "bad pillars tried / refused", "in": len(BAD_PILLARS), "arrived": len(refused),
                    "lost": 0, "duplicated": 0, "bounced": bounced.total, "bounced_by_source": bounced.sources})  # fmt: skip
    assert len(refused) == len(BAD_PILLARS) >= 25


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------
SASL_FILES = ["/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"]


def test_rotation_in_every_output_format_leaves_old_secret_nowhere(relay):
    old = relay.spec.password
    new = "SG.rotated-Qp7.Distinctive-Secret-9c1d"
    provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR, accept=(("apikey", old), ("apikey", new)))
    relay.set_pillar({**relay.suite_pillar(), "password": new})
    outputs = [relay.apply("-l", "info", out="highstate")[1], relay.apply(out="json")[1]]
    outputs.append(relay.apply("-l", "debug", out="yaml")[1])
    for text in outputs:
        assert new not in text and old not in text
    assert relay.secret_locations(old) == []
    assert relay.secret_locations(new) == sorted([*SASL_FILES, PILLAR_FILE])
    for path in SASL_FILES:
        assert relay.c.exec("stat", "-c", "%a %U %G", path).stdout.split() == ["600", "root", "root"]
    submitted = relay.submit("rotated", 3)
    _assert_exactly(submitted, relay.wait_arrived("rotated", 3, timeout=60), 3)


def test_failing_converge_and_clean_leak_nothing(relay):
    new = "SG.rotated-Qp7.Distinctive-Secret-9c1d"
    relay.set_pillar({**relay.suite_pillar(), "password": new, "main_cf": {"no_such_parameter": "1"}})
    rc, out = relay.apply("-l", "info", out="highstate")
    assert rc != 0 and "unused parameter: no_such_parameter" in out
    assert new not in out
    rc, out = relay.apply("-l", "info", sls="postfix_relay.clean", out="highstate")
    assert rc == 0, out
    assert new not in out
    assert relay.secret_locations(new) == [PILLAR_FILE]
    relay.set_pillar({**relay.suite_pillar(), "password": new})
    rc, out = relay.apply()
    assert rc == 0, out
    assert relay.secret_locations(new) == sorted([*SASL_FILES, PILLAR_FILE])


def test_encrypted_pillar_gpg(relay):
    """The seed keeps secrets encrypted: a #!yaml|gpg pillar converges and delivers."""
    secret = "SG.gpg-only-Hv3.Distinctive-Secret-71ee"
    keydir = f"{KITCHEN_ROOT}/etc/salt/gpgkeys"  # gpg_keydir defaults to <config dir>/gpgkeys
    relay.c.sh(
        f"mkdir -p {keydir} && chmod 700 {keydir} && gpg --homedir {keydir} --batch --passphrase '' "
        "--quick-gen-key 'postfix_relay test <salt@example.test>' default default never 2>/dev/null"
    )
    armored = relay.c.exec(
        "gpg", "--homedir", keydir, "--batch", "--armor", "--trust-model", "always", "--encrypt",
        "-r", "salt@example.test", input=secret,
    ).stdout  # fmt: skip
    body = "\n".join("    " + line for line in armored.strip().splitlines())
    pillar = yaml.safe_dump({"postfix_relay": {k: v for k, v in relay.suite_pillar().items() if k != "password"}})
    relay.set_pillar(f"#!yaml|gpg\n{pillar}  password: |\n{body}\n")
    provider.deploy(relay.c, relay.run.ca, relay.spec, listen=PROVIDER_ADDR, accept=(("apikey", secret),))
    rc, out = relay.apply()
    assert rc == 0, out
    assert secret not in out
    key = f"[{relay.spec.host}]:{relay.spec.port}"
    assert relay.c.exec("postmap", "-q", key, "hash:/etc/postfix/sasl_passwd").stdout.strip() == f"apikey:{secret}"
    submitted = relay.submit("gpg", 3)
    _assert_exactly(submitted, relay.wait_arrived("gpg", 3, timeout=60), 3)
    # Plain text only in the sasl files: the pillar source holds ciphertext.
    assert relay.secret_locations(secret) == SASL_FILES
