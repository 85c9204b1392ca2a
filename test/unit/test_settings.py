"""settings() as a pure function: every provider, port and TLS mode, OS family and bad input."""

from __future__ import annotations

import pytest
from harness.badpillars import BAD_PILLARS
from harness.formula import DEBIAN12, DEBIAN13, REDHAT8, REDHAT9, pfr, render_file

SECRET = "Sup3r:Secret pa55 word!"


def sasl_passwd_file(settings, pillar):
    return render_file(settings, "sasl_passwd", pillar)


def resolve(pillar, os_facts=DEBIAN12):
    return pfr.resolve(pillar, os_facts)


def main_cf(pillar, os_facts=DEBIAN12):
    return resolve(pillar, os_facts)["main_cf"]


def error_of(pillar, os_facts=DEBIAN12) -> str:
    with pytest.raises(pfr.PillarError) as info:
        pfr.resolve(pillar, os_facts)
    return str(info.value)


# --------------------------------------------------------------------------
# Every provider x every port it offers: host, port, TLS mode, credentials.
# --------------------------------------------------------------------------
PROVIDER_CASES = [
    # (pillar, host, username)
    ({"provider": "sendgrid", "password": SECRET}, "smtp.sendgrid.net", "apikey"),
    (
        {"provider": "mailgun", "username": "postmaster@mg.example.com", "password": SECRET},
        "smtp.mailgun.org",
        "postmaster@mg.example.com",
    ),
    (
        {"provider": "mailgun", "region": "eu", "username": "postmaster@mg.example.com", "password": SECRET},
        "smtp.eu.mailgun.org",
        "postmaster@mg.example.com",
    ),
    (
        {"provider": "ses", "region": "eu-west-1", "username": "AKIAEXAMPLE", "password": SECRET},
        "email-smtp.eu-west-1.amazonaws.com",
        "AKIAEXAMPLE",
    ),
    (
        {"provider": "ses", "region": "us-gov-west-1", "username": "AKIAEXAMPLE", "password": SECRET},
        "email-smtp.us-gov-west-1.amazonaws.com",
        "AKIAEXAMPLE",
    ),
    ({"provider": "postmark", "password": "token-1234"}, "smtp.postmarkapp.com", "token-1234"),
    ({"provider": "postmark", "username": "access-key", "password": SECRET}, "smtp.postmarkapp.com", "access-key"),
    ({"provider": "custom", "host": "SMTP.Example.NET", "username": "u", "password": SECRET}, "smtp.example.net", "u"),
]


@pytest.mark.parametrize(("pillar", "host", "username"), PROVIDER_CASES)
def test_provider_defaults(pillar, host, username):
    s = resolve(pillar)
    assert s["relay"]["host"] == host
    assert s["relay"]["port"] == 587
    assert s["relay"]["tls"] == "starttls"
    assert s["main_cf"]["relayhost"] == f"[{host}]:587"
    assert s["sasl"]["key"] == f"[{host}]:587"
    assert s["sasl"]["username"] == (pfr.REDACTED if username == pillar["password"] else username)
    assert sasl_passwd_file(s, pillar).splitlines()[1:] == [f"[{host}]:587 {username}:{pillar['password']}"]
    assert pillar["password"] not in repr(s)
    assert "smtp_tls_wrappermode" not in s["main_cf"]
    assert s["main_cf"]["smtp_tls_security_level"] == "secure"


def _ports():
    for name, preset in pfr.PROVIDERS.items():
        for port, mode in (preset["ports"] or {}).items():
            yield name, port, mode


BASE = {
    "sendgrid": {"provider": "sendgrid", "password": SECRET},
    "mailgun": {"provider": "mailgun", "username": "pm@mg.example.com", "password": SECRET},
    "ses": {"provider": "ses", "region": "us-east-1", "username": "AKIA", "password": SECRET},
    "postmark": {"provider": "postmark", "password": "tok"},
    "custom": {"provider": "custom", "host": "mail.example.net", "username": "u", "password": SECRET},
}


@pytest.mark.parametrize(("name", "port", "mode"), list(_ports()))
def test_every_offered_port_gets_its_tls_mode(name, port, mode):
    s = resolve({**BASE[name], "port": port})
    assert s["relay"]["tls"] == mode
    assert s["main_cf"]["relayhost"].endswith(f"]:{port}")
    assert s["sasl"]["key"] == s["main_cf"]["relayhost"]
    assert ("smtp_tls_wrappermode" in s["main_cf"]) == (mode == "implicit")
    # The explicit tls key agrees with the port: accepted, same result.
    assert resolve({**BASE[name], "port": port, "tls": mode})["main_cf"] == s["main_cf"]


