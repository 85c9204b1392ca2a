"""Run kitchen.yml's matrix without Test Kitchen (which cannot be installed here).

Reads the same kitchen.yml, names instances as Kitchen does (``<suite>-<platform>``)
and runs each through Kitchen's steps with kitchen-salt's salt_solo layout:

    create    systemd container (no --privileged), formula + pillar in /tmp/kitchen
    converge  salt-call --local state.apply postfix_relay   (must succeed)
    converge  again                                          (must report 0 changes)
    verify    cut the container off the network, start the fake provider inside it,
              pytest --hosts=docker://<container> test/integration/<suite>
    destroy

    python -m harness.kitchen list
    python -m harness.kitchen test [PATTERN ...] [--full] [--jobs N] [--keep]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import images, provider
from harness.docker import Container, DockerError
from harness.formula import REPO
from harness.pki import TestCA
from harness.provider import ProviderSpec

KITCHEN_ROOT = "/tmp/kitchen"


def salt_call(*args: str, out: str = "json") -> list[str]:
    """The salt-call command line of every harness step inside an instance (kitchen-salt's salt_solo layout).

    The exit code follows the states (--retcode-passthrough); JSON on one line;
    warnings only, so that a failing assertion's output stays readable.
    """
    return [
        "salt-call", "--local", f"--config-dir={KITCHEN_ROOT}/etc/salt", "--retcode-passthrough",
        f"--out={out}", "--out-indent=-1", "--log-level=warning", *args,
    ]  # fmt: skip


PROVIDER_ADDR = "127.0.0.2"
DRY_RUN_MARK = "/var/tmp/pfr-dry-run-mark"
# What a test=True run may write: Salt's cache, log and keys, the harness's own logs, kernel/journal
# files, and apt's binary package cache, which apt-cache rebuilds when it reads (seen with Salt 3007.16).
SALT_OWN = (
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/cache/salt",
    "/var/log/salt",
    "/etc/salt/pki",
    f"{KITCHEN_ROOT}/log",
    "/var/log/journal",
    "/var/cache/apt",
)
LOG_DIR = REPO / ".cache" / "kitchen"
_print_lock = threading.Lock()


def say(instance: str, msg: str) -> None:
    with _print_lock:
        print(f"[{instance}] {msg}", flush=True)


@dataclass
class Instance:
    suite: str
    platform: str
    pillars_from_files: dict[str, str]
    pillars: dict
    provider_yml: Path | None = None
    results: dict = field(default_factory=dict)
    image: str | None = None  # driver.image of the platform (kitchen.yml)
    salt_version: str = images.SALT_VERSION  # provisioner.salt_version (kitchen.yml)
    verifier: str | None = None  # verifier.command (kitchen.yml), ${KITCHEN_*} expanded per instance

    @property
    def spec(self) -> ProviderSpec:
        """What this instance's fake provider impersonates, and the credentials it accepts."""
        described = self.provider_yml or REPO / "test" / "integration" / self.suite / "provider.yml"
        return provider.load_spec(described, REPO / self.pillars_from_files["postfix_relay.sls"])

    @property
    def os_platform(self) -> str:
        """The Debian release the image is built from (kitchen.yml platforms fold in the Salt version)."""
        return images.parse_image_name(self.image)[0] if self.image else self.platform

    @property
    def name(self) -> str:
        # Kitchen::Instance.name_for: "<suite>-<platform>", '_' ',' '/' -> '-', '.' dropped
        return re.sub(r"[_,/]", "-", f"{self.suite}-{self.platform}").replace(".", "")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in (over or {}).items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: Path = REPO / "kitchen.yml") -> list[Instance]:
    """platforms x suites, honouring Kitchen's ``includes``/``excludes`` per suite."""
    data = yaml.safe_load(path.read_text())
    provisioner = data.get("provisioner", {})
    instances = []
    for suite in data["suites"]:
        for platform in data["platforms"]:
            pname = platform["name"]
            if "includes" in suite and pname not in suite["includes"]:
                continue
            if pname in suite.get("excludes", []):
                continue
            prov = _merge(_merge(provisioner, platform.get("provisioner", {})), suite.get("provisioner", {}))
            driver = _merge(_merge(data.get("driver", {}), platform.get("driver", {})), suite.get("driver", {}))
            verifier = _merge(_merge(data.get("verifier", {}), platform.get("verifier", {})), suite.get("verifier", {}))
            salt_version = str(prov.get("salt_version", images.SALT_VERSION))
            try:
                image_salt = images.parse_image_name(driver.get("image", ""))[1]
            except ValueError as exc:
                raise SystemExit(f"kitchen.yml platform {pname}: {exc}") from None
            if image_salt != salt_version:
                raise SystemExit(
                    f"kitchen.yml platform {pname}: provisioner.salt_version is {salt_version!r} but driver.image "
                    f"{driver.get('image')!r} carries Salt {image_salt}; make them agree"
                )
            instances.append(
                Instance(
                    suite["name"], pname, prov.get("pillars_from_files", {}), prov.get("pillars", {}),
                    image=driver.get("image"), verifier=verifier.get("command"), salt_version=salt_version,
                )
            )  # fmt: skip
    return instances


