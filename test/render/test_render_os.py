"""RedHat and SUSE platforms, rendered by real Salt with each platform's grains.

No rootfs of these platforms can be fetched here (no RPM mirror among the
allowed registries): what is proved is what Salt would do on them, from the
grains alone -- package list, map types, compatibility_level, SUSE's sysconfig
edit.  One ``state.show_sls`` per platform; main.cf is rendered from the exact
context that SLS gives file.managed, with plain Jinja (main.cf.jinja calls no
Salt function; its rendering by real Salt is covered in test_render.py).
"""

from __future__ import annotations

import re

import pytest
from harness.formula import render_template
from harness.saltlocal import LocalMinion, main_cf_param, state_args

FQDN = "web1.example.com"
PILLAR = {"provider": "sendgrid", "password": "Os-Rndr-S3cret"}
RH_BASE = ["postfix", "cyrus-sasl-plain", "ca-certificates"]
SUSE_BASE = ["postfix", "cyrus-sasl-plain", "ca-certificates", "ca-certificates-mozilla"]
RH_CA = "/etc/pki/tls/certs/ca-bundle.crt"
SUSE_CA = "/etc/ssl/ca-bundle.pem"

# name: (grains, packages, map type, cache type, compatibility_level, CA bundle)
PLATFORMS = {
    "el8": ({"os_family": "RedHat", "os": "Rocky", "osmajorrelease": 8}, RH_BASE, "hash", "btree", "2", RH_CA),
    "el9": (
        {"os_family": "RedHat", "os": "AlmaLinux", "osmajorrelease": 9},
        [*RH_BASE, "postfix-lmdb"],
        "lmdb",
        "lmdb",
        "2",
        RH_CA,
    ),
    "fedora41": (
        {"os_family": "RedHat", "os": "Fedora", "osmajorrelease": 41},
        [*RH_BASE, "postfix-lmdb"],
        "lmdb",
        "lmdb",
        "3.6",
        RH_CA,
    ),
    "amazon2023": (
        {"os_family": "RedHat", "os": "Amazon", "osmajorrelease": 2023},
        RH_BASE,
        "hash",
        "btree",
        "2",
        RH_CA,
    ),
    "leap15.6": (
        {"os_family": "Suse", "os": "Leap", "osrelease": "15.6", "osmajorrelease": 15},
        SUSE_BASE,
        "lmdb",
        "lmdb",
        "2",
        SUSE_CA,
    ),
    "sles15": (
        {"os_family": "Suse", "os": "SUSE", "osfullname": "SLES", "osrelease": "15.6", "osmajorrelease": 15},
        SUSE_BASE,
        "lmdb",
        "lmdb",
        "2",
        SUSE_CA,
    ),
}


@pytest.fixture(scope="module", params=list(PLATFORMS))
def platform(request, tmp_path_factory):
    grains, packages, db, cache, level, ca = PLATFORMS[request.param]
    minion = LocalMinion(tmp_path_factory.mktemp(request.param), {**grains, "fqdn": FQDN}, PILLAR)
    show = minion.show_sls()
    assert show.returncode == 0, show.stdout + show.stderr
    main_cf_args = state_args(show.data, "postfix_relay-config-file-managed-main_cf")
    return {
        "name": request.param,
        "suse": grains["os_family"] == "Suse",
        "states": show.data,
        "main_cf": render_template("main.cf.jinja", main_cf_args["context"], PILLAR),
        "expect": {"packages": packages, "db": db, "cache": cache, "level": level, "ca": ca},
    }


def test_package_list(platform):
    pkgs = state_args(platform["states"], "postfix_relay-package-pkg-installed-postfix")["pkgs"]
    assert pkgs == platform["expect"]["packages"]
    assert "postfix_relay-package-cmd-run-debconf" not in platform["states"]


def test_map_compile_commands_use_the_map_type(platform):
    db = platform["expect"]["db"]
    compiles = {sid: state_args(platform["states"], sid) for sid in platform["states"] if "-cmd-run-post" in sid}
    assert set(compiles) == {
        "postfix_relay-config-cmd-run-postmap-sasl_passwd",
        "postfix_relay-config-cmd-run-postalias",
    }
    assert (
        compiles["postfix_relay-config-cmd-run-postmap-sasl_passwd"]["name"] == f"postmap {db}:/etc/postfix/sasl_passwd"
    )
    assert compiles["postfix_relay-config-cmd-run-postalias"]["name"] == f"postalias {db}:/etc/aliases"
    for args in compiles.values():
        assert args["unless"][0]["db_type"] == db
    suffix = ".lmdb" if db == "lmdb" else ".db"
    private = state_args(platform["states"], "postfix_relay-config-file-managed-sasl_passwd_db")
    assert private["name"] == "/etc/postfix/sasl_passwd" + suffix