@pytest.mark.parametrize(
    ("port", "tls", "wrapper"),
    [(465, "implicit", "yes"), (2465, "implicit", "yes"), (2525, "starttls", None), (25, "starttls", None)],
)
def test_custom_port_derives_tls(port, tls, wrapper):
    s = resolve({**BASE["custom"], "port": port})
    assert s["relay"]["tls"] == tls
    assert s["main_cf"].get("smtp_tls_wrappermode") == wrapper


def test_custom_explicit_tls_overrides_port_rule():
    s = resolve({**BASE["custom"], "port": 10465, "tls": "implicit"})
    assert s["main_cf"]["smtp_tls_wrappermode"] == "yes"
    s = resolve({**BASE["custom"], "port": 465, "tls": "starttls"})
    assert "smtp_tls_wrappermode" not in s["main_cf"]


def test_port_as_digit_string_is_accepted():
    assert resolve({**BASE["sendgrid"], "port": "2525"})["relay"]["port"] == 2525


def test_tls_verify_false_means_encrypt_never_none():
    cf = main_cf({**BASE["sendgrid"], "tls_verify": False})
    assert cf["smtp_tls_security_level"] == "encrypt"
    cf = main_cf({**BASE["sendgrid"], "port": 465, "tls_verify": False})
    assert (cf["smtp_tls_security_level"], cf["smtp_tls_wrappermode"]) == ("encrypt", "yes")


def test_sendgrid_guide_extra():
    assert main_cf(BASE["sendgrid"])["header_size_limit"] == "4096000"
    assert "header_size_limit" not in main_cf(BASE["mailgun"])


def test_host_override_keeps_provider_username_rules():
    s = resolve({**BASE["sendgrid"], "host": "smtp-proxy.internal.example", "port": 10025})
    assert s["sasl"]["key"] == "[smtp-proxy.internal.example]:10025"
    assert s["sasl"]["username"] == "apikey"


def test_ses_unknown_but_wellformed_region_with_host_override():
    s = resolve({**BASE["ses"], "region": "xx-new-1", "host": "email-smtp.xx-new-1.amazonaws.com"})
    assert s["relay"]["host"] == "email-smtp.xx-new-1.amazonaws.com"


# --------------------------------------------------------------------------
# The hardened send-only baseline holds for every provider.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BASE))
def test_security_baseline(name):
    cf = main_cf(BASE[name])
    assert cf["inet_interfaces"] == "loopback-only"
    assert cf["mynetworks"] == "127.0.0.0/8 [::1]/128"
    assert cf["smtpd_relay_restrictions"] == "permit_mynetworks, reject_unauth_destination"
    assert cf["smtpd_sasl_auth_enable"] == "no"
    assert cf["smtp_sasl_auth_enable"] == "yes"
    assert cf["smtp_sasl_security_options"] == "noanonymous"
    assert cf["smtp_sasl_tls_security_options"] == "noanonymous"
    assert cf["smtp_sasl_password_maps"] == "hash:/etc/postfix/sasl_passwd"
    assert cf["smtp_tls_CAfile"] == "/etc/ssl/certs/ca-certificates.crt"
    assert cf["smtp_sasl_auth_soft_bounce"] == "yes"
    assert "TLSv1.1" in cf["smtp_tls_mandatory_protocols"]


def test_main_cf_order_is_stable_and_sections_cover_all_keys():
    s = resolve(BASE["mailgun"])
    keys = [k for section in s["main_cf_sections"] for k in section["params"]]
    assert keys == list(s["main_cf"])
    assert len(keys) == len(set(keys))
    assert keys[:2] == ["compatibility_level", "myhostname"]
    assert resolve(BASE["mailgun"])["main_cf_sections"] == s["main_cf_sections"]


