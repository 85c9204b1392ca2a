"""Issue 12, fail-closed: a private CA stays verified, addresses carry no instructions, pacing never exceeds the rate."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from harness.formula import DEBIAN12, REDHAT9, pfr

CA = "/etc/ssl/corp/root-ca.pem"
CUSTOM = {"provider": "custom", "host": "smtp.corp.example", "username": "relay", "password": "pw"}


def resolve(pillar, os_facts=DEBIAN12):
    return pfr.resolve(pillar, os_facts)


def error_of(pillar, os_facts=DEBIAN12) -> str:
    with pytest.raises(pfr.PillarError) as info:
        pfr.resolve(pillar, os_facts)
    return str(info.value)


# --------------------------------------------------------------------------
# tls_ca_file: a relay whose certificate comes from a private CA
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pillar",
    [
        pytest.param({**CUSTOM, "tls_ca_file": CA}, id="custom"),
        pytest.param(
            {"provider": "ses", "region": "eu-west-1", "host": "ses-proxy.corp.example", "username": "u"}
            | {"password": "pw", "tls_ca_file": CA},
            id="host-override",
        ),
        pytest.param(
            {
                "provider": "sendgrid",
                "password": "pw",
                "tls_ca_file": CA,
                "routes": [{"senders": ["@corp.example.com"], **CUSTOM}],
            },
            id="route-host",
        ),
    ],
)
def test_tls_ca_file_is_trusted_next_to_the_os_cas_and_verification_stays_secure(pillar):
    s = resolve(pillar)
    cf = s["main_cf"]
    assert cf["smtp_tls_security_level"] == "secure"
    assert cf["smtp_tls_CAfile"] == CA
    # The OS's CAs stay trusted (hashed directory): routes to public providers still verify.
    assert cf["smtp_tls_CApath"] == "/etc/ssl/certs"
    # Debian copies CApath into Postfix's chroot when Postfix starts: a change restarts it.
    assert s["restart_params"]["smtp_tls_CApath"] == "/etc/ssl/certs"
    tls_section = next(sec for sec in s["main_cf_sections"] if "smtp_tls_CAfile" in sec["params"])
    assert "tls_ca_file" in tls_section["comment"]


def test_tls_ca_file_on_redhat_uses_the_hashed_trust_directory():
    cf = resolve({**CUSTOM, "tls_ca_file": CA}, REDHAT9)["main_cf"]
    assert cf["smtp_tls_CAfile"] == CA
    assert cf["smtp_tls_CApath"] == "/etc/pki/ca-trust/extracted/pem/directory-hash"


def test_without_tls_ca_file_nothing_changes():
    s = resolve(CUSTOM)
    assert s["main_cf"]["smtp_tls_CAfile"] == "/etc/ssl/certs/ca-certificates.crt"
    assert "smtp_tls_CApath" not in s["main_cf"]
    assert s["restart_params"] == {"inet_interfaces": "loopback-only"}


@pytest.mark.parametrize(
    "path",
    ["corp/ca.pem", "/etc/ssl/$corp.pem", "/etc/ssl/a b.pem", "/etc/ssl/a,b.pem", "/etc/../ca.pem", "/etc/ssl/", 7],
)
def test_tls_ca_file_path_must_be_plain_and_absolute(path):
    message = error_of({**CUSTOM, "tls_ca_file": path})
    assert "postfix_relay:tls_ca_file must be the absolute path of a PEM file" in message


def test_tls_ca_file_with_unknown_provider_still_reports_the_path():
    message = error_of({"provider": "sendgird", "password": "x", "tls_ca_file": "ca.pem"})
    assert "postfix_relay:tls_ca_file must be the absolute path" in message


# --------------------------------------------------------------------------
# main_cf: Postfix's own (mixed-case) parameter names
# --------------------------------------------------------------------------
def test_main_cf_accepts_mixed_case_parameter_names():
    cf = resolve({**CUSTOM, "main_cf": {"lmtp_tls_CAfile": "/etc/ssl/lmtp.pem", "smtpd_tls_CApath": "/etc/ssl/x"}})[
        "main_cf"
    ]
    assert cf["lmtp_tls_CAfile"] == "/etc/ssl/lmtp.pem"
    assert cf["smtpd_tls_CApath"] == "/etc/ssl/x"


def test_protected_mixed_case_parameter_still_needs_opt_in():
    pillar = {**CUSTOM, "main_cf": {"smtp_tls_CAfile": "/etc/ssl/other.pem"}}
    assert "postfix_relay:tls_ca_file instead" in error_of(pillar)
    cf = resolve({**pillar, "allow_unsafe_overrides": ["smtp_tls_CAfile"]})["main_cf"]
    assert cf["smtp_tls_CAfile"] == "/etc/ssl/other.pem"


def test_allow_unsafe_overrides_in_the_wrong_case_gets_a_hint():
    message = error_of({**CUSTOM, "allow_unsafe_overrides": ["smtp_tls_cafile"]})
    assert "lists 'smtp_tls_cafile', which is not a protected parameter" in message
    assert "did you mean 'smtp_tls_CAfile'" in message


# --------------------------------------------------------------------------
# Addresses: no pipes, files, includes, substitutions, spaces or control characters
# --------------------------------------------------------------------------
DANGEROUS = {
    "pipe": ("|/usr/bin/evil@example.com", "'|' is not allowed"),
    "pipe-in-local-part": ("a|b@example.com", "'|' is not allowed"),
    "leading-slash": ("/var/mail/x@example.com", "'/' is not allowed"),
    "slash": ("a/b@example.com", "'/' is not allowed"),
    "include": (":include:/etc/more", "':include:' is not allowed"),
    "dollar": ("a$1@example.com", "'$' is not allowed"),
    "dollar-brace": ("${1}@example.com", "'$' is not allowed"),
    "space": ("a b@example.com", "whitespace is not allowed"),
    "tab": ("a\tb@example.com", "control characters are not allowed"),
    "newline": ("a@example.com\nroot: |evil", "control characters are not allowed"),
    "nbsp": ("a\u00a0b@example.com", "whitespace is not allowed"),
    "comment": ("#a@example.com", "must not start with '#'"),
    "quoted": ('"a b"@example.com', "whitespace is not allowed"),
    "no-domain": ("root", "not of the form"),
    "percent-hack": ("qa%customer.example@web1.example.com", "'%' and '!' are not allowed"),
    "bang-path": ("customer.example!qa@web1.example.com", "'%' and '!' are not allowed"),
}
BASE = {"provider": "sendgrid", "password": "pw"}
ADDRESS_KEYS = {
    # key in the message: pillar carrying the value
    "from_address": lambda v: {**BASE, "from_address": v},
    "sender_map:www-data": lambda v: {**BASE, "from_address": "n@example.com", "sender_map": {"www-data": v}},
    "root_alias": lambda v: {**BASE, "root_alias": [v]},
    "redirect_all_to": lambda v: {**BASE, "redirect_all_to": v},
    "routes:0:senders": lambda v: {**BASE, "routes": [{"senders": [v], "provider": "postmark", "password": "t"}]},
}


@pytest.mark.parametrize("key", list(ADDRESS_KEYS))
@pytest.mark.parametrize("case", list(DANGEROUS))
def test_dangerous_address_is_refused_naming_key_reason_and_rule(key, case):
    value, reason = DANGEROUS[case]
    message = error_of(ADDRESS_KEYS[key](value))
    assert f"postfix_relay:{key} " in message
    assert reason in message
    assert "allowed: user@example.com, with letters, digits and" in message


@pytest.mark.parametrize("address", ["o'brien+tag@example.com", "a.b-c_d=e@mail.example.com", "x&*?^`{}~@example.com"])
def test_ordinary_addresses_are_accepted(address):
    s = resolve({**BASE, "from_address": address, "root_alias": address, "redirect_all_to": address})
    assert s["root_alias"] == [address]
    assert s["sender_canonical"][-1][1] == address


def test_route_sender_domain_is_accepted():
    s = resolve(
        {
            **BASE,
            "routes": [{"senders": ["@news.example.com", "a+b@example.com"], "provider": "postmark", "password": "t"}],
        }
    )
    assert s["routes"][0]["senders"] == ["@news.example.com", "a+b@example.com"]


def test_regexp_results_never_substitute():
    """Safe by construction: a '$' reaching a regexp-table result is written '$$' (a literal '$')."""
    assert pfr._regexp_result("a$1@example.com") == "a$$1@example.com"
    assert pfr._regexp_result("${1}") == "$${1}"
    assert pfr._redirect_rules(["a$1@example.com"]) == [
        [r"/^a\$1@example\.com$/", "a$$1@example.com"],
        ["/./", "a$$1@example.com"],
    ]


# --------------------------------------------------------------------------
# rate_per_second: the delay is rounded up, so the rate is never exceeded
# --------------------------------------------------------------------------
RATES = [
    (1, 1),
    (1.0, 1),
    (0.9, 2),
    (0.75, 2),
    (0.5, 2),
    (0.4, 3),
    (0.3333, 4),
    (1 / 3, 4),
    (0.3, 4),
    (0.25, 4),
    (0.2, 5),
    (0.1, 10),
    (0.07, 15),
    (0.05, 20),
    (0.01, 100),
    (0.001, 1000),
    (1 / 3600, 3600),
]


@pytest.mark.parametrize(("rate", "seconds"), RATES)
def test_rate_delay_is_the_smallest_whole_second_not_above_the_rate(rate, seconds):
    delay = resolve({**BASE, "rate_per_second": rate})["main_cf"]["smtp_destination_rate_delay"]
    assert delay == f"{seconds}s"
    asked = Fraction(str(rate))
    assert Fraction(1, seconds) <= asked, "faster than asked"
    assert seconds == 1 or Fraction(1, seconds - 1) > asked, "a second shorter would still be within the rate"


def test_rate_delay_against_exact_arithmetic():
    """Every rate from 0.001 to 1 in steps of 0.001: the delay is ceil(1 / rate), computed on the decimal."""
    for thousandths in range(1, 1001):
        asked = Fraction(thousandths, 1000)
        delay = pfr._rate_delay(thousandths / 1000)
        assert delay == math.ceil(1 / asked), asked
        assert Fraction(1, delay) <= asked and (delay == 1 or Fraction(1, delay - 1) > asked), asked
