"""Time Django's ``send_mail()`` as a web process calls it; runs on the minion with /opt/django's Python.

Real Django, its default SMTP backend (``django.core.mail.backends.smtp.EmailBackend``),
one ``send_mail()`` per message: each call opens its own connection (and in
direct mode its own STARTTLS handshake and AUTH), sends, closes -- what an app
does in a request.  ``--workers N`` forks N processes (gunicorn-style, Django
imported once before the fork) that start together and send their share one
after the other.  Prints one JSON line: every call's latency, when the first
worker started (wall clock, comparable with the provider's event times) and
when the last call returned.

    python djangobench.py --mode relay  --prefix P --count 50 [--workers 4]
    python djangobench.py --mode direct --prefix P --count 50 --host smtp.sendgrid.net --port 587 --user apikey
        (password on stdin or in $EMAIL_HOST_PASSWORD; the provider's CA is trusted through the system store)

Relay mode: EMAIL_HOST=localhost, EMAIL_PORT=25, no TLS, no credentials (what
``django_env`` mode ``relay`` writes).  Direct mode: EMAIL_USE_TLS with the
provider's host, port and credentials (``django_env`` mode ``direct``).  The
subject carries ``PREFIX-N`` so that the provider's log matches each message.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time


def configure(args: argparse.Namespace) -> None:
    from django.conf import settings

    email = {"EMAIL_HOST": "localhost", "EMAIL_PORT": 25}
    if args.mode == "direct":
        email = {
            "EMAIL_HOST": args.host,
            "EMAIL_PORT": args.port,
            "EMAIL_HOST_USER": args.user,
            # stdin, not argv: the secret never shows in ps
            "EMAIL_HOST_PASSWORD": os.environ.get("EMAIL_HOST_PASSWORD") or sys.stdin.readline().rstrip("\n"),
            "EMAIL_USE_TLS": True,
        }
    settings.configure(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_TIMEOUT=30,
        DEFAULT_FROM_EMAIL="app@web.example.com",
        **email,
    )


def worker(args, numbers: list[int], barrier, results) -> None:
    from django.core.mail import send_mail

    latencies, errors = [], []
    barrier.wait()
    started = time.time()
    for n in numbers:
        t0 = time.perf_counter()
        try:
            send_mail(
                f"{args.prefix}-{n}",
                f"Message {n}: a password reset link, say.\n",
                None,
                ["customer@example.org"],
            )
            latencies.append(time.perf_counter() - t0)
        except Exception as exc:  # reported and counted, never hidden
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
    results.put({"started": started, "ended": time.time(), "latencies": latencies, "errors": errors})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("relay", "direct"), required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, default=587)
    parser.add_argument("--user")
    args = parser.parse_args()
    configure(args)
    import django.core.mail  # noqa: F401 - imported once, before the fork, like a preloaded app

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(args.workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(args, list(range(i, args.count, args.workers)), barrier, results))
        for i in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    parts = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
    print(
        json.dumps(
            {
                "mode": args.mode,
                "workers": args.workers,
                "sent": sum(len(p["latencies"]) for p in parts),
                "errors": [e for p in parts for e in p["errors"]][:5],
                "error_count": sum(len(p["errors"]) for p in parts),
                "started": min(p["started"] for p in parts),
                "ended": max(p["ended"] for p in parts),
                "latencies": [round(x, 6) for p in parts for x in p["latencies"]],
            }
        )
    )


if __name__ == "__main__":
    main()