# --------------------------------------------------------------------------
# main_cf overrides
# --------------------------------------------------------------------------
def test_main_cf_overrides_go_last_sorted_and_replace_defaults():
    s = resolve(
        {
            **BASE["sendgrid"],
            "main_cf": {
                "smtp_host_lookup": "native",
                "header_size_limit": 102400,
                "biff": True,
                "maximal_backoff_time": None,
                "smtp_tls_ciphers": ["high", "medium"],
            },
        }
    )
    last = s["main_cf_sections"][-1]
    assert last["comment"] == "From pillar postfix_relay:main_cf"
    assert list(last["params"]) == ["biff", "header_size_limit", "smtp_host_lookup", "smtp_tls_ciphers"]
    assert s["main_cf"]["header_size_limit"] == "102400"
    assert s["main_cf"]["biff"] == "yes"
    assert s["main_cf"]["smtp_tls_ciphers"] == "high, medium"
    assert "maximal_backoff_time" not in s["main_cf"]
    keys = [k for section in s["main_cf_sections"] for k in section["params"]]
    assert len(keys) == len(set(keys))


def test_protected_override_needs_opt_in():
    s = resolve(
        {**BASE["sendgrid"], "main_cf": {"inet_interfaces": "all"}, "allow_unsafe_overrides": ["inet_interfaces"]}
    )
    assert s["main_cf"]["inet_interfaces"] == "all"
    assert s["restart_params"] == {"inet_interfaces": "all"}


def test_restart_params_default():
    assert resolve(BASE["sendgrid"])["restart_params"] == {"inet_interfaces": "loopback-only"}


# --------------------------------------------------------------------------
# OS families
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("facts", "db", "cache", "ca", "sasl_pkg", "level", "suffix"),
    [
        (DEBIAN12, "hash", "btree", "/etc/ssl/certs/ca-certificates.crt", "libsasl2-modules", "3.6", ".db"),
        (DEBIAN13, "hash", "btree", "/etc/ssl/certs/ca-certificates.crt", "libsasl2-modules", "3.6", ".db"),
        (REDHAT8, "hash", "btree", "/etc/pki/tls/certs/ca-bundle.crt", "cyrus-sasl-plain", "2", ".db"),
        (REDHAT9, "lmdb", "lmdb", "/etc/pki/tls/certs/ca-bundle.crt", "cyrus-sasl-plain", "2", ".lmdb"),
    ],
)
def test_os_family_defaults(facts, db, cache, ca, sasl_pkg, level, suffix):
    s = resolve(BASE["ses"], facts)
    assert s["db_type"] == db
    assert s["main_cf"]["smtp_sasl_password_maps"] == f"{db}:/etc/postfix/sasl_passwd"
    assert s["main_cf"]["smtp_tls_session_cache_database"].startswith(f"{cache}:")
    assert s["main_cf"]["smtp_tls_CAfile"] == ca
    assert sasl_pkg in s["packages"] and "postfix" in s["packages"]
    assert s["main_cf"]["compatibility_level"] == level
    assert s["paths"]["sasl_passwd_db"] == "/etc/postfix/sasl_passwd" + suffix
    assert bool(s["debconf"]) == (facts["os_family"] == "Debian")


def test_unsupported_os_family():
    assert "os_family 'Windows' is not supported" in error_of(BASE["sendgrid"], {"os_family": "Windows"})


@pytest.mark.parametrize(
    ("fqdn", "expected"),
    [
        ("web1.example.com", "web1.example.com"),
        ("web1", "web1.localdomain"),
        ("", "minion1.localdomain"),
        ("WEB1.Example.COM.", "web1.example.com"),
    ],
)
def test_myhostname_from_grains(fqdn, expected):
    facts = {**DEBIAN12, "fqdn": fqdn, "host": "", "id": "minion1"}
    assert main_cf(BASE["sendgrid"], facts)["myhostname"] == expected


def test_myhostname_from_pillar():
    assert main_cf({**BASE["sendgrid"], "myhostname": "relay.example.org"})["myhostname"] == "relay.example.org"


# --------------------------------------------------------------------------
# Secrets: redaction and the sasl map
# --------------------------------------------------------------------------
def test_settings_hold_no_secret():
    s = resolve(BASE["sendgrid"])
    assert SECRET not in repr(s)
    assert s["sasl_passwd"] == [
        {"key": "[smtp.sendgrid.net]:587", "username": "apikey", "password_pillar": "postfix_relay:password"}
    ]


def test_postmark_token_used_as_username_is_hidden_and_read_from_pillar():
    pillar = {"provider": "postmark", "password": "pm-token-xyz"}
    s = resolve(pillar)
    assert "pm-token-xyz" not in repr(s)
    assert s["sasl_passwd"][0]["username"] is None
    assert sasl_passwd_file(s, pillar).splitlines()[1:] == ["[smtp.postmarkapp.com]:587 pm-token-xyz:pm-token-xyz"]


