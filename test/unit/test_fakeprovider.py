"""The fake provider itself, on loopback: the container proofs are only as good as it is."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage

import pytest
from harness.fakeprovider import credential_hash, sha256
from harness.formula import REPO
from harness.pki import TestCA

USER, PASSWORD = "apikey", "Fake-Provider-Pa55:word"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=["starttls", "implicit"])
def fake(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    ca = TestCA()
    issued = ca.issue("smtp.example.test")
    (tmp / "cert.pem").write_bytes(issued.cert_pem)
    (tmp / "key.pem").write_bytes(issued.key_pem)
    port = _free_port()
    config = {
        "listen": "127.0.0.1",
        "port": port,
        "tls": request.param,
        "hostname": "smtp.example.test",
        "cert": str(tmp / "cert.pem"),
        "key": str(tmp / "key.pem"),
        "credentials": [credential_hash(USER, PASSWORD)],
        "events": str(tmp / "events.jsonl"),
    }
    (tmp / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "test" / "harness" / "fakeprovider.py"), f"--config={tmp / 'config.json'}"]
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (tmp / "events.jsonl").exists():
        time.sleep(0.1)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    context.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    yield {"mode": request.param, "port": port, "context": context, "events": tmp / "events.jsonl"}
    proc.terminate()
    proc.wait(timeout=10)


def _connect(fake) -> smtplib.SMTP:
    if fake["mode"] == "implicit":
        return smtplib.SMTP_SSL("127.0.0.1", fake["port"], context=fake["context"], timeout=10)
    smtp = smtplib.SMTP("127.0.0.1", fake["port"], timeout=10)
    smtp.starttls(context=fake["context"])
    return smtp


def _events(fake) -> list[dict]:
    return [json.loads(line) for line in fake["events"].read_text().splitlines()]


def _message(message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "a@example.com", "b@example.org", "hi", message_id
    msg["X-Original-To"] = "c@example.org"
    msg.set_content("body")
    return msg


def test_accepts_the_right_credentials_over_tls_and_logs_the_message(fake):
    with _connect(fake) as smtp:
        smtp.login(USER, PASSWORD)
        smtp.send_message(_message("<ok@test>"))
    msg = next(e for e in _events(fake) if e["event"] == "message" and e["message_id"] == "<ok@test>")
    assert msg["tls"] is True and msg["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert msg["auth_user_sha256"] == sha256(USER)
    assert msg["rcpt_tos"] == ["b@example.org"] and msg["headers"]["X-Original-To"] == ["c@example.org"]
    assert PASSWORD not in fake["events"].read_text()


def test_refuses_wrong_credentials(fake):
    with _connect(fake) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.login(USER, "wrong")
    assert info.value.smtp_code == 535
    assert any(e["event"] == "auth" and e["ok"] is False for e in _events(fake))


def test_refuses_mail_without_auth(fake):
    with _connect(fake) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as info:
        smtp.send_message(_message("<noauth@test>"))
    assert info.value.smtp_code == 530
    assert not any(e["event"] == "message" and e["message_id"] == "<noauth@test>" for e in _events(fake))


def test_no_auth_in_clear(fake):
    if fake["mode"] == "implicit":
        # Implicit TLS has no plaintext phase at all: a cleartext client gets nowhere.
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            smtplib.SMTP("127.0.0.1", fake["port"], timeout=3).ehlo()
        return
    with smtplib.SMTP("127.0.0.1", fake["port"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        code, _ = smtp.docmd("AUTH", "PLAIN AGFwaWtleQB4")
        assert code in (530, 538)
    cleartext_auth = [e for e in _events(fake) if e["event"] == "command" and e["verb"] == "AUTH" and not e["tls"]]
    assert cleartext_auth and all(e["arg"] == "PLAIN" for e in cleartext_auth)  # logged, payload never