def test_main_cf_lookups_compatibility_and_ca(platform):
    text, exp = platform["main_cf"], platform["expect"]
    db = exp["db"]
    assert main_cf_param(text, "compatibility_level") == exp["level"]
    assert main_cf_param(text, "smtp_sasl_password_maps") == f"{db}:/etc/postfix/sasl_passwd"
    assert main_cf_param(text, "alias_maps") == f"{db}:/etc/aliases"
    assert main_cf_param(text, "alias_database") == f"{db}:/etc/aliases"
    assert main_cf_param(text, "smtp_tls_session_cache_database").startswith(f"{exp['cache']}:")
    assert main_cf_param(text, "smtp_tls_CAfile") == exp["ca"]
    # No lookup of the other kind anywhere: one map type per platform.
    other = {"hash", "btree"} if db == "lmdb" else {"lmdb"}
    used = set(re.findall(r"\b(hash|btree|lmdb):", text))
    assert used and not used & other, used


def test_map_support_checked_after_install_before_any_map(platform):
    args = state_args(platform["states"], "postfix_relay-config-cmd-run-check-db_type")
    assert args["unless"] == f"postconf -m | grep -qx {platform['expect']['db']}"
    assert args["onlyif"] == "command -v postconf"  # test=True on a fresh minion: nothing to ask yet
    # After the install and the placeholder main.cf (postconf needs one) ...
    assert args["require"] == [
        {"pkg": "postfix_relay-package-pkg-installed-postfix"},
        {"file": "postfix_relay-config-file-managed-main_cf-placeholder"},
    ]
    # ... before every postmap/postalias and main.cf.
    assert args["require_in"] == [
        {"cmd": "postfix_relay-config-cmd-run-postmap-sasl_passwd"},
        {"cmd": "postfix_relay-config-cmd-run-postalias"},
        {"file": "postfix_relay-config-file-managed-main_cf"},
    ]


def test_suse_keeps_config_postfix_from_rewriting_main_cf(platform):
    sid = "postfix_relay-config-file-replace-sysconfig_mail"
    if not platform["suse"]:
        assert not [s for s in platform["states"] if "sysconfig" in s]
        return
    state = platform["states"][sid]
    assert "replace" in state["file"]
    args = state_args(platform["states"], sid)
    assert args["name"] == "/etc/sysconfig/mail"
    assert args["repl"] == 'MAIL_CREATE_CONFIG="no"'
    pattern = re.compile(args["pattern"], re.M)
    for line in ('MAIL_CREATE_CONFIG="yes"', '#MAIL_CREATE_CONFIG="yes"', "  MAIL_CREATE_CONFIG = yes"):
        assert pattern.fullmatch(line), line
    assert not pattern.search("MAIL_CREATE_CONFIG_BACKUP=yes\n## MAIL_CREATE_CONFIG is described above")
    assert args["append_if_not_found"] is True and args["ignore_if_missing"] is True
    # After the package (it creates the file), before main.cf is written; and in the
    # config SLS, which the service watches: done before Postfix (re)starts.
    assert args["require"] == [{"pkg": "postfix_relay-package-pkg-installed-postfix"}]
    assert {"file": "postfix_relay-config-file-managed-main_cf"} in args["require_in"]
    assert state["__sls__"] == "postfix_relay.config.file"
    watched = state_args(platform["states"], "postfix_relay-service-running-postfix")["watch"]
    assert {"sls": "postfix_relay.config.file"} in watched


def test_suse_clean_keeps_the_sysconfig_line_and_uses_lmdb(tmp_path):
    """postfix_relay.clean on SUSE: the cleaned main.cf must not be rewritten by config.postfix either."""
    grains, _packages, db, _cache, _level, _ca = PLATFORMS["leap15.6"]
    minion = LocalMinion(tmp_path, {**grains, "fqdn": FQDN}, None)
    res = minion.show_sls("postfix_relay.clean")
    assert res.returncode == 0, res.stdout + res.stderr
    args = state_args(res.data, "postfix_relay-config-clean-file-replace-sysconfig_mail")
    assert args["name"] == "/etc/sysconfig/mail" and args["repl"] == 'MAIL_CREATE_CONFIG="no"'
    assert args["require_in"] == [{"file": "postfix_relay-config-clean-file-managed-main_cf"}]
    assert "require" not in args  # clean installs nothing; the edit is skipped where the file is missing
    text = render_template(
        "main.cf.jinja", state_args(res.data, "postfix_relay-config-clean-file-managed-main_cf")["context"], {}
    )
    assert main_cf_param(text, "alias_maps") == f"{db}:/etc/aliases"
    assert main_cf_param(text, "relayhost") is None