def test_sasl_passwd_key_matches_relayhost():
    pillar = {**BASE["ses"], "port": 2465}
    s = resolve(pillar)
    text = sasl_passwd_file(s, pillar)
    line = [x for x in text.splitlines() if not x.startswith("#")]
    assert line == [f"[email-smtp.us-east-1.amazonaws.com]:2465 AKIA:{SECRET}"]
    assert line[0].split()[0] == s["main_cf"]["relayhost"]
    assert text.endswith(f"{SECRET}\n")


def test_clean_settings_need_no_pillar_and_relay_nothing():
    for pillar in (None, {}, {"provider": "nope"}, {"myhostname": "box.example.org"}):
        s = pfr.resolve_clean(pillar, DEBIAN12)
        cf = {k: v for sec in s["main_cf_sections"] for k, v in sec["params"].items()}
        assert "relayhost" not in cf and not any(k.startswith("smtp_sasl") for k in cf)
        assert cf["inet_interfaces"] == "loopback-only"
        assert cf["default_transport"].startswith("retry:")
    assert "box.example.org" in repr(pfr.resolve_clean({"myhostname": "box.example.org"}, DEBIAN12))


def test_map_is_current(tmp_path):
    src = tmp_path / "sasl_passwd"
    src.write_text("x")
    assert not pfr.map_is_current(str(src), "hash")
    db = tmp_path / "sasl_passwd.db"
    db.write_text("")
    assert pfr.map_is_current(str(src), "hash")
    import os

    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, src.stat().st_mtime_ns - 1))
    assert not pfr.map_is_current(str(src), "hash")
    assert not pfr.map_is_current(str(src), "lmdb")


# --------------------------------------------------------------------------
# Bad input: one clear message naming the key and what is allowed.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("pillar", "fragments"), [pytest.param(p, f, id=i) for i, p, f in BAD_PILLARS])
def test_bad_pillar_is_refused_with_a_clear_message(pillar, fragments):
    message = error_of(pillar)
    assert message.startswith("postfix_relay: invalid pillar, nothing was changed on this minion:")
    for fragment in fragments:
        assert fragment in message, message
    assert "saltutil.refresh_pillar" in message  # names the next step


def test_bad_pillar_message_never_echoes_secrets():
    for pillar in (
        {"provider": "sendgrid", "password": "Sekrit\nValue"},
        {"provider": "sendgrid", "password": " SekritValue"},
        {"provider": "postmark", "password": "Sekrit:Value"},
        {"provider": "nope", "password": "SekritValue\n", "username": " SekritUser"},
    ):
        message = error_of(pillar)
        assert "Sekrit" not in message, message


def test_pillar_not_a_mapping():
    with pytest.raises(pfr.PillarError, match="must be a mapping"):
        resolve(["provider", "sendgrid"])


# --------------------------------------------------------------------------
# django_env: Django's EMAIL_* settings from the same pillar
# --------------------------------------------------------------------------
def _env(pillar):
    """The env file as the template renders it, and its variables as sh reads them."""
    import subprocess

    s = resolve(pillar)
    text = render_file(s, "env", pillar)
    out = subprocess.run(
        ["env", "-i", "sh", "-c", 'set -a; . /dev/stdin; set +a; env -0'],
        input=text, capture_output=True, text=True, check=True,
    )  # fmt: skip
    variables = dict(item.split("=", 1) for item in out.stdout.split("\0") if item.startswith("EMAIL_"))
    return variables, text


def test_django_env_relay_mode_is_djangos_defaults():
    env, text = _env({**BASE["sendgrid"], "django_env": {"path": "/etc/app/email.env"}})
    assert env == {
        "EMAIL_HOST": "localhost",
        "EMAIL_PORT": "25",
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": "False",
        "EMAIL_USE_SSL": "False",
    }
    assert SECRET not in text


@pytest.mark.parametrize(("port", "use_tls", "use_ssl"), [(587, "True", "False"), (465, "False", "True")])
def test_django_env_direct_mode_exactly_one_tls_flag(port, use_tls, use_ssl):
    env, _ = _env({**BASE["sendgrid"], "port": port, "django_env": {"path": "/etc/app/email.env", "mode": "direct"}})
    assert env["EMAIL_HOST"] == "smtp.sendgrid.net" and env["EMAIL_PORT"] == str(port)
    assert env["EMAIL_HOST_USER"] == "apikey" and env["EMAIL_HOST_PASSWORD"] == SECRET
    assert (env["EMAIL_USE_TLS"], env["EMAIL_USE_SSL"]) == (use_tls, use_ssl)


