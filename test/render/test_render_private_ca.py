"""Real Salt renders tls_ca_file (a relay with a private CA) into main.cf and the restart marker; mixed-case main_cf names."""

from __future__ import annotations

from harness.formula import DEBIAN12
from harness.saltlocal import LocalMinion, main_cf_param

CA = "/etc/ssl/corp/root-ca.pem"
PILLAR = {
    "provider": "custom",
    "host": "smtp.corp.example.com",
    "username": "relay",
    "password": "Rndr-Corp-S3cret",
    "tls_ca_file": CA,
    # Postfix's own mixed-case names are accepted in main_cf.
    "main_cf": {"lmtp_tls_CAfile": "/etc/ssl/lmtp.pem"},
}


def test_private_ca_renders_cafile_and_keeps_the_os_cas(tmp_path):
    """One Debian render (each costs seconds of `make check`); the other OS families' directory: unit tests."""
    ca_path = "/etc/ssl/certs"
    minion = LocalMinion(tmp_path, DEBIAN12, PILLAR)
    show = minion.show_sls()
    assert show.returncode == 0, show.stdout + show.stderr
    cf = minion.render_state(show, "postfix_relay-config-file-managed-main_cf")
    assert main_cf_param(cf, "smtp_tls_security_level") == "secure"
    assert main_cf_param(cf, "smtp_tls_CAfile") == CA
    assert main_cf_param(cf, "smtp_tls_CApath") == ca_path
    names = [line.split(" = ")[0] for line in cf.splitlines() if " = " in line and not line.startswith("#")]
    assert len(names) == len(set(names)), "a parameter is rendered twice"
    assert main_cf_param(cf, "lmtp_tls_CAfile") == "/etc/ssl/lmtp.pem"
    assert (
        f"smtp_tls_CApath = {ca_path}"
        in minion.render_state(show, "postfix_relay-config-file-managed-restart_marker").splitlines()
    )
