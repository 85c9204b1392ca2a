"""A fake SMTP provider (SendGrid, SES, … as Postfix sees them), built on aiosmtpd.

Runs next to the minion under test, with only the standard library and aiosmtpd
(it is copied into the instance; it must not import the harness).  It serves
STARTTLS or implicit TLS with a certificate for the provider's real host name,
requires AUTH (PLAIN/LOGIN, over TLS only) with the suite's exact credentials,
and appends one JSON line per event to an event log the tests read:

    {"event": "command", "verb": "AUTH", "arg": "PLAIN", "tls": true, ...}
    {"event": "auth", "ok": true, "user": "apikey", "user_sha256": "…", "tls": true, ...}
    {"event": "message", "mail_from": "…", "rcpt_tos": […], "message_id": "<…>", "auth_user_sha256": "…", ...}

Credentials are held as a SHA-256 of ``user NUL password`` only, so the
password is written nowhere by the provider; a user that equals the password
(a Postmark server token) is logged as "<password>".

    fakeprovider.py --config /opt/fakeprovider/config.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import hmac
import json
import os
import ssl
import time
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def credential_hash(user: str | bytes, password: str | bytes) -> str:
    user = user.encode() if isinstance(user, str) else user
    password = password.encode() if isinstance(password, str) else password
    return hashlib.sha256(user + b"\0" + password).hexdigest()


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


class EventLog:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


def tls_info(transport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if ssl_object is None:
        return {"tls": False}
    return {"tls": True, "tls_version": ssl_object.version(), "cipher": (ssl_object.cipher() or [None])[0]}


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP that logs every command verb (never AUTH payloads)."""

    def __init__(self, handler, *, events: EventLog, **kwargs):
        super().__init__(handler, **kwargs)
        self.events = events

    def _record(self, verb: str, arg: str | None) -> None:
        shown = (arg or "").split(" ", 1)[0] if verb == "AUTH" else (arg or "")
        peer = self.session.peer if self.session else None
        self.events.write("command", verb=verb, arg=shown[:200], peer=str(peer), **tls_info(self.transport))


def _recording(verb: str):
    """smtp_<VERB> that logs the command, then lets aiosmtpd handle it."""

    original = getattr(SMTP, f"smtp_{verb}")

    @functools.wraps(original)  # keeps aiosmtpd's syntax/help attributes
    async def handler(self, arg):
        self._record(verb, arg)
        return await original(self, arg)

    return handler


for _verb in ("EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"):
    setattr(RecordingSMTP, f"smtp_{_verb}", _recording(_verb))


class Provider:
    """Handler + authenticator: checks credentials, accepts or refuses messages."""

    def __init__(self, config: dict[str, Any], events: EventLog):
        self.config = config
        self.events = events
        self.accepted = set(config["credentials"])
        # Optional fault: answer every DATA with this (e.g. "451 4.3.0 try later").
        self.data_reply = config.get("data_reply")

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            self.events.write("auth", ok=False, mechanism=mechanism, reason="unsupported", **tls_info(server.transport))
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login, auth_data.password
        digest = credential_hash(login, password)
        ok = any(hmac.compare_digest(digest, c) for c in self.accepted)
        user = "<password>" if login == password else login.decode(errors="replace")
        self.events.write(
            "auth", ok=ok, mechanism=mechanism, user=user, user_sha256=sha256(login), **tls_info(server.transport)
        )
        if ok:
            session.auth_user_sha256 = sha256(login)
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": headers.get("Message-ID", "").strip(),
            "subject": headers.get("Subject", ""),
            "from_header": headers.get("From", ""),
            "to_header": headers.get("To", ""),
            "cc_header": headers.get("Cc", ""),
            # X- headers, every value (X-Original-To appears once per original recipient).
            "headers": {k: headers.get_all(k) for k in dict.fromkeys(headers.keys()) if k.lower().startswith("x-")},
            "size": len(envelope.original_content or b""),
            "auth_user_sha256": getattr(session, "auth_user_sha256", None),
            "peer": str(session.peer),
            **tls_info(server.transport),
        }
        if self.data_reply:
            self.events.write("refused", reply=self.data_reply, **record)
            return self.data_reply
        self.events.write("message", **record)
        return "250 2.0.0 Ok: queued as fake"


def server_context(config: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config["cert"], config["key"])
    return context


async def serve(config: dict[str, Any]) -> None:
    events = EventLog(config["events"])
    provider = Provider(config, events)
    mode = config["tls"]  # starttls | implicit | none (a broken provider that offers no TLS)
    context = server_context(config) if mode in ("starttls", "implicit") else None

    def factory():
        return RecordingSMTP(
            provider,
            events=events,
            hostname=config["hostname"],
            ident="fake provider (postfix_relay tests)",
            tls_context=context if mode == "starttls" else None,
            # Not require_starttls: aiosmtpd would refuse commands before TLS without
            # dispatching them, so they would go unrecorded. AUTH still needs TLS
            # (auth_require_tls) and MAIL needs AUTH (auth_required).
            require_starttls=False,
            authenticator=provider.authenticate,
            auth_required=True,
            # Implicit TLS is TLS from the first byte: AUTH is offered at once.
            auth_require_tls=mode == "starttls",
        )

    server = await asyncio.get_running_loop().create_server(
        factory, host=config["listen"], port=config["port"], ssl=context if mode == "implicit" else None
    )
    events.write("listening", listen=config["listen"], port=config["port"], mode=mode, hostname=config["hostname"])
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