def test_django_env_quoting_survives_sh():
    tricky = 'a "q" $HOME `x` \\ b'
    env, _ = _env({**BASE["custom"], "password": tricky, "django_env": {"path": "/e/x.env", "mode": "direct"}})
    assert env["EMAIL_HOST_PASSWORD"] == tricky


def test_django_env_settings_hold_no_secret():
    s = resolve({**BASE["sendgrid"], "django_env": {"path": "/etc/app/email.env", "mode": "direct"}})
    assert {k: s["django_env"][k] for k in ("path", "mode", "user", "group")} == {
        "path": "/etc/app/email.env", "mode": "direct", "user": "root", "group": "root",
    }  # fmt: skip
    assert SECRET not in repr(s)


@pytest.mark.parametrize(
    ("django_env", "fragment"),
    [
        ("yes", "postfix_relay:django_env must be a mapping"),
        ({"path": "relative/email.env"}, "postfix_relay:django_env:path must be an absolute file path"),
        ({"path": "/etc/app/"}, "postfix_relay:django_env:path must be an absolute file path"),
        ({"path": "/etc/app/x.env", "mode": "smtp"}, "postfix_relay:django_env:mode must be relay"),
        ({"path": "/etc/app/x.env", "user": "Bad User"}, "postfix_relay:django_env:user must be a system user name"),
        ({"path": "/etc/app/x.env", "owner": "www-data"}, "postfix_relay:django_env:owner is not a known key"),
    ],
)
def test_django_env_bad_input(django_env, fragment):
    assert fragment in error_of({**BASE["sendgrid"], "django_env": django_env})


# --------------------------------------------------------------------------
# Performance: TLS connection reuse and pacing
# --------------------------------------------------------------------------
def test_tls_connection_reuse_to_the_relayhost():
    cf = main_cf(BASE["mailgun"])
    assert cf["smtp_tls_connection_reuse"] == "yes"
    # Postfix matches the bare next-hop host ("$relayhost" = [host]:587 would never match).
    assert cf["smtp_connection_cache_destinations"] == "smtp.mailgun.org"


@pytest.mark.parametrize(
    ("pillar", "expected"),
    [
        ({}, {"smtp_destination_concurrency_limit": "10"}),
        ({"concurrency": 5}, {"smtp_destination_concurrency_limit": "5"}),
        ({"rate_per_second": 1}, {"smtp_destination_concurrency_limit": "10", "smtp_destination_rate_delay": "1s"}),
        ({"rate_per_second": 0.2}, {"smtp_destination_concurrency_limit": "10", "smtp_destination_rate_delay": "5s"}),
        # The SES preset's sandbox rate (1/s); an explicit rate still wins.
        ({"sandbox": True}, {"smtp_destination_concurrency_limit": "10", "smtp_destination_rate_delay": "1s"}),
        (
            {"sandbox": True, "rate_per_second": 0.5},
            {"smtp_destination_concurrency_limit": "10", "smtp_destination_rate_delay": "2s"},
        ),
        ({"sandbox": False}, {"smtp_destination_concurrency_limit": "10"}),
    ],
)
def test_pacing_knobs(pillar, expected):
    cf = main_cf({**BASE["ses"], **pillar})
    assert {k: v for k, v in cf.items() if k.startswith("smtp_destination_")} == expected


# --------------------------------------------------------------------------
# Operations: log and queue parsing behind postfix_relay.status / send_test
# --------------------------------------------------------------------------
SENT = (
    "postfix/smtp[2287]: 2829A1AA9A8: to=<customer@example.org>, relay=smtp.sendgrid.net[127.0.0.2]:587, "
    "delay=0.12, delays=0.01/0.1/0.01/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as fake)"
)
DEFERRED = (
    "4F1B3198028: to=<a@example.org>, relay=none, delay=31, delays=30/0.01/0.5/0, dsn=4.4.1, "
    "status=deferred (connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused)"
)


