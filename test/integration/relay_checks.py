"""The checks every relay suite runs against its converged instance.

Each suite's ``test_<suite>.py`` imports these; pytest then runs them with
that suite's expectations (see conftest.py).  A message is really sent:
127.0.0.1:25 -> Postfix -> TLS + AUTH -> the fake provider, which logs it.
"""

from __future__ import annotations

import uuid

from harness.fakeprovider import sha256
from suites import EVENTS, PILLAR_SOURCE, SMTP_SEND, TRICKLE, events, wait_for_messages


def _postconf(host, name: str) -> str:
    return host.check_output("postconf -h %s", name)


def test_packages_installed(host):
    for name in ("postfix", "libsasl2-modules", "ca-certificates"):
        assert host.package(name).is_installed, name


def test_relay_settings_in_effect(host, suite):
    assert _postconf(host, "relayhost") == suite.nexthop
    assert _postconf(host, "smtp_sasl_auth_enable") == "yes"
    assert _postconf(host, "smtp_sasl_password_maps") == "hash:/etc/postfix/sasl_passwd"
    assert _postconf(host, "smtp_sasl_security_options") == "noanonymous"
    assert _postconf(host, "smtp_sasl_tls_security_options") == "noanonymous"
    assert _postconf(host, "smtp_tls_security_level") == "secure"
    assert _postconf(host, "smtp_tls_wrappermode") == ("yes" if suite.tls == "implicit" else "no")
    assert _postconf(host, "smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"
    assert _postconf(host, "inet_interfaces") == "loopback-only"
    assert _postconf(host, "smtpd_sasl_auth_enable") == "no"


def test_sasl_files_are_root_only(host):
    for path in ("/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"):
        f = host.file(path)
        assert f.exists, path
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), path


def test_compiled_map_returns_the_credentials(host, suite):
    out = host.check_output("postmap -q %s hash:/etc/postfix/sasl_passwd", suite.nexthop)
    assert out == f"{suite.username}:{suite.password}"


def test_postfix_enabled_and_running(host):
    assert host.service("postfix").is_enabled
    assert host.service("postfix").is_running
    # The mail system itself (Debian 12 runs it as postfix@-, under an umbrella unit).
    assert host.run("postfix status").rc == 0


def test_smtp_listens_on_loopback_only(host):
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(":25")]
    assert listening, "nothing listens on port 25"
    assert all(s in ("tcp://127.0.0.1:25", "tcp://::1:25") for s in listening), listening


def test_instance_is_cut_off_before_mail_flows(host):
    """Network safety: only loopback is left, so no test traffic can leave."""
    links = host.check_output("ip -o link show").splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"], links
    assert host.check_output("ip -4 route show") == ""


def test_provider_name_resolves_to_the_fake_provider(host, suite):
    assert host.check_output("getent hosts %s", suite.host).split()[0] == "127.0.0.2"


def test_message_arrives_at_provider_over_tls_authenticated(host, suite):
    message_id = f"<{uuid.uuid4().hex}@kitchen.postfix-relay.test>"
    subject = f"{suite.name} relay check"
    out = host.run("/usr/bin/python3 -c %s %s %s", SMTP_SEND, message_id, subject)
    assert out.rc == 0 and "submitted" in out.stdout, out.stderr
    arrived = wait_for_messages(host, [message_id])
    queue = host.run("postqueue -p").stdout
    log = host.run("journalctl -u 'postfix*' --no-pager -n 40").stdout
    assert arrived, f"message never reached the fake provider.\nqueue:\n{queue}\nlog:\n{log}"
    msg = arrived[0]
    assert msg["tls"] is True and msg["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert msg["auth_user_sha256"] == sha256(suite.username)
    assert msg["mail_from"] == "app@web.example.com"
    assert msg["rcpt_tos"] == ["customer@example.org"]
    assert msg["subject"] == subject
    auths = [e for e in events(host) if e["event"] == "auth"]
    assert auths and all(a["tls"] for a in auths), "AUTH seen outside TLS"
    assert any(a["ok"] and a["user_sha256"] == sha256(suite.username) for a in auths)
    # Delivered, not just attempted: the queue is empty again.
    assert "Mail queue is empty" in queue


def test_a_trickle_of_mail_reuses_one_tls_connection(host, suite):
    """A web app's steady trickle: each message sent once the previous one arrived, all over one
    TLS connection and one AUTH (Postfix keeps an idle connection to the provider for 2 s).

    Regression: with ``smtp_connection_cache_destinations = $relayhost`` ([host]:port, which Postfix
    never matches) connections were cached only while mail queued up, so each message here paid a
    new TCP + TLS handshake + AUTH.
    """
    mark = len(events(host))
    out = host.run("/usr/bin/python3 -c %s %s 8 %s", TRICKLE, EVENTS, f"trickle.{uuid.uuid4().hex}.")
    assert out.rc == 0 and "trickled 8" in out.stdout, out.stdout + out.stderr
    window = events(host)[mark:]
    messages = [e for e in window if e["event"] == "message"]
    assert len(messages) == 8 and all(m["tls"] and m["auth_user_sha256"] == sha256(suite.username) for m in messages)
    auths = [e for e in window if e["event"] == "auth"]
    # 0 when the previous check's connection was still cached, else 1; 8 without reuse.
    assert len(auths) <= 1, f"{len(auths)} AUTHs for 8 messages: TLS connections to the provider are not reused"


def test_password_only_in_sasl_files_and_pillar_source(host, suite):
    """The literal secret, searched over the whole filesystem (converge output included)."""
    found = host.run(
        "grep -rlF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e %s / 2>/dev/null", suite.password
    ).stdout.split()
    assert sorted(found) == sorted(["/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db", PILLAR_SOURCE])
