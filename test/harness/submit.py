"""Submit a batch of messages to 127.0.0.1:25 as an application would; runs on the minion.

Standard library only (copied into the instance).  Each message gets a
Message-ID ``<PREFIX-N@postfix-relay.test>`` so that the fake provider's log
can be matched one to one.  What Postfix refuses or a connection that drops
(Postfix restarting) is retried until accepted, so "accepted" is exactly the
batch handed to Postfix.  Prints one JSON line.

    python3 submit.py --prefix down --count 40 [--clients 4] [--deadline 600] [--sender root@localhost]

The envelope sender (and From:) is app@web.example.com unless ``--sender``
says otherwise: a bounce for it would go out through the provider, while one
for a local sender such as root@localhost lands in /var/mail/root.

With ``--server HOST:PORT --starttls --login USER`` (password in $SUBMIT_PASSWORD)
it talks to a provider directly instead, one TLS connection per client, as a
Django process would with EMAIL_USE_TLS: the benchmark's upper limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import smtplib
import threading
import time
from email.message import EmailMessage


def build(message_id: str, prefix: str, sender: str = "app@web.example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "customer@example.org"
    msg["Subject"] = f"batch {prefix}"
    msg["Message-ID"] = message_id
    msg.set_content(f"Message {message_id}: a password reset link, say.\n")
    return msg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=600)
    parser.add_argument("--sender", default="app@web.example.com", help="envelope sender and From:")
    parser.add_argument("--server", default="127.0.0.1:25")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--login", default=None)
    args = parser.parse_args()
    host, port = args.server.rsplit(":", 1)

    def connect() -> smtplib.SMTP:
        smtp = smtplib.SMTP(host, int(port), timeout=30)
        if args.starttls:
            smtp.starttls()
        if args.login:
            smtp.login(args.login, os.environ["SUBMIT_PASSWORD"])
        return smtp

    ids = [f"<{args.prefix}-{i}@postfix-relay.test>" for i in range(args.count)]
    started = time.monotonic()
    end = started + args.deadline
    lock = threading.Lock()
    accepted: list[str] = []
    retries = [0]
    errors: list[str] = []

    def client(chunk: list[str]) -> None:
        smtp = None
        for message_id in chunk:
            while True:
                try:
                    if smtp is None:
                        smtp = connect()
                    smtp.send_message(build(message_id, args.prefix, args.sender))
                    with lock:
                        accepted.append(message_id)
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    with lock:
                        retries[0] += 1
                        if len(errors) < 5:
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    if smtp is not None:
                        with contextlib.suppress(OSError):
                            smtp.close()
                    smtp = None
                    if time.monotonic() > end:
                        return
                    time.sleep(0.2)
        if smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()

    threads = [threading.Thread(target=client, args=(ids[i :: args.clients],)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                "accepted": len(accepted),
                "unique": len(set(accepted)),
                "retries": retries[0],
                "errors": errors,
                "seconds": round(time.monotonic() - started, 2),
                # this process's own CPU (user + system): the load generator's share of the machine
                "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