def test_parse_delivery_lines():
    assert pfr.parse_delivery(SENT) == {
        "queue_id": "2829A1AA9A8",
        "to": "customer@example.org",
        "relay": "smtp.sendgrid.net[127.0.0.2]:587",
        "status": "sent",
        "reason": "250 2.0.0 Ok: queued as fake",
    }
    assert pfr.parse_delivery(DEFERRED)["reason"] == "connect to smtp.sendgrid.net[127.0.0.2]:587: Connection refused"
    assert pfr.parse_delivery("postfix/qmgr[1]: 4F1B3198028: removed") is None


def test_summarize_queue():
    entries = [
        {"queue_name": "deferred", "recipients": [{"address": "a@x", "delay_reason": "Connection refused"}]},
        {"queue_name": "deferred", "recipients": [{"address": "b@x", "delay_reason": "Connection refused"}]},
        {"queue_name": "deferred", "recipients": [{"address": "c@x", "delay_reason": "535 Authentication failed"}]},
        {"queue_name": "hold", "recipients": [{"address": "d@x"}]},
        {"queue_name": "active", "recipients": [{"address": "e@x"}]},
    ]
    out = pfr.summarize_queue(entries)
    assert out["queue"] == {"active": 1, "deferred": 3, "hold": 1, "incoming": 0, "maildrop": 0}
    assert out["deferral_reasons"] == [
        {"reason": "Connection refused", "messages": 2},
        {"reason": "535 Authentication failed", "messages": 1},
    ]


# --------------------------------------------------------------------------
# Operations: sender rewriting, root alias, per-sender routes
# --------------------------------------------------------------------------
OPS = {
    **BASE["postmark"],
    "from_address": "noreply@example.com",
    "sender_map": {"www-data": "app@example.com"},
    "root_alias": ["ops@example.com", "oncall@example.com"],
    "routes": [{"senders": ["@marketing.example.com", "News@Example.com"], "provider": "sendgrid", "password": SECRET}],
}


def test_sender_rewriting_rules():
    s = resolve(OPS)
    assert s["main_cf"]["sender_canonical_maps"] == "regexp:/etc/postfix/sender_canonical"
    assert s["sender_canonical"] == [
        [r"/^www-data@(web1\.example\.com|localhost|localhost\.localdomain)$/", "app@example.com"],
        # Routed senders' domains are kept too: their provider depends on the sender.
        [r"!/@(example\.com|marketing\.example\.com)$/", "noreply@example.com"],
    ]


def test_root_alias_aliases_file():
    assert render_file(resolve(OPS), "aliases").splitlines()[1:] == [
        "postmaster:    root",
        "root:          ops@example.com, oncall@example.com",
    ]
    default = next(f for f in resolve(BASE["postmark"])["files"] if f["id"] == "aliases")
    assert default["replace"] is False and default["template"] is None


def test_routes_maps_and_credentials():
    s = resolve(OPS)
    assert s["main_cf"]["sender_dependent_relayhost_maps"] == "hash:/etc/postfix/sender_relay"
    assert s["main_cf"]["smtp_sender_dependent_authentication"] == "yes"
    # Connections to every provider are reused (Postfix keys them by sender when authenticating per sender).
    assert s["main_cf"]["smtp_connection_cache_destinations"] == "smtp.postmarkapp.com, smtp.sendgrid.net"
    assert render_file(s, "sender_relay").splitlines()[1:] == [
        "@marketing.example.com [smtp.sendgrid.net]:587",
        "news@example.com [smtp.sendgrid.net]:587",
    ]
    assert sasl_passwd_file(s, OPS).splitlines()[1:] == [
        "[smtp.postmarkapp.com]:587 tok:tok",
        f"@marketing.example.com apikey:{SECRET}",
        f"news@example.com apikey:{SECRET}",
    ]
    assert SECRET not in repr(s) and "'tok'" not in repr(s)


def _mixed(main_port: int, route_port: int) -> dict:
    return {
        "provider": "sendgrid",
        "password": "main-key",
        "port": main_port,
        "routes": [
            {
                "senders": ["@mg.example.com"],
                "provider": "mailgun",
                "username": "u",
                "password": "mg",
                "port": route_port,
            },
            {"senders": ["@sg.example.com"], "provider": "sendgrid", "password": "sg2", "port": main_port},
        ],
    }


