"""``make bench``: relay performance, measured side by side in one run, printed as ratios.

On one converged instance and one fake provider (inside it, on 127.0.0.2):

  direct    the same clients talking straight to the provider (STARTTLS + AUTH,
            one connection per client): the limit
  ours      N messages to 127.0.0.1:25 relayed with the formula's settings
            (TLS connection reuse through tlsproxy)
  baseline  the same, with the configuration SendGrid's Postfix guide gives
            (TLS "encrypt", no connection reuse)

P1 messages/s until the last one arrived; P2 TLS handshakes and AUTHs per 1,000
messages; P3/P4 first converge and a no-op re-converge; P5 converge time of
1, 2, 4 and 8 minions from one master.  Prints a table and writes JSON.

    python -m harness.bench [--messages 2000] [--clients 4] [--concurrency 10] [--fleet 1,2,4,8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness import provider
from harness.fleet import Fleet
from harness.formula import REPO
from harness.relay import SUBMIT, Relay, converged_relay

# SendGrid's Postfix guide, as our pillar expresses it: TLS "encrypt" (no
# certificate check), none of our connection reuse, Postfix's concurrency (20).
BASELINE = {
    "tls_verify": False,
    "concurrency": 20,
    "main_cf": {"smtp_tls_connection_reuse": "no", "smtp_connection_cache_destinations": None},
}


PROBE = "/opt/faults/cpuprobe.py"


def _now(relay: Relay) -> float:
    return float(relay.c.exec("date", "+%s.%N").stdout)


def _apply_override(relay: Relay, body: dict) -> bool:
    """Apply the state with ``body`` merged over the bench pillar; print Salt's words when it fails."""
    rc, out = relay.apply(f"pillar={json.dumps({'postfix_relay': body})}")
    if rc != 0:
        print(out[-3000:], file=sys.stderr)
    return rc == 0


def _cpu(relay: Relay) -> dict[str, float]:
    return json.loads(relay.c.exec("python3", PROBE).stdout)


def cpu_profile(before: dict, after: dict, submitter_seconds: float, count: int) -> dict:
    """CPU milliseconds per message by component, and how busy the machine was: where the time goes."""
    per = {key: (after[key] - before.get(key, 0)) * 1000 / count for key in after}
    profile = {
        "postfix": per["postfix"],
        "journald": per["journald"],
        "provider": per["provider"],
        "submitter": submitter_seconds * 1000 / count,
        "machine": per["machine_busy"],
    }
    profile["rest"] = profile["machine"] - sum(profile[k] for k in ("postfix", "journald", "provider", "submitter"))
    out: dict = {k: round(v, 3) for k, v in profile.items()}
    out["postfix_daemons"] = {
        k.split(":", 1)[1]: round(v, 3)
        for k, v in sorted(per.items(), key=lambda kv: -kv[1])
        if k.startswith("postfix:") and v >= 0.005
    }
    out["machine_busy_percent"] = round(100 * per["machine_busy"] / per["machine_total"], 1)
    return out


def measure(relay: Relay, label: str, count: int, clients: int, direct: bool = False) -> dict:
    prefix = f"{label}-{int(time.time())}"
    cpu_before = _cpu(relay)
    start = _now(relay)
    mark = len(provider.events(relay.c))
    cmd = ["python3", SUBMIT, f"--prefix={prefix}", f"--count={count}", f"--clients={clients}"]
    if direct:
        spec = relay.spec
        cmd += [f"--server={spec.host}:{spec.port}", "--starttls", f"--login={spec.username}"]
        proc = relay.c.exec("env", f"SUBMIT_PASSWORD={spec.password}", *cmd, timeout=1800)
    else:
        proc = relay.c.exec(*cmd, timeout=1800)
    submitted = json.loads(proc.stdout.strip().splitlines()[-1])
    seen = relay.wait_arrived(prefix, count, timeout=1800)
    cpu_after = _cpu(relay)
    window = provider.events(relay.c)[mark:]
    arrivals = [e["ts"] for e in window if e["event"] == "message" and e["message_id"].startswith(f"<{prefix}-")]
    elapsed = max(arrivals) - start
    handshakes = sum(1 for e in window if e["event"] == "command" and e["verb"] == "STARTTLS")
    auths = sum(1 for e in window if e["event"] == "auth")
    result = {
        "label": label,
        "messages": count,
        "arrived": len(seen),
        "duplicated": sum(n - 1 for n in seen.values()),
        "seconds": round(elapsed, 2),
        "per_second": round(count / elapsed, 1),
        "submit_seconds": submitted["seconds"],
        "handshakes_per_1000": round(handshakes * 1000 / count, 1),
        "auths_per_1000": round(auths * 1000 / count, 1),
        "cpu_ms_per_message": cpu_profile(cpu_before, cpu_after, submitted["cpu_seconds"], count),
    }
    print(
        f"  {label:9} {result['per_second']:>8} msg/s  {result['handshakes_per_1000']:>7} TLS handshakes "
        f"and {result['auths_per_1000']:>7} AUTHs per 1,000  ({count} messages, {result['seconds']} s)",
        flush=True,
    )
    cpu = result["cpu_ms_per_message"]
    daemons = ", ".join(f"{k} {v}" for k, v in list(cpu["postfix_daemons"].items())[:6])
    print(
        f"  {'':9} CPU ms per message: postfix {cpu['postfix']} ({daemons}), journald {cpu['journald']}, "
        f"provider {cpu['provider']}, submitter {cpu['submitter']}, machine {cpu['machine']} "
        f"({cpu['machine_busy_percent']}% busy)",
        flush=True,
    )
    return result