def verifier_argv(inst: Instance, env: dict[str, str]) -> list[str]:
    """kitchen.yml's shell verifier command for this instance, run with this venv's pytest.

    Harness-only additions: quiet output, no colours, and testinfra's command log
    at INFO (at DEBUG it buries the failing assertion).
    """
    if not inst.verifier:
        raise AssertionError("kitchen.yml has no verifier.command")
    argv = shlex.split(string.Template(inst.verifier).substitute(env))
    if argv[0] != "pytest":
        raise AssertionError(f"kitchen.yml verifier must run pytest, got {argv[0]!r}")
    return [sys.executable, "-m", "pytest", "-q", "--color=no", "--log-level=INFO", *argv[1:]]


class Run:
    """One harness run: a test CA shared by its instances, labelled containers."""

    def __init__(self, keep: bool = False):
        self.run_id = uuid.uuid4().hex[:8]
        self.keep = keep
        self.ca = TestCA()
        self.workdir = Path(tempfile.mkdtemp(prefix="pfr-kitchen-"))

    # -- create ---------------------------------------------------------------
    def create(self, inst: Instance, image: str) -> Container:
        suite = inst.spec
        container = Container.run_systemd(
            f"pfr-{inst.name}-{self.run_id}", image, hostname=f"{inst.name}.example.test", run_id=self.run_id
        )
        # kitchen-salt with salt_install: none checks that the installed Salt is the one asked for.
        have = container.exec("salt-call", "--version").stdout.split()
        if have[1:2] != [inst.salt_version]:
            raise AssertionError(f"salt_version {inst.salt_version} asked for, the image has {' '.join(have)}")
        # salt_solo layout: formula and _modules in file_roots, the suite pillar in pillar_roots.
        container.sh(f"mkdir -p {KITCHEN_ROOT}/srv/salt {KITCHEN_ROOT}/srv/pillar {KITCHEN_ROOT}/etc/salt")
        container.put(REPO / "postfix_relay", f"{KITCHEN_ROOT}/srv/salt/postfix_relay")
        container.put(REPO / "_modules", f"{KITCHEN_ROOT}/srv/salt/_modules")
        for dest, src in inst.pillars_from_files.items():
            container.write(f"{KITCHEN_ROOT}/srv/pillar/{dest}", (REPO / src).read_text(), mode="0600")
        for dest, content in inst.pillars.items():
            container.write(f"{KITCHEN_ROOT}/srv/pillar/{dest}", yaml.safe_dump(content))
        container.write(
            f"{KITCHEN_ROOT}/etc/salt/minion",
            yaml.safe_dump(
                {
                    "id": inst.name,
                    "file_client": "local",
                    "file_roots": {"base": [f"{KITCHEN_ROOT}/srv/salt"]},
                    "pillar_roots": {"base": [f"{KITCHEN_ROOT}/srv/pillar"]},
                }
            ),
        )
        # The provider's real name resolves to the fake provider inside the instance.
        container.sh(f"echo '{PROVIDER_ADDR} {suite.host}' >> /etc/hosts")
        provider.trust_ca(container, self.ca)
        return container

    # -- converge -------------------------------------------------------------
    def _apply(self, inst: Instance, container: Container, label: str, *args: str) -> tuple[dict, float]:
        """state.apply postfix_relay on the instance: states by id and seconds; fails loudly, or on a leak.

        The output is kept in .cache/kitchen/<instance>/ and on the instance (the secret search covers it).
        """
        started = time.monotonic()
        proc = container.exec(*salt_call("state.apply", "postfix_relay", *args), check=False, timeout=1200)
        seconds = time.monotonic() - started
        log_dir = LOG_DIR / inst.name
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{label}.json").write_text(proc.stdout)
        (log_dir / f"{label}.stderr").write_text(proc.stderr)
        container.write(f"{KITCHEN_ROOT}/log/{label}.out", proc.stdout + proc.stderr, mode="0600")
        try:
            states = json.loads(proc.stdout)["local"]
        except (ValueError, KeyError):
            states = None
        if proc.returncode != 0 or not isinstance(states, dict):
            raise AssertionError(
                f"{label} failed (rc={proc.returncode}); output in {log_dir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
            )
        if inst.spec.password in proc.stdout + proc.stderr:
            raise AssertionError(f"{label}: the suite password appears in its output ({log_dir})")
        return states, seconds

    def converge(self, inst: Instance, container: Container, n: int) -> dict:
        states, seconds = self._apply(inst, container, f"converge-{n}")
        failed = [sid for sid, r in states.items() if r.get("result") is not True]
        changed = sorted(r.get("__id__", sid) for sid, r in states.items() if r.get("changes"))
        if failed:
            raise AssertionError(f"converge {n}: failed states {failed}")
        result = {"seconds": round(seconds, 1), "states": len(states), "changed": changed}
        say(inst.name, f"converge {n}: {len(states)} states, {len(changed)} changed, {seconds:.1f} s")
        return result

    # -- test=True: the usual first step on a new server ----------------------
    def dry_run(self, inst: Instance, container: Container, fresh: bool) -> dict:
        """``state.apply postfix_relay test=True`` succeeds, changes nothing, says what would change, leaks nothing.

        Fresh: Postfix is not installed, and still is not afterwards; converged:
        every state is already right (no result None), no file or process touched.
        """
        watched = (
            "ls -la --time-style=full-iso /etc/postfix /etc/aliases* 2>&1; sha256sum /etc/postfix/* 2>&1;"
            " journalctl -u 'postfix*' -o cat --no-pager | grep -c -e 'reload' -e 'starting the Postfix'"
        )
        before = container.sh(f"{watched}; cat /var/spool/postfix/pid/master.pid 2>&1", check=False).stdout
        container.sh(f"touch {DRY_RUN_MARK}")
        states, seconds = self._apply(inst, container, f"dry-run-{'fresh' if fresh else 'converged'}", "test=True")
        # Nothing written outside Salt's own files (its cache, with the synced module, its log and keys).
        written = container.sh(
            f"find / -xdev \\( {' -o '.join(f'-path {p}' for p in SALT_OWN)} \\) -prune -o -type f -newer {DRY_RUN_MARK} -print",
            check=False,
        ).stdout.split()
        if written:
            raise AssertionError(f"test=True wrote outside Salt's own files: {written[:20]}")
        failed = {sid: r.get("comment") for sid, r in states.items() if r.get("result") is False}
        if failed:
            raise AssertionError(f"test=True: failed states {failed}")
        would = sorted(r["__id__"] for r in states.values() if r.get("result") is None)
        after = container.sh(f"{watched}; cat /var/spool/postfix/pid/master.pid 2>&1", check=False).stdout
        if after != before:
            raise AssertionError(f"test=True changed the minion:\n{before}\n---\n{after}")
        if fresh:
            if container.exec("dpkg-query", "-W", "postfix", check=False).returncode == 0:
                raise AssertionError("test=True installed postfix")
            if "postfix_relay-package-pkg-installed-postfix" not in would:
                raise AssertionError(f"test=True on a fresh minion does not say it would install Postfix: {would}")
        elif would:
            raise AssertionError(f"test=True on a converged minion would change {would}")
        say(inst.name, f"test=True ({'fresh' if fresh else 'converged'}): {len(would)} would change, {seconds:.1f} s")
        return {"seconds": round(seconds, 1), "would_change": len(would)}

    # -- verify ---------------------------------------------------------------
    def start_provider(self, inst: Instance, container: Container) -> None:
        provider.deploy(container, self.ca, inst.spec, listen=PROVIDER_ADDR)

    def verify(self, inst: Instance, container: Container) -> dict:
        started = time.monotonic()
        container.disconnect_all_networks()
        self.start_provider(inst, container)
        env = {
            **os.environ,
            "KITCHEN_INSTANCE": inst.name,
            "KITCHEN_SUITE": inst.suite,
            "KITCHEN_PLATFORM": inst.platform,
            "KITCHEN_CONTAINER_ID": container.name,
        }
        proc = subprocess.run(
            verifier_argv(inst, env), cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False
        )
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        seconds = time.monotonic() - started
        say(inst.name, f"verify: {summary}")
        if proc.returncode != 0:
            with _print_lock:
                print(proc.stdout[-8000:], proc.stderr[-2000:], sep="\n", flush=True)
            raise AssertionError(f"verify failed: {summary}")
        return {"seconds": round(seconds, 1), "summary": summary}

    # -- the whole lifecycle --------------------------------------------------
    def test(self, inst: Instance, image: str) -> Instance:
        started = time.monotonic()
        container = None
        try:
            say(inst.name, f"create from {image}")
            container = self.create(inst, image)
            inst.results["dry_run_fresh"] = self.dry_run(inst, container, fresh=True)
            inst.results["converge1"] = self.converge(inst, container, 1)
            inst.results["converge2"] = second = self.converge(inst, container, 2)
            if second["changed"]:
                raise AssertionError(f"second converge changed {second['changed']}: the formula is not idempotent")
            inst.results["dry_run_converged"] = self.dry_run(inst, container, fresh=False)
            inst.results["verify"] = self.verify(inst, container)
            inst.results["ok"] = True
        except (AssertionError, DockerError, subprocess.TimeoutExpired) as exc:
            inst.results["ok"] = False
            inst.results["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            say(inst.name, f"FAILED: {exc}")
            if container is not None:
                diag = container.sh(
                    "postqueue -p 2>&1 | tail -5; journalctl -u 'postfix*' -u fakeprovider --no-pager -n 25",
                    check=False,
                ).stdout
                say(inst.name, f"diagnostics:\n{diag}")
        finally:
            if container is not None and not self.keep:
                container.remove()
            inst.results["seconds"] = round(time.monotonic() - started, 1)
        return inst


# The suite and Debian release that run on the Salt versions other than the default in
# `make integration` (the 45-minute budget of `make test`); every other cell of the matrix
# runs with --full (`make integration-full`).
SMOKE_SUITE = "sendgrid"
SMOKE_PLATFORM = "debian-12"


def _select(instances: list[Instance], patterns: list[str], full: bool = False) -> list[Instance]:
    if patterns:
        return [i for i in instances if any(fnmatch.fnmatch(i.name, p) or p in i.name for p in patterns)]
    if full:
        return instances
    return [
        i
        for i in instances
        if i.salt_version == images.SALT_VERSION or (i.suite == SMOKE_SUITE and i.os_platform == SMOKE_PLATFORM)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["list", "test"])
    parser.add_argument("patterns", nargs="*", help="instance names or globs (default: all)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("PFR_JOBS", "3")))
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"every suite on every Salt version (default: all suites on {images.SALT_VERSION}, {SMOKE_SUITE} on {SMOKE_PLATFORM} on the others)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep containers for debugging (remove: make clean-containers)"
    )
    args = parser.parse_args(argv)
    instances = _select(load(), args.patterns, args.full)
    if args.action == "list":
        for inst in instances:
            print(f"{inst.name:34} suite={inst.suite} platform={inst.os_platform} salt={inst.salt_version}")
        return 0
    if not instances:
        print("no instance matches", args.patterns, file=sys.stderr)
        return 2
    started = time.monotonic()
    # The image each platform's driver names in kitchen.yml (built, or reused, and tagged with that name).
    wanted = sorted({images.parse_image_name(i.image) for i in instances if i.image})
    print(f"==> images for {', '.join(f'{p} (salt {v})' for p, v in wanted)}", flush=True)
    with ThreadPoolExecutor(max_workers=len({p for p, _ in wanted})) as pool:
        refs = dict(zip(wanted, pool.map(lambda pv: images.build(*pv), wanted), strict=True))
    run = Run(keep=args.keep)
    print(f"==> {len(instances)} instances, {args.jobs} at a time (run {run.run_id})", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda i: run.test(i, refs[images.parse_image_name(i.image)]), instances))
    print("\n==> kitchen matrix", flush=True)
    print(f"{'instance':34} {'converge1':>16} {'converge2':>10} {'verify':>26} {'total':>7}")
    for inst in done:
        r = inst.results
        c1 = r.get("converge1", {})
        c2 = r.get("converge2", {})
        col1 = f"{c1.get('seconds', '-')}s/{len(c1.get('changed', []))}ch" if c1 else "-"
        col2 = f"{len(c2.get('changed', []))}ch" if c2 else "-"
        col3 = r.get("verify", {}).get("summary", r.get("error", "-"))[:26]
        print(f"{inst.name:34} {col1:>16} {col2:>10} {col3:>26} {r.get('seconds', 0):>6}s")
    passed = sum(1 for i in done if i.results.get("ok"))
    failed = len(done) - passed
    print(f"==> wall time {time.monotonic() - started:.0f} s")
    print(f"kitchen: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