@pytest.mark.parametrize(("main_port", "route_port", "route_tls"), [(587, 465, "implicit"), (465, 587, "starttls")])
def test_route_in_another_tls_mode_gets_its_own_transport(main_port, route_port, route_tls):
    s = resolve(_mixed(main_port, route_port))
    clone = f"postfix_relay_{route_tls}"
    # The main route's mode stays main.cf's; only the other mode's senders go through the clone.
    assert s["main_cf"].get("smtp_tls_wrappermode", "no") == ("yes" if main_port == 465 else "no")
    assert s["main_cf"]["sender_dependent_default_transport_maps"] == "hash:/etc/postfix/sender_transport"
    assert s["main_cf"]["sender_dependent_relayhost_maps"] == "hash:/etc/postfix/sender_relay"
    assert render_file(s, "sender_transport").splitlines()[1:] == [f"@mg.example.com {clone}"]
    assert render_file(s, "sender_relay").splitlines()[1:] == [
        f"@mg.example.com [smtp.mailgun.org]:{route_port}",
        f"@sg.example.com [smtp.sendgrid.net]:{main_port}",
    ]
    services = {x["id"]: x for x in s["master_cf_services"]}
    assert services[clone]["present"] and sum(x["present"] for x in services.values()) == 1
    wrapper = "yes" if route_tls == "implicit" else "no"
    assert services[clone]["entry"] == f"{clone} unix - - n - - smtp -o smtp_tls_wrappermode={wrapper}"
    shown = {r["senders"][0]: (r["tls"], r["port"], r["transport"]) for r in s["routes"]}
    assert shown == {
        "@mg.example.com": (route_tls, route_port, clone),
        "@sg.example.com": ("implicit" if main_port == 465 else "starttls", main_port, "smtp"),
    }
    compiled = [f["compile"]["command"] for f in s["files"] if f["present"] and f["compile"]]
    assert "postmap hash:/etc/postfix/sender_transport" in compiled


def test_no_clone_transport_unless_a_route_needs_one():
    for pillar in (BASE["sendgrid"], OPS, {"enabled": False}, {**_mixed(587, 465), "enabled": False}):
        s = resolve(pillar)
        assert not any(x["present"] for x in s["master_cf_services"])
        assert "sender_dependent_default_transport_maps" not in s["main_cf"]
        assert not next(f for f in s["files"] if f["id"] == "sender_transport")["present"]
    clean = pfr.resolve_clean(_mixed(587, 465), DEBIAN12)
    assert not any(x["present"] for x in clean["master_cf_services"])
    assert "/etc/postfix/sender_transport" in {f["path"] for f in clean["files"] if not f["present"]}


def test_no_optional_feature_no_extra_parameters():
    cf = main_cf(BASE["sendgrid"])
    assert not {"sender_canonical_maps", "sender_dependent_relayhost_maps"} & set(cf)


# --------------------------------------------------------------------------
# Environments: redirect_all_to and enabled: false
# --------------------------------------------------------------------------
def test_redirect_all_to_rules_and_parameters():
    s = resolve({**BASE["mailgun"], "redirect_all_to": ["QA@example.com", "qa2@example.com"]})
    assert s["main_cf"]["virtual_alias_maps"] == "regexp:/etc/postfix/redirect_recipients"
    assert s["main_cf"]["smtpd_recipient_restrictions"] == (
        "check_recipient_access regexp:/etc/postfix/redirect_headers"
    )
    assert s["redirect_recipients"] == [
        [r"/^qa@example\.com$/", "qa@example.com"],
        [r"/^qa2@example\.com$/", "qa2@example.com"],
        ["/./", "qa@example.com, qa2@example.com"],
    ]


def test_disabled_needs_no_provider_and_holds_everything():
    for pillar in ({"enabled": False}, {**BASE["sendgrid"], "enabled": False}):
        s = resolve(pillar)
        assert s["enabled"] is False and s["sasl"] is None
        assert s["main_cf"]["header_checks"] == "static:HOLD"
        # Whatever releases the mail, the transport itself can only defer (no relayhost, no MX).
        assert s["main_cf"]["default_transport"].startswith("retry:")
        assert s["main_cf"]["relay_transport"].startswith("retry:")
        # ... and SMTP submissions are still accepted (smtpd would answer 450 for a retry transport).
        assert s["main_cf"]["smtpd_reject_unlisted_recipient"] == "no"
        assert s["main_cf"]["soft_bounce"] == "yes"
        assert "relayhost" not in s["main_cf"]
        assert s["main_cf"]["inet_interfaces"] == "loopback-only"
        assert SECRET not in repr(s)
    assert resolve(BASE["sendgrid"])["enabled"] is True