def fleet_converge(sizes: list[int]) -> list[dict]:
    rows = []
    for size in sizes:
        fleet = Fleet(name=f"bench{size}", minions={f"m{i}": ["web"] for i in range(1, size + 1)}, progress=False)
        fleet.up()
        try:
            started = time.monotonic()
            rc, data, out = fleet.salt("-G", "roles:web", "state.apply", "postfix_relay", timeout=1800)
            seconds = time.monotonic() - started
            ok = rc == 0 and isinstance(data, dict) and len(data) == size
            if not ok:
                print(out[-2000:], file=sys.stderr)
            rows.append({"minions": size, "seconds": round(seconds, 1), "ok": ok})
            print(f"  P5 {size} minion(s): first converge from the master in {seconds:.1f} s", flush=True)
        finally:
            fleet.down()
    base = rows[0]["seconds"] if rows else 1
    for row in rows:
        row["ratio_to_1"] = round(row["seconds"] / base, 2)
    return rows


def print_profile(results: dict) -> None:
    """Where the time goes: CPU per message by component, and the rate the CPU alone would allow."""
    cores = results["cores"]
    print(f"\n==> where the time goes: CPU ms per message ({cores} cores shared by everything below)")
    print(
        f"  {'':9} {'postfix':>8} {'journald':>8} {'provider':>8} {'clients':>8} {'rest':>6} {'total':>6} {'busy':>5}  cap"
    )
    for label in ("direct", "ours", "baseline"):
        cpu = results[label]["cpu_ms_per_message"]
        cap = cores * 1000 / cpu["machine"] if cpu["machine"] else float("inf")
        results[label]["cpu_bound_cap_per_second"] = round(cap)
        print(
            f"  {label:9} {cpu['postfix']:>8} {cpu['journald']:>8} {cpu['provider']:>8} {cpu['submitter']:>8} "
            f"{cpu['rest']:>6.2f} {cpu['machine']:>6.2f} {cpu['machine_busy_percent']:>4.0f}%  {cap:.0f} msg/s"
        )
    print(
        "  cap = cores / total: the rate at which this machine's CPU is used up; a run near 100% busy is\n"
        "  CPU-bound, one well below it is bound by round trips (the clients and the provider are single\n"
        "  Python processes).  rest = the kernel, Docker and everything else on the machine."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="pillar concurrency for 'ours' (default: the formula's, 10)"
    )
    parser.add_argument("--fleet", default="1,2,4,8", help="minion counts for P5; empty to skip")
    parser.add_argument("--json", default=str(REPO / "bench-results.json"))
    args = parser.parse_args(argv)
    results: dict = {"messages": args.messages, "clients": args.clients}
    print(f"==> relay benchmark: {args.messages} messages, {args.clients} clients", flush=True)
    with converged_relay("bench", "test/salt/pillar/bench.sls", REPO / "test" / "faults" / "provider.yml") as relay:
        c1, c2 = relay.inst.results["converge1"], relay.inst.results["converge2"]
        results["P3_first_converge"] = {"seconds": c1["seconds"], "changes": len(c1["changed"])}
        results["P4_noop_converge"] = {"seconds": c2["seconds"], "changes": len(c2["changed"])}
        print(f"  P3 first converge {c1['seconds']} s ({len(c1['changed'])} changes)", flush=True)
        print(f"  P4 no-op re-converge {c2['seconds']} s ({len(c2['changed'])} changes)", flush=True)
        relay.c.put(REPO / "test" / "harness" / "cpuprobe.py", PROBE)
        results["cores"] = int(relay.c.exec("nproc").stdout)
        results["direct"] = measure(relay, "direct", args.messages, args.clients, direct=True)
        if args.concurrency is not None and not _apply_override(relay, {"concurrency": args.concurrency}):
            return 1
        results["ours_concurrency"] = int(relay.c.exec("postconf", "-h", "smtp_destination_concurrency_limit").stdout)
        results["ours"] = measure(relay, "ours", args.messages, args.clients)
        if not _apply_override(relay, BASELINE):
            return 1
        results["baseline"] = measure(relay, "baseline", args.messages, args.clients)
    sizes = [int(s) for s in args.fleet.split(",") if s.strip()]
    results["P5_fleet"] = fleet_converge(sizes) if sizes else []

    ours, direct, base = results["ours"], results["direct"], results["baseline"]
    results["ratios"] = {
        "P1_ours_to_direct": round(ours["per_second"] / direct["per_second"], 2),
        "P1_ours_to_baseline": round(ours["per_second"] / base["per_second"], 2),
        "P2_handshakes_per_1000_ours": ours["handshakes_per_1000"],
        "P2_handshakes_per_1000_baseline": base["handshakes_per_1000"],
        "P5_8_to_1": results["P5_fleet"][-1]["ratio_to_1"] if results["P5_fleet"] else None,
    }
    r = results["ratios"]
    print("\n==> results (targets in brackets)")
    print(f"  P1 ours / direct       {r['P1_ours_to_direct']:>6}   [>= 0.6]")
    print(f"  P1 ours / baseline     {r['P1_ours_to_baseline']:>6}   [>= 1.5]")
    print(
        f"  P2 handshakes / 1,000  {r['P2_handshakes_per_1000_ours']:>6}   [<= 10]  (baseline {base['handshakes_per_1000']})"
    )
    print(f"  P4 no-op changes       {results['P4_noop_converge']['changes']:>6}   [0]")
    if r["P5_8_to_1"] is not None:
        print(f"  P5 largest fleet / 1   {r['P5_8_to_1']:>6}   [<= 2.5 for 8]")
    print_profile(results)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    print(f"==> written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
