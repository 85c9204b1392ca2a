"""
Resolve the ``postfix_relay`` pillar into everything the formula renders.

This execution module is the single place where the formula makes decisions:
the provider catalogue, pillar validation, OS defaults and the derived Postfix
settings all live here, as pure Python that is unit-tested without Salt.  The
SLS files and templates only loop over what :func:`resolve` returns.

Sections, in this order: CATALOGUE (providers, OS families), VALIDATION,
DERIVATION (main.cf sections per mode, the files and queue actions the SLS
loop over, secrets as pillar paths), SALT-FACING, OPERATIONS.  One file on
purpose: map.jinja checks this one file's hash against the fileserver and syncs
it when stale; helper modules would need _utils/ (another sync, another
staleness check) for no gain.

Data flow::

    pillar postfix_relay:*  +  OS facts (grains)
        -> resolve()   validate, apply the provider preset, derive
        -> one dict:   packages, main_cf sections, sasl map, db type, CA file
        -> settings()  the same dict (it holds no secret: safe to show)

Secrets take the shortest path: no function here returns one.  resolve()
validates the passwords and hands on only their pillar paths; the two file
templates that need a secret (``sasl_passwd``, Django's env file) read it from
pillar while the minion renders them.  So it is never a state argument (state
output, caches) nor the answer of an execution function (``__load__`` lists
the few that Salt exposes).

:depends: nothing beyond the Python standard library.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

log = logging.getLogger(__name__)

__virtualname__ = "postfix_relay"
# The execution functions Salt exposes (`salt '*' postfix_relay.<name>`); everything
# else here is a helper.  None of them returns a secret: a master ACL that lets
# operators run postfix_relay.* must not let them collect the fleet's API keys.
__load__ = ["settings", "status", "send_test", "map_is_current", "self_sync"]

PILLAR_ROOT = "postfix_relay"
# This file on the fileserver (the repository root is served: postfix_relay/ and _modules/).
SOURCE = "salt://_modules/postfix_relay.py"
REDACTED = "<redacted>"

STARTTLS = "starttls"
IMPLICIT = "implicit"
TLS_MODES = (STARTTLS, IMPLICIT)
DEFAULT_PORT = 587
DEFAULT_CONCURRENCY = 10
# Ports that mean implicit TLS (TLS from the first byte) for a custom host.
IMPLICIT_PORTS = (465, 2465)
# A route whose TLS mode differs from the main route's is delivered by a clone of
# Postfix's smtp transport (master.cf) with that mode's -o setting; main.cf's own
# smtp_tls_wrappermode stays the main route's.  One clone per mode, shared by the
# routes that speak it; a clone no route uses is removed.
ROUTE_TRANSPORTS = {
    IMPLICIT: ("postfix_relay_implicit", {"smtp_tls_wrappermode": "yes"}),
    STARTTLS: ("postfix_relay_starttls", {"smtp_tls_wrappermode": "no"}),
}

# --------------------------------------------------------------------------
# CATALOGUE: providers.  The one place that knows each provider.
# Adding a provider = adding one entry here (and one unit test).
# ``ports`` maps each port the provider offers to the TLS mode it speaks.
# ``username``: "fixed:<value>" (the provider fixes it), "password" (defaults
# to the password, as Postmark's server token), or None (required in pillar).
# ``main_cf``: extra parameters the provider's own Postfix guide sets.
# --------------------------------------------------------------------------
SES_REGIONS = (
    "af-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
)

PROVIDERS: dict[str, dict[str, Any]] = {
    "sendgrid": {
        "title": "SendGrid",
        "hosts": {None: "smtp.sendgrid.net"},
        "ports": {25: STARTTLS, 587: STARTTLS, 2525: STARTTLS, 465: IMPLICIT},
        "username": "fixed:apikey",
        "main_cf": {"header_size_limit": "4096000"},
    },
    "mailgun": {
        "title": "Mailgun",
        "hosts": {"us": "smtp.mailgun.org", "eu": "smtp.eu.mailgun.org"},
        "default_region": "us",
        "ports": {25: STARTTLS, 587: STARTTLS, 2525: STARTTLS, 465: IMPLICIT},
        "username": None,
        "main_cf": {},
    },
    "ses": {
        "title": "Amazon SES",
        "host_template": "email-smtp.{region}.amazonaws.com",
        "regions": SES_REGIONS,
        "ports": {25: STARTTLS, 587: STARTTLS, 2587: STARTTLS, 465: IMPLICIT, 2465: IMPLICIT},
        "username": None,
        "main_cf": {},
        # New accounts start in the sandbox: 1 message per second, 200 a day, verified
        # recipients only.  Faster sends get "454 Throttling failure" (deferred, retried).
        "sandbox": {"rate_per_second": 1},
    },
    "postmark": {
        "title": "Postmark",
        "hosts": {None: "smtp.postmarkapp.com"},
        "ports": {25: STARTTLS, 587: STARTTLS, 2525: STARTTLS},
        "username": "password",
        "main_cf": {},
    },
    "custom": {
        "title": "custom SMTP host",
        "hosts": {},
        "ports": None,
        "username": None,
        "main_cf": {},
    },
}

# --------------------------------------------------------------------------
# CATALOGUE: OS defaults, per os_family.  Only what differs between families lives here;
# what differs between releases of one family is in os_defaults() below.
# --------------------------------------------------------------------------
OS_FAMILIES: dict[str, dict[str, Any]] = {
    "Debian": {
        "packages": ["postfix", "libsasl2-modules", "ca-certificates"],
        "ca_file": "/etc/ssl/certs/ca-certificates.crt",
        # The same CAs as a hashed directory (smtp_tls_CApath), used next to tls_ca_file.
        "ca_path": "/etc/ssl/certs",
        "db_type": "hash",
        "cache_db_type": "btree",
        # Preseed so that installing postfix asks nothing and starts nothing
        # until our main.cf is in place.
        "debconf": [["postfix", "postfix/main_mailer_type", "select", "No configuration"]],
        "edits": [],
    },
    "RedHat": {
        "packages": ["postfix", "cyrus-sasl-plain", "ca-certificates"],
        "ca_file": "/etc/pki/tls/certs/ca-bundle.crt",
        "ca_path": "/etc/pki/ca-trust/extracted/pem/directory-hash",
        "db_type": "hash",
        "cache_db_type": "btree",
        "debconf": [],
        "edits": [],
    },
    "Suse": {
        # SUSE's postfix is built without Berkeley DB, lmdb the default and built in
        # (it Provides postfix-lmdb); /etc/ssl/ca-bundle.pem holds the CAs of
        # ca-certificates-mozilla (ca-certificates alone brings only the tooling).
        "packages": ["postfix", "cyrus-sasl-plain", "ca-certificates", "ca-certificates-mozilla"],
        "ca_file": "/etc/ssl/ca-bundle.pem",
        "ca_path": "/etc/ssl/certs",
        "db_type": "lmdb",
        "cache_db_type": "lmdb",
        "debconf": [],
        # config.postfix (SuSEconfig), run by postfix.service at every start, rewrites
        # main.cf from /etc/sysconfig/postfix unless MAIL_CREATE_CONFIG (in
        # /etc/sysconfig/mail) is "no".
        "edits": [
            {
                "id": "sysconfig_mail",
                "path": "/etc/sysconfig/mail",
                "key": "MAIL_CREATE_CONFIG",
                "value": '"no"',
            }
        ],
    },
}

# Postfix's lmdb map plugin is a separate package on Fedora and EL 9+ (built in on SUSE).
LMDB_PLUGIN_PACKAGE = "postfix-lmdb"

# File name suffix that ``postmap`` gives the compiled map, per database type.
DB_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}

CONFIG_DIR = "/etc/postfix"
ALIASES = "/etc/aliases"

# main.cf parameters that decide who may relay, where credentials go and
# whether they travel encrypted.  ``main_cf`` may only override them when the
# same name is also listed in ``allow_unsafe_overrides``.
PROTECTED_PARAMS = frozenset(
    {
        "default_transport",
        "inet_interfaces",
        "mynetworks",
        "mynetworks_style",
        "relay_transport",
        "relayhost",
        "sender_dependent_relayhost_maps",
        "smtp_sasl_auth_enable",
        "smtp_sasl_mechanism_filter",
        "smtp_sasl_password_maps",
        "smtp_sasl_security_options",
        "smtp_sasl_tls_security_options",
        "smtp_tls_CAfile",
        "smtp_tls_CApath",
        "smtp_tls_mandatory_protocols",
        "smtp_tls_policy_maps",
        "smtp_tls_security_level",
        "smtp_tls_wrappermode",
        "smtpd_client_restrictions",
        "smtpd_recipient_restrictions",
        "smtpd_relay_restrictions",
        "smtpd_sasl_auth_enable",
        "transport_maps",
        # Routing and address rewriting: each can send mail past the relay or the redirect.
        "content_filter",
        "receive_override_options",
        "sender_dependent_default_transport_maps",
        "smtp_fallback_relay",
        "virtual_alias_domains",
        "virtual_alias_maps",
    }
)
# With redirect_all_to these are refused even when allow_unsafe_overrides names them:
# the redirect (virtual_alias_maps, applied at cleanup) must hold, it is the promise.
REDIRECT_PARAMS = frozenset({"receive_override_options", "virtual_alias_domains", "virtual_alias_maps"})

# With a route in the other TLS mode (a clone transport), these are refused even when
# allow_unsafe_overrides names them: each would send some routed senders in the wrong
# mode (wrappermode, the sender maps) or around the clone (relay_domains' relay_transport).
CLONE_PARAMS = frozenset(
    {
        "relay_domains",
        "sender_dependent_default_transport_maps",
        "sender_dependent_relayhost_maps",
        "smtp_tls_wrappermode",
    }
)
# The per-transport limits qmgr reads by master.cf service name: each clone follows smtp's.
CLONE_PACING = ("destination_concurrency_limit", "destination_rate_delay")

# Parameters whose change needs a stop/start, not a reload.  smtp_tls_CApath: the
# smtp client and tlsproxy read that directory inside Postfix's chroot jail, and
# Debian copies it there only when Postfix starts (configure-instance.sh).
RESTART_PARAMS = ("inet_interfaces", "inet_protocols", "smtp_tls_CApath")

# Every key the pillar may carry, with a one-line description used in errors.
PILLAR_KEYS = {
    "provider": "sendgrid | mailgun | ses | postmark | custom",
    "region": "ses: AWS region; mailgun: us | eu",
    "host": "SMTP host name (custom: required)",
    "port": "integer 1-65535, default 587",
    "tls": "starttls | implicit",
    "tls_verify": "true | false",
    "tls_ca_file": "custom host or host override: absolute path of the PEM file with the relay's private CA",
    "username": "SMTP username",
    "password": "SMTP password or API key",
    "myhostname": "this host's fully qualified name",
    "concurrency": "parallel connections to the provider (1-100, default 10)",
    "rate_per_second": "at most this many messages per second, 1 or less (e.g. SES sandbox: 1)",
    "sandbox": "ses: true while the account is in the SES sandbox (paces to its 1 message per second)",
    "main_cf": "extra main.cf parameters (name: value)",
    "allow_unsafe_overrides": "main.cf security parameters that main_cf may override",
    "django_env": "an env file with Django's EMAIL_* settings (path, mode, user, group)",
    "from_address": "verified sender that replaces local users' addresses (root@host, www-data@host, ...)",
    "sender_map": "local user -> sender address, before from_address",
    "allowed_sender_domains": "sender domains kept as they are (default: from_address's domain)",
    "root_alias": "address(es) that receive mail for root and postmaster",
    "routes": "extra providers chosen by sender: list of {senders, provider, password, ...}",
    "redirect_all_to": "staging: every message goes to these address(es) instead of its recipients",
    "enabled": "false: relay nothing, hold every message until enabled again",
    "monitoring": "relay health: {textfile: PATH.prom, interval: SECONDS, beacon: {...}} (off when absent)",
}

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
# Postfix parameter names are case-sensitive and some are mixed-case (smtp_tls_CAfile).
_PARAM_RE = re.compile(r"[A-Za-z0-9_]+")
# An absolute path as main.cf may carry it: no '$' (expanded), no spaces or commas
# (list separators), no '.' or '..' components.
_ABS_PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._@+-]+)+")
_SES_REGION_RE = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


try:  # Salt shows a CommandExecutionError raised while rendering as one clean line.
    from salt.exceptions import CommandExecutionError

    _ERROR_BASES: tuple[type[Exception], ...] = (CommandExecutionError, ValueError)
except ImportError:  # plain Python: resolve() works without Salt (checked by `make check`)
    _ERROR_BASES = (ValueError,)


class PillarError(*_ERROR_BASES):
    """The pillar cannot be turned into a safe relay; the message names the keys."""


def __virtual__():
    if os.name != "posix":
        return (False, "postfix_relay: Postfix runs on POSIX minions only")
    return __virtualname__


# --------------------------------------------------------------------------
# VALIDATION: helpers.  Each returns the cleaned value or records an error.
# Secret values are never echoed back in a message.
# --------------------------------------------------------------------------
class _Errors:
    def __init__(self, messages: list[str] | None = None, prefix: str = "") -> None:
        self.messages: list[str] = [] if messages is None else messages
        self.prefix = prefix

    def add(self, key: str, text: str) -> None:
        self.messages.append(f"{PILLAR_ROOT}:{self.prefix}{key} {text}")

    def scoped(self, prefix: str) -> _Errors:
        """The same error list, for keys below ``prefix`` (e.g. ``routes:0:``)."""
        return _Errors(self.messages, self.prefix + prefix)

    def raise_if_any(self) -> None:
        if self.messages:
            lines = "\n".join(f"  - {m}" for m in self.messages)
            raise PillarError(
                f"postfix_relay: invalid pillar, nothing was changed on this minion:\n{lines}\n"
                "Fix the pillar (see pillar.example), then run "
                "`salt <target> saltutil.refresh_pillar` and apply again."
            )


def _suggest(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value).lower(), list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _text(errors: _Errors, key: str, value: Any, *, secret: bool = False) -> str | None:
    """A single-line string without surrounding whitespace, or None after an error."""
    shown = "" if secret else f", got {value!r}"
    if not isinstance(value, str):
        errors.add(
            key,
            f"must be a string{shown}: quote it in the pillar "
            "(YAML reads unquoted 0123, 1e5 or yes as numbers or booleans)",
        )
        return None
    if value == "":
        errors.add(key, "must not be empty")
        return None
    if "\n" in value or "\r" in value:
        errors.add(key, "must be a single line (it contains a newline)")
        return None
    if _CONTROL_RE.search(value):
        errors.add(key, "must not contain control characters")
        return None
    if value != value.strip():
        errors.add(key, "must not start or end with whitespace")
        return None
    return value


def _host(errors: _Errors, key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not _HOST_RE.fullmatch(value) or len(value) > 253:
        errors.add(
            key,
            f"must be a plain host name such as smtp.example.net, got {value!r} "
            "(no brackets, port, spaces or control characters; set the port with "
            f"{PILLAR_ROOT}:port)",
        )
        return None
    return value.lower()


def _port(errors: _Errors, value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        errors.add("port", f"must be an integer from 1 to 65535, got {value!r}")
        return None
    return value


def _bool(errors: _Errors, key: str, value: Any) -> bool | None:
    if not isinstance(value, bool):
        errors.add(key, f"must be true or false, got {value!r}")
        return None
    return value


def _param_value(value: Any) -> str | None:
    """main.cf value as Postfix reads it; None when the type is not allowed."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v).strip() for v in value)
    return None


def _tls_of_port(port: int) -> str:
    return IMPLICIT if port in IMPLICIT_PORTS else STARTTLS


def _describe_ports(ports: Mapping[int, str]) -> str:
    by_mode: dict[str, list[str]] = {}
    for port, mode in sorted(ports.items()):
        by_mode.setdefault(mode, []).append(str(port))
    return "; ".join(f"{', '.join(p)} ({'STARTTLS' if m == STARTTLS else 'implicit TLS'})" for m, p in by_mode.items())


# --------------------------------------------------------------------------
# DERIVATION: OS facts -> OS defaults
# --------------------------------------------------------------------------
def os_defaults(os_facts: Mapping[str, Any]) -> dict[str, Any]:
    """
    The per-OS part of the settings: packages, CA bundle, map database type,
    compatibility_level and line edits of OS files.

    ``os_facts`` carries the grains ``os_family``, ``os`` and ``osmajorrelease``.
    Chosen from grains alone, before Postfix is installed (a fresh minion has no
    ``postconf`` to ask), so the package list must bring the map type it names:

    - EL 8: ``hash`` (Berkeley DB is built into postfix).
    - EL 9+, Fedora: ``lmdb`` plus the ``postfix-lmdb`` plugin package.  EL 9 and
      Fedora still build Berkeley DB in (their default is ``hash``); RHEL 10 drops
      it, so lmdb from EL 9 on keeps the map type across a 9 -> 10 upgrade.
    - Amazon Linux 2023: ``hash`` (Fedora-derived postfix with Berkeley DB; no
      extra package needed).
    - SUSE: ``lmdb``, built into postfix.
    ``compatibility_level = 3.6`` only where the shipped Postfix is 3.6 or newer,
    else ``2`` (valid on every Postfix 3.x).  Postfix 2.x (EL 7, Amazon Linux 2)
    lacks settings main.cf needs: refused before anything changes.
    """
    family = os_facts.get("os_family")
    if family not in OS_FAMILIES:
        raise PillarError(
            f"postfix_relay: os_family {family!r} is not supported; supported: "
            f"{', '.join(OS_FAMILIES)}. Nothing was changed on this minion."
        )
    out = {
        k: ([dict(i) if isinstance(i, dict) else i for i in v] if isinstance(v, list) else v)
        for k, v in OS_FAMILIES[family].items()
    }
    os_name = str(os_facts.get("os") or "")
    try:
        major = int(os_facts.get("osmajorrelease") or 0)
    except (TypeError, ValueError):
        major = 0
    modern = False  # Postfix >= 3.6 ships with this release
    if family == "Debian":
        modern = (os_name == "Debian" and major >= 12) or (os_name == "Ubuntu" and major >= 22)
    elif family == "RedHat":
        oldest = 2023 if os_name == "Amazon" else 8
        if os_name != "Fedora" and major < oldest:
            raise PillarError(
                f"postfix_relay: {os_name or family} {major or '(unknown release)'} is not supported: its "
                f"Postfix 2.x lacks settings main.cf needs; supported: EL 8+, Fedora, Amazon Linux 2023. "
                "Nothing was changed on this minion."
            )
        if os_name == "Fedora" or (os_name != "Amazon" and major >= 9):
            out["db_type"] = out["cache_db_type"] = "lmdb"
            out["packages"].append(LMDB_PLUGIN_PACKAGE)
        modern = (os_name == "Fedora" and major >= 36) or (os_name not in ("Fedora", "Amazon") and major >= 10)
    elif family == "Suse":
        # Tumbleweed (osmajorrelease is its snapshot date) and 16: Postfix 3.8+;
        # the 3.6 level is not claimed for Leap/SLES 15.
        modern = major >= 16
    out["compatibility_level"] = "3.6" if modern else "2"
    out["os_family"] = family
    return out


def _default_myhostname(os_facts: Mapping[str, Any]) -> str:
    """The minion's FQDN; a bare host name gets ``.localdomain`` (Postfix needs a dot)."""
    name = str(os_facts.get("fqdn") or os_facts.get("host") or os_facts.get("id") or "localhost")
    name = name.lower().rstrip(".")
    if not _HOST_RE.fullmatch(name):
        name = "localhost"
    return name if "." in name else f"{name}.localdomain"


# --------------------------------------------------------------------------
# VALIDATION and DERIVATION: the resolver (pillar -> settings, per mode)
# --------------------------------------------------------------------------
def _resolve_provider(errors: _Errors, pillar: Mapping[str, Any]) -> tuple[str | None, dict | None]:
    name = pillar.get("provider")
    if name is None:
        errors.add("provider", f"is required: one of {' | '.join(PROVIDERS)}")
        return None, None
    if not isinstance(name, str) or name.lower() not in PROVIDERS:
        errors.add(
            "provider",
            f"must be one of {' | '.join(PROVIDERS)}, got {name!r}{_suggest(name, PROVIDERS)}",
        )
        return None, None
    name = name.lower()
    return name, PROVIDERS[name]


def _resolve_host(errors: _Errors, name: str, preset: dict, pillar: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(host, host_is_override)"""
    region = pillar.get("region")
    host = pillar.get("host")
    if host is not None:
        host = _host(errors, "host", host)
    if name == "custom":
        if "host" not in pillar:
            errors.add("host", "is required when provider is custom (the SMTP server's name)")
        if region is not None:
            errors.add("region", "is not used with provider custom; remove it")
        return host, True
    if name == "ses":
        if region is None:
            errors.add("region", "is required for ses: the AWS region of your SES SMTP credentials, e.g. eu-west-1")
            return host, host is not None
        if not isinstance(region, str) or not _SES_REGION_RE.fullmatch(region):
            errors.add("region", f"must be an AWS region such as eu-west-1, got {region!r}")
            return host, host is not None
        if region not in preset["regions"] and host is None:
            errors.add(
                "region",
                f"{region!r} is not an SES region known to this formula{_suggest(region, preset['regions'])}; "
                f"if AWS added it, set {PILLAR_ROOT}:host: email-smtp.{region}.amazonaws.com",
            )
            return None, False
        return host or preset["host_template"].format(region=region), host is not None
    hosts = preset["hosts"]
    if None in hosts:
        if region is not None:
            errors.add("region", f"is only used with ses and mailgun, not {name}; remove it")
        return host or hosts[None], host is not None
    region = preset["default_region"] if region is None else region
    if region not in hosts:
        errors.add(
            "region",
            f"must be one of {' | '.join(k for k in hosts)} for {name}, got {region!r}",
        )
        return host, host is not None
    return host or hosts[region], host is not None


def _resolve_port_tls(errors: _Errors, name: str, preset: dict, pillar: Mapping[str, Any], override: bool):
    port = _port(errors, pillar["port"]) if "port" in pillar else DEFAULT_PORT
    tls = pillar.get("tls")
    if tls is not None and tls not in TLS_MODES:
        errors.add(
            "tls",
            f"must be starttls (Django's EMAIL_USE_TLS) or implicit (Django's EMAIL_USE_SSL), got {tls!r}",
        )
        return port, None
    if port is None:
        return None, tls
    ports = preset["ports"]
    if ports is None or override:
        return port, tls or _tls_of_port(port)
    if tls == IMPLICIT and IMPLICIT not in ports.values():
        errors.add(
            "tls",
            f"implicit is not offered by {name} (no implicit-TLS port such as 465); "
            f"use tls: starttls with port {', '.join(str(p) for p in sorted(ports))}",
        )
        return port, None
    if port not in ports:
        errors.add("port", f"{port} is not offered by {name}; allowed: {_describe_ports(ports)}")
        return None, tls
    if tls is not None and tls != ports[port]:
        other = [str(p) for p, m in sorted(ports.items()) if m == tls]
        errors.add(
            "tls",
            f"is {tls} but {name} port {port} speaks {ports[port]}; "
            f"use port {' or '.join(other)} for {tls}, or tls: {ports[port]}",
        )
        return port, None
    return port, ports[port]


def _resolve_credentials(errors: _Errors, name: str, preset: dict, pillar: Mapping[str, Any], override: bool):
    password = None
    if "password" not in pillar or pillar.get("password") is None:
        errors.add("password", "is required (keep it in an encrypted pillar, see README)")
    else:
        password = _text(errors, "password", pillar["password"], secret=True)

    rule = preset["username"]
    if "username" in pillar:
        username = _text(errors, "username", pillar["username"], secret=(rule == "password"))
        if username is not None and ":" in username:
            errors.add("username", "must not contain ':' (Postfix splits user:password at the first colon)")
            username = None
        if username is not None and rule and rule.startswith("fixed:") and not override:
            fixed = rule.split(":", 1)[1]
            if username != fixed:
                errors.add(
                    "username",
                    f"for {name} is always {fixed!r} (the password is the API key); remove the key",
                )
                username = None
        return username, password
    if rule is None:
        errors.add("username", f"is required for {name} (the SMTP username from the provider's console)")
        return None, password
    if rule == "password":
        if password is not None and ":" in password:
            errors.add(
                "password",
                f"contains ':' and is also the default username for {name}; "
                f"set {PILLAR_ROOT}:{errors.prefix}username explicitly",
            )
        return password, password
    return rule.split(":", 1)[1], password


def _resolve_pacing(errors: _Errors, name: str, preset: Mapping[str, Any], pillar: Mapping[str, Any]) -> dict[str, str]:
    """``concurrency``, ``rate_per_second`` and ``sandbox`` as Postfix's per-destination limits.

    Postfix paces with a delay between deliveries, which implies one
    connection at a time: rates above 1/s are had with ``concurrency`` alone.
    ``sandbox: true`` takes the provider's sandbox rate from the catalogue.
    """
    out: dict[str, str] = {}
    wants_sandbox = _bool(errors, "sandbox", pillar.get("sandbox", False))
    sandbox = preset.get("sandbox") if wants_sandbox else None  # the provider's sandbox pacing
    if wants_sandbox and sandbox is None:
        with_sandbox = ", ".join(n for n, p in PROVIDERS.items() if "sandbox" in p)
        errors.add("sandbox", f"applies to providers with a sandbox rate limit ({with_sandbox}), not {name}")
    default_rate = sandbox["rate_per_second"] if sandbox else None
    # 10, not Postfix's 20: with TLS connection reuse 10 connections carry as much
    # (measured by make bench) with half the handshakes and AUTHs.
    concurrency = pillar.get("concurrency", preset.get("concurrency", DEFAULT_CONCURRENCY))
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 100:
        errors.add("concurrency", f"must be an integer from 1 to 100, got {concurrency!r}")
    else:
        out["smtp_destination_concurrency_limit"] = str(concurrency)
    rate = pillar.get("rate_per_second", default_rate)
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not MIN_RATE <= rate <= 1:
            errors.add(
                "rate_per_second",
                f"must be a number from {MIN_RATE:.6f} (one message an hour) to 1 (Postfix spaces deliveries "
                f"by whole seconds), got {rate!r}; for faster sending leave it unset and set {PILLAR_ROOT}:concurrency",
            )
        else:
            out["smtp_destination_rate_delay"] = f"{_rate_delay(rate)}s"
    return out


# Slower than one message an hour is no relay: mail would wait longer than Postfix's retry cycle.
MIN_RATE = 1 / 3600


def _rate_delay(rate: float) -> int:
    """Whole seconds between deliveries so that at most ``rate`` messages leave per second.

    Rounded up, exactly: round() would turn 0.4/s into 2 s, i.e. 0.5/s, faster
    than asked (and a sandbox or a provider's quota would answer 454).  The
    rate is read as the decimal the pillar wrote (0.4 is 2/5, not the binary
    float just above it), so 0.5 gives 2 s and 0.3333 gives 4 s (3 s would be
    0.3334/s).
    """
    return math.ceil(1 / Fraction(str(rate)))


def _resolve_main_cf_overrides(errors: _Errors, pillar: Mapping[str, Any]) -> dict[str, str | None]:
    raw = pillar.get("main_cf") or {}
    allowed = pillar.get("allow_unsafe_overrides") or []
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        errors.add("allow_unsafe_overrides", f"must be a list of main.cf parameter names, got {allowed!r}")
        allowed = []
    # Postfix names are case-sensitive: smtp_tls_cafile is not smtp_tls_CAfile.
    protected_by_lower = {p.lower(): p for p in PROTECTED_PARAMS}
    for name in allowed:
        if name not in PROTECTED_PARAMS:
            spelled = protected_by_lower.get(name.lower())
            hint = f" (Postfix names are case-sensitive: did you mean {spelled!r}?)" if spelled else ""
            errors.add(
                "allow_unsafe_overrides",
                f"lists {name!r}, which is not a protected parameter{hint}; "
                f"protected: {', '.join(sorted(PROTECTED_PARAMS))}",
            )
    if not isinstance(raw, Mapping):
        errors.add("main_cf", f"must be a mapping of main.cf parameter names to values, got {raw!r}")
        return {}
    out: dict[str, str | None] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _PARAM_RE.fullmatch(key):
            errors.add(
                "main_cf",
                f"parameter name {key!r} must match [A-Za-z0-9_]+ "
                "(a main.cf parameter, spelled as Postfix does: names are case-sensitive, e.g. lmtp_tls_CAfile)",
            )
            continue
        spelled = protected_by_lower.get(key.lower())
        if spelled is not None and spelled != key:
            errors.add(
                f"main_cf:{key}",
                f"is not a Postfix parameter (names are case-sensitive): did you mean {spelled!r}? "
                "That one is security-critical and derived from the pillar",
            )
            continue
        if key in REDIRECT_PARAMS and pillar.get("redirect_all_to") is not None:
            errors.add(
                f"main_cf:{key}",
                f"would change or switch off {PILLAR_ROOT}:redirect_all_to (staging must never mail a real "
                "recipient), so it is refused while the redirect is set, even in allow_unsafe_overrides",
            )
            continue
        if key in PROTECTED_PARAMS and key not in allowed:
            private_ca = (
                f"; for a relay whose certificate comes from a private CA, set {PILLAR_ROOT}:tls_ca_file instead"
                if key in ("smtp_tls_CAfile", "smtp_tls_CApath")
                else ""
            )
            errors.add(
                f"main_cf:{key}",
                "is security-critical (it decides who may relay or how credentials travel) "
                "and is derived from provider/host/port/tls; to override it anyway, also list "
                f"it in {PILLAR_ROOT}:allow_unsafe_overrides{private_ca}",
            )
            continue
        if value is None:
            out[key] = None
            continue
        text = _param_value(value)
        if text is None:
            errors.add(f"main_cf:{key}", f"must be a string, number, boolean or list, got {value!r}")
        elif "\n" in text or "\r" in text or _CONTROL_RE.search(text):
            errors.add(f"main_cf:{key}", "must be a single line without control characters")
        else:
            out[key] = text
    return out


def _ca_file_path(errors: _Errors, value: Any) -> str | None:
    if not isinstance(value, str) or not _ABS_PATH_RE.fullmatch(value) or len(value) > 4096:
        errors.add(
            "tls_ca_file",
            "must be the absolute path of a PEM file on the minion, such as /etc/ssl/corp/root-ca.pem "
            f"(letters, digits and . _ @ + - between slashes; no spaces, '$', ',' or '..'), got {value!r}",
        )
        return None
    return value


def _resolve_tls_ca_file(
    errors: _Errors, pillar: Mapping[str, Any], route: Mapping[str, Any], tls_verify: bool | None
) -> str | None:
    """``tls_ca_file``: the PEM bundle (on the minion) of the private CA that signed the relay's certificate.

    Only for hosts the pillar names (provider custom, a ``host`` override, or a
    route's ``host``): the providers' own hosts have public certificates.  It
    keeps verification at level ``secure`` (chain and name), so it contradicts
    ``tls_verify: false``.  It is not a route key: Postfix's CA settings are
    global to the smtp client, so the file is trusted for every route.
    """
    raw = pillar.get("tls_ca_file")
    if raw is None:
        return None
    path = _ca_file_path(errors, raw)
    key = "tls_ca_file"
    routes = pillar.get("routes")
    routed_hosts = isinstance(routes, list) and any(
        isinstance(r, Mapping) and r.get("host") is not None for r in routes
    )
    if pillar.get("host") is None and not routed_hosts:
        errors.add(
            key,
            f"is for a relay whose certificate comes from a private CA: provider custom or a host override "
            f"({PILLAR_ROOT}:host, or a route's host); {route['preset']['title']}'s {route['host']} has a "
            "certificate from a public CA, which the OS's CA bundle already trusts: remove tls_ca_file",
        )
        return None
    if tls_verify is False:
        errors.add(
            key,
            "contradicts tls_verify: false: the CA file is there to verify the relay's certificate; "
            "remove tls_verify: false (verification stays at level secure: chain and host name)",
        )
        return None
    main_cf = pillar.get("main_cf")
    for param in ("smtp_tls_CAfile", "smtp_tls_CApath"):
        if isinstance(main_cf, Mapping) and param in main_cf:
            errors.add(key, f"and {PILLAR_ROOT}:main_cf:{param} both set the trusted CAs: keep tls_ca_file only")
            return None
    return path


def resolve(
    pillar: Mapping[str, Any] | None,
    os_facts: Mapping[str, Any],
    recorded_env: Mapping[str, str] | None = None,
    action: str = "apply",
) -> dict[str, Any]:
    """
    Turn the ``postfix_relay`` pillar and the minion's OS facts into settings.

    Pure: no Salt, no I/O.  Raises :class:`PillarError` naming every bad key
    (never echoing a secret).  The result holds no secret, only the pillar
    paths of the secrets (``sasl_passwd``, ``django_env``): it is safe to show.
    ``recorded_env`` is where the formula last wrote Django's env file, if it did
    (read from the minion by the Salt wrapper): a file the pillar no longer names
    is removed, and while relaying is disabled it is rewritten in relay mode.

    ``action`` is ``apply`` (the relay, or the off switch when ``enabled`` is
    false) or ``clean`` (what ``postfix_relay.clean`` leaves: see
    :func:`resolve_clean`).  Every mode ends in :func:`_assemble`.
    """
    if pillar is None:
        pillar = {}
    if not isinstance(pillar, Mapping):
        raise PillarError(f"postfix_relay: the pillar key {PILLAR_ROOT} must be a mapping, got {type(pillar).__name__}")
    errors = _Errors()
    for key in pillar:
        if key not in PILLAR_KEYS:
            errors.add(str(key), f"is not a known key{_suggest(key, PILLAR_KEYS)}; known: {', '.join(PILLAR_KEYS)}")

    osd = os_defaults(os_facts)
    if action == "clean":
        return resolve_clean(pillar, os_facts, recorded_env)
    if action != "apply":
        raise ValueError(f"postfix_relay: action must be apply or clean, got {action!r}")
    enabled = _bool(errors, "enabled", pillar.get("enabled", True))
    if enabled is False:
        return _resolve_disabled(errors, pillar, os_facts, recorded_env)
    route = _resolve_route(errors, pillar)
    if route is None:
        errors.raise_if_any()
    name, preset, host, port, tls = (route[k] for k in ("provider", "preset", "host", "port", "tls"))
    username, password = route["username"], route["password"]
    tls_verify = _bool(errors, "tls_verify", pillar.get("tls_verify", True))
    tls_ca_file = _resolve_tls_ca_file(errors, pillar, route, tls_verify)
    routes = _resolve_routes(errors, pillar.get("routes"), tls)
    myhostname = pillar.get("myhostname")
    if myhostname is not None:
        myhostname = _host(errors, "myhostname", myhostname)
        if myhostname is not None and "." not in myhostname:
            errors.add("myhostname", f"must be fully qualified (contain a dot), got {myhostname!r}")
    overrides = _resolve_main_cf_overrides(errors, pillar)
    if any(r["transport"] != "smtp" for r in routes):
        for key in sorted(CLONE_PARAMS & set(overrides)):
            errors.add(
                f"main_cf:{key}",
                "is refused while a route uses the other TLS mode than the main route (its senders go "
                f"through the {', '.join(sorted({r['transport'] for r in routes} - {'smtp'}))} transport, "
                "which this parameter would bypass or contradict), even in allow_unsafe_overrides",
            )
    django_env = _resolve_django_env(errors, pillar.get("django_env"))
    monitoring = _resolve_monitoring(errors, pillar.get("monitoring"))
    pacing = _resolve_pacing(errors, name, preset, pillar)
    if django_env and django_env["mode"] == "direct" and pillar.get("redirect_all_to") is not None:
        errors.add(
            "django_env:mode",
            f"direct lets Django send to the provider itself, around {PILLAR_ROOT}:redirect_all_to; "
            "with a redirect use mode relay (the default), so that every message passes the redirect",
        )
    errors.raise_if_any()

    nexthop = route["nexthop"]
    base = _base(osd, myhostname or _default_myhostname(os_facts))
    routed_domains = sorted({s.split("@", 1)[1] for r in routes for s in r["senders"]})
    senders = _resolve_senders(errors, pillar, base["myhostname"], routed_domains)
    root_alias = _resolve_root_alias(errors, pillar.get("root_alias"))
    redirect = _resolve_redirect(errors, pillar.get("redirect_all_to"))
    errors.raise_if_any()
    sections = _main_cf_sections(
        provider=preset,
        osd=osd,
        identity=base["identity"],
        nexthop=nexthop,
        cache_hosts=sorted({host, *(r["host"] for r in routes)}),
        tls=tls,
        tls_verify=tls_verify,
        tls_ca_file=tls_ca_file,
        sasl_map=f"{base['db_type']}:{base['paths']['sasl_passwd']}",
        pacing=pacing,
        features=_feature_params(base, routes, senders, redirect),
        overrides=overrides,
    )
    return _assemble(
        base,
        "enabled",
        sections,
        {
            "provider": name,
            "provider_title": preset["title"],
            "relay": {
                "host": host,
                "port": port,
                "tls": tls,
                "tls_verify": tls_verify,
                "tls_level": "secure" if tls_verify else "encrypt",
                "tls_ca_file": tls_ca_file,
                "nexthop": nexthop,
            },
            "sasl": {"key": nexthop, "username": _shown(username, password)},
            "sasl_passwd": _sasl_passwd_lines(nexthop, username, password, routes),
            "django_env": _django_env(django_env, route),
            "django_env_absent": _stale_env(recorded_env, django_env),
            "routes": [
                {
                    "senders": r["senders"],
                    "provider": r["provider"],
                    "host": r["host"],
                    "port": r["port"],
                    "tls": r["tls"],
                    "nexthop": r["nexthop"],
                    "transport": r["transport"],
                    "username": _shown(r["username"], r["password"]),
                }
                for r in routes
            ],
            "sender_canonical": senders,
            "root_alias": root_alias,
            "redirect_all_to": redirect,
            "redirect_recipients": _redirect_rules(redirect),
            "monitoring": monitoring,
        },
    )


def _check_generic(errors: _Errors, pillar: Mapping[str, Any]) -> None:
    """Without a known provider, still report every provider-independent mistake."""
    if "port" in pillar:
        _port(errors, pillar["port"])
    if pillar.get("tls") is not None and pillar["tls"] not in TLS_MODES:
        errors.add("tls", f"must be starttls or implicit, got {pillar['tls']!r}")
    _bool(errors, "tls_verify", pillar.get("tls_verify", True))
    for key in ("username", "password"):
        if pillar.get(key) is not None:
            _text(errors, key, pillar[key], secret=True)
    if pillar.get("host") is not None:
        _host(errors, "host", pillar["host"])
    if pillar.get("tls_ca_file") is not None:
        _ca_file_path(errors, pillar["tls_ca_file"])
    _resolve_main_cf_overrides(errors, pillar)


ROUTE_KEYS = ("senders", "provider", "region", "host", "port", "tls", "username", "password")
# Addresses (from_address, sender_map, root_alias, redirect_all_to, route senders) end up
# in /etc/aliases and in Postfix tables, where some characters are instructions rather
# than address text: '|' pipes the mail to a command and '/' names a file to append it
# to (aliases), ':include:' reads more addresses from a file, '$' is substituted in
# regexp-table results ($1, ${1}), and a line starting with '#' is a comment.  So the
# local part is RFC 5322 atext without '|', '/' and '$', not starting with '#'; no
# quoting, no whitespace, no control characters.  Nor '%' and '!': Postfix rewrites
# user%domain@localhost and domain!user@localhost into user@domain (percent hack, bang
# path), so qa%customer.example@<this host> would redirect staging mail to a customer.
_LOCAL_PART = r"(?!#)[A-Za-z0-9#&'*+=?^_`{}~.-]+"
_DOMAIN = rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*"
_EMAIL_RE = re.compile(rf"{_LOCAL_PART}@{_DOMAIN}")
_SENDER_RE = re.compile(rf"(?:{_LOCAL_PART})?@{_DOMAIN}")
_LOCAL_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]*[$]?")
ADDRESS_RULE = (
    "user@example.com, with letters, digits and # & ' * + - . = ? ^ _ ` { } ~ before the @ "
    "(not starting with #) and a host name after it"
)


def _address_error(value: Any, form: str = "user@example.com") -> str:
    """``got <value>: <why not>; allowed: ...``, naming what Postfix would make of a dangerous value."""
    if not isinstance(value, str):
        why = f"a {type(value).__name__}, not a string"
    elif _CONTROL_RE.search(value):
        why = "control characters are not allowed"
    elif "|" in value:
        why = "'|' is not allowed (in /etc/aliases it pipes the mail to a command)"
    elif ":include:" in value.lower():
        why = "':include:' is not allowed (in /etc/aliases it reads addresses from a file)"
    elif "/" in value:
        why = "'/' is not allowed (in /etc/aliases a path appends the mail to a file)"
    elif "$" in value:
        why = "'$' is not allowed (Postfix substitutes $1, ${name} in table results)"
    elif any(ch.isspace() for ch in value):
        why = "whitespace is not allowed"
    elif value.startswith("#"):
        why = "it must not start with '#' (a comment in Postfix tables)"
    elif "%" in value or "!" in value:
        why = "'%' and '!' are not allowed (Postfix turns user%domain and domain!user into user@domain)"
    else:
        why = f"not of the form {form}"
    return f"got {value!r}: {why}; allowed: {ADDRESS_RULE}"


def _regexp_result(text: str) -> str:
    """A regexp-table result that Postfix uses as it is: '$' (refused in addresses anyway)
    would start a substitution ($1, ${1}); '$$' is a literal '$'."""
    return text.replace("$", "$$")


def _resolve_route(errors: _Errors, pillar: Mapping[str, Any]) -> dict[str, Any] | None:
    """provider, host, port, TLS mode and credentials of one relay route (the main one or routes[i])."""
    name, preset = _resolve_provider(errors, pillar)
    if preset is None:
        _check_generic(errors, pillar)
        return None
    host, override = _resolve_host(errors, name, preset, pillar)
    port, tls = _resolve_port_tls(errors, name, preset, pillar, override)
    username, password = _resolve_credentials(errors, name, preset, pillar, override)
    return {
        "provider": name,
        "preset": preset,
        "host": host,
        "port": port,
        "tls": tls,
        "username": username,
        "password": password,
        "nexthop": f"[{host}]:{port}",
    }


def _resolve_routes(errors: _Errors, raw: Any, main_tls: str | None) -> list[dict[str, Any]]:
    """``routes``: extra providers chosen by envelope sender (sender-dependent relayhost + SASL)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add(
            "routes", f"must be a list of routes ({{senders, provider, password, ...}}), got {type(raw).__name__}"
        )
        return []
    out, seen = [], set()
    for index, item in enumerate(raw):
        scope = errors.scoped(f"routes:{index}:")
        if not isinstance(item, Mapping):
            errors.add(f"routes:{index}", "must be a mapping with senders, provider and credentials")
            continue
        for key in item:
            if key in ("tls_ca_file", "tls_verify"):
                # Postfix's CA and verification settings are global to the smtp client.
                scope.add(key, f"is not a route key: set {PILLAR_ROOT}:{key}, which applies to every route")
            elif key not in ROUTE_KEYS:
                scope.add(str(key), f"is not a route key{_suggest(key, ROUTE_KEYS)}; known: {', '.join(ROUTE_KEYS)}")
        senders = item.get("senders")
        if not isinstance(senders, list) or not senders:
            scope.add("senders", "must be a non-empty list of addresses (user@example.com) or domains (@example.com)")
            senders = []
        for sender in senders:
            if not isinstance(sender, str) or not _SENDER_RE.fullmatch(sender):
                scope.add(
                    "senders",
                    "entries must look like user@example.com or @example.com (a whole domain), "
                    + _address_error(sender, "user@example.com or @example.com"),
                )
            elif sender.lower() in seen:
                scope.add("senders", f"{sender!r} is already routed by an earlier route")
            else:
                seen.add(sender.lower())
        route = _resolve_route(scope, item)
        if route is None:
            continue
        # The main route's mode is main.cf's; a route in the other mode gets its own transport.
        transport = "smtp" if route["tls"] in (None, main_tls) else ROUTE_TRANSPORTS[route["tls"]][0]
        out.append({**route, "senders": [s.lower() for s in senders], "index": index, "transport": transport})
    return out


def _ere_escape(text: str) -> str:
    """Escape for Postfix regexp tables (POSIX extended regular expressions)."""
    return "".join("\\" + ch if ch in ".[]()*+?{}|^$\\" else ch for ch in text)


def _resolve_senders(
    errors: _Errors, pillar: Mapping[str, Any], myhostname: str, routed_domains: list[str]
) -> list[list[str]]:
    """Sender rewriting as ordered regexp rules: [pattern, replacement] for sender_canonical.

    Senders in the allowed domains, and in the domains of per-sender routes
    (whose routing depends on the sender), keep their address.
    """
    from_address = pillar.get("from_address")
    sender_map = pillar.get("sender_map") or {}
    allowed = pillar.get("allowed_sender_domains")
    if from_address is None:
        if sender_map or allowed is not None:
            errors.add("from_address", "is required when sender_map or allowed_sender_domains is set")
        return []
    if not isinstance(from_address, str) or not _EMAIL_RE.fullmatch(from_address):
        errors.add("from_address", "must be an address such as noreply@example.com, " + _address_error(from_address))
        return []
    if not isinstance(sender_map, Mapping):
        errors.add("sender_map", f"must map local users to addresses, got {sender_map!r}")
        sender_map = {}
    if allowed is None:
        allowed = [from_address.split("@", 1)[1]]
    if not isinstance(allowed, list) or not all(isinstance(d, str) and _HOST_RE.fullmatch(d) for d in allowed):
        errors.add("allowed_sender_domains", f"must be a list of domains such as example.com, got {allowed!r}")
        allowed = []
    allowed = [*allowed, *(d for d in routed_domains if d not in allowed)]
    local = "|".join(_ere_escape(d) for d in (myhostname, "localhost", "localhost.localdomain"))
    rules = []
    for user, address in sender_map.items():
        if not isinstance(user, str) or not _LOCAL_USER_RE.fullmatch(user):
            errors.add(f"sender_map:{user}", "must be a local user name such as www-data")
        elif not isinstance(address, str) or not _EMAIL_RE.fullmatch(address):
            errors.add(f"sender_map:{user}", "must be an address such as app@example.com, " + _address_error(address))
        else:
            rules.append([f"/^{_ere_escape(user)}@({local})$/", _regexp_result(address)])
    if allowed:
        kept = "|".join(_ere_escape(d.lower()) for d in allowed)
        rules.append([f"!/@({kept})$/", _regexp_result(from_address)])
    else:
        rules.append(["/^.*$/", _regexp_result(from_address)])
    return rules


def _resolve_root_alias(errors: _Errors, raw: Any) -> list[str]:
    if raw is None:
        return []
    addresses = [raw] if isinstance(raw, str) else raw
    if not isinstance(addresses, list) or not addresses:
        errors.add("root_alias", f"must be an address or a list of addresses, got {raw!r}")
        return []
    for address in addresses:
        if not isinstance(address, str) or not _EMAIL_RE.fullmatch(address):
            errors.add("root_alias", "entries must be addresses such as ops@example.com, " + _address_error(address))
            return []
    return addresses


def _resolve_redirect(errors: _Errors, raw: Any) -> list[str]:
    """``redirect_all_to``: the only recipients any message may have (staging)."""
    if raw is None:
        return []
    addresses = [raw] if isinstance(raw, str) else raw
    if not isinstance(addresses, list) or not addresses:
        errors.add("redirect_all_to", f"must be an address or a list of addresses such as qa@example.com, got {raw!r}")
        return []
    bad = [a for a in addresses if not isinstance(a, str) or not _EMAIL_RE.fullmatch(a)]
    for address in bad:
        errors.add(
            "redirect_all_to",
            "must be an address or a list of addresses such as qa@example.com, " + _address_error(address),
        )
    return [] if bad else [a.lower() for a in addresses]


def _redirect_rules(redirect: list[str]) -> list[list[str]]:
    """virtual_alias regexp rules: each redirect address maps to itself (ends the
    recursion), every other address to all redirect addresses."""
    if not redirect:
        return []
    rules = [[f"/^{_ere_escape(a)}$/", _regexp_result(a)] for a in redirect]
    rules.append(["/./", _regexp_result(", ".join(redirect))])
    return rules


def _feature_params(
    base: Mapping[str, Any], routes: list[dict], senders: list, redirect: list[str]
) -> list[dict[str, Any]]:
    """main.cf sections for the optional features (per-sender routes, sender rewriting, redirect)."""
    out = []
    paths, db_type = base["paths"], base["db_type"]
    if routes:
        out.append(
            {
                "comment": "Per-sender providers (postfix_relay:routes): relay and credentials chosen by sender",
                "params": {
                    "sender_dependent_relayhost_maps": f"{db_type}:{paths['sender_relay']}",
                    "smtp_sender_dependent_authentication": "yes",
                },
            }
        )
    if any(r["transport"] != "smtp" for r in routes):
        out.append(
            {
                "comment": (
                    "Routes in another TLS mode than the main route: their senders use a clone of the "
                    "smtp transport (master.cf) with that mode; the next hop still comes from sender_relay"
                ),
                "params": {
                    "sender_dependent_default_transport_maps": f"{db_type}:{paths['sender_transport']}",
                    # qmgr paces each master.cf service by its own name: the clones follow smtp's limits.
                    **{
                        f"{clone}_{limit}": f"$smtp_{limit}"
                        for clone in sorted({r["transport"] for r in routes} - {"smtp"})
                        for limit in CLONE_PACING
                    },
                },
            }
        )
    if senders:
        out.append(
            {
                "comment": "Local users' mail leaves with a verified sender (postfix_relay:from_address)",
                "params": {"sender_canonical_maps": f"regexp:{paths['sender_canonical']}"},
            }
        )
    if redirect:
        out.append(
            {
                "comment": (
                    "Staging (postfix_relay:redirect_all_to): every envelope recipient is replaced; "
                    "To/Cc stay readable, SMTP submissions keep the originals in X-Original-To"
                ),
                "params": {
                    "virtual_alias_maps": f"regexp:{paths['redirect_recipients']}",
                    # A regexp table would otherwise make every domain a virtual alias domain.
                    "virtual_alias_domains": "",
                    # One copy per redirect address, however many recipients were replaced.
                    "enable_original_recipient": "no",
                    "smtpd_recipient_restrictions": f"check_recipient_access regexp:{paths['redirect_headers']}",
                },
            }
        )
    return out


def _resolve_disabled(
    errors: _Errors, pillar: Mapping[str, Any], os_facts: Mapping[str, Any], recorded_env: Mapping[str, str] | None
) -> dict[str, Any]:
    """``enabled: false``: nothing is relayed; every message waits on hold, none is lost.

    Needs no provider or credentials (a CI box, a fresh staging server); the
    other relay keys, if present, are ignored until relaying is enabled again.
    Django's env file, if the formula manages one (pillar or record), is
    written in relay mode: Django's mail is held like any other, and a
    direct-mode password does not stay on the minion.
    """
    env = _resolve_django_env(errors, pillar.get("django_env"))
    # The staging redirect is a safety setting: it stays on while relaying is off, so mail
    # queued now is redirected at submission and cannot reach a customer when relaying resumes.
    redirect = _resolve_redirect(errors, pillar.get("redirect_all_to"))
    monitoring = _resolve_monitoring(errors, pillar.get("monitoring"))
    errors.raise_if_any()
    if env is None and recorded_env is not None:
        env = {**recorded_env, "mode": "relay"}
    base = _local_base(pillar, os_facts)
    off = f"retry:relaying disabled by pillar {PILLAR_ROOT}:enabled"
    off_switch = {
        "comment": (
            "Relaying disabled (postfix_relay:enabled: false): every message is accepted and held; "
            "whatever releases or flushes it (postsuper -H, postqueue -f, sendmail -q, a restart) "
            "meets the retry transport, which can only defer: nothing can be sent, to the provider "
            "or to any MX, and nothing is bounced"
        ),
        "params": {
            "header_checks": "static:HOLD",
            "default_transport": off,
            "relay_transport": off,
            # smtpd would answer 450 to a recipient whose transport is retry: accept, then hold.
            "smtpd_reject_unlisted_recipient": "no",
            # ... so an unknown local user defers instead of bouncing.
            "soft_bounce": "yes",
            # Held or deferred while relaying stays off: Postfix would otherwise return it to
            # the sender after 5 days (soft_bounce does not stop expiry).  100 days is Postfix's
            # maximum: qmgr refuses to start above it ("invalid maximal_queue_lifetime").
            "maximal_queue_lifetime": "100d",
            "bounce_queue_lifetime": "100d",
        },
    }
    return _assemble(
        base,
        "disabled",
        [*base["identity"], off_switch, *_feature_params(base, [], [], redirect)],
        {
            "django_env": _django_env(env, None),
            "django_env_absent": _stale_env(recorded_env, env),
            "redirect_all_to": redirect,
            "redirect_recipients": _redirect_rules(redirect),
            "monitoring": monitoring,
        },
    )


DJANGO_ENV_MODES = ("relay", "direct")
_ENV_PATH_RE = re.compile(r"/[A-Za-z0-9._/@+-]+")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]*[$]?")


def _resolve_django_env(errors: _Errors, raw: Any) -> dict[str, Any] | None:
    """``django_env``: where to write Django's EMAIL_* settings, and in which mode."""
    if raw is None:
        return None
    key = "django_env"
    if not isinstance(raw, Mapping):
        errors.add(key, f"must be a mapping with at least path, got {raw!r}")
        return None
    for name in raw:
        if name not in ("path", "mode", "user", "group"):
            errors.add(f"{key}:{name}", "is not a known key; known: path, mode, user, group")
    path = raw.get("path")
    if not isinstance(path, str) or not _ENV_PATH_RE.fullmatch(path) or "/../" in path or path.endswith("/"):
        errors.add(f"{key}:path", f"must be an absolute file path such as /etc/myapp/email.env, got {path!r}")
    mode = raw.get("mode", "relay")
    if mode not in DJANGO_ENV_MODES:
        errors.add(
            f"{key}:mode",
            f"must be relay (Django -> local Postfix) or direct (Django -> provider), got {mode!r}",
        )
    owner = {}
    for name in ("user", "group"):
        value = raw.get(name, "root")
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            errors.add(f"{key}:{name}", f"must be a system {name} name, got {value!r}")
        owner[name] = value
    return {"path": path, "mode": mode, **owner}


ENV_RECORD = f"{CONFIG_DIR}/postfix_relay.django_env"


def _valid_env_record(raw: Any) -> dict[str, str] | None:
    """The env file record as the formula wrote it ({path, user, group}); None when absent or mangled."""
    errors = _Errors()
    env = _resolve_django_env(errors, raw) if isinstance(raw, Mapping) and "mode" not in raw else None
    if env is None or errors.messages:
        return None
    return {k: env[k] for k in ("path", "user", "group")}


def _stale_env(recorded: Mapping[str, str] | None, current: Mapping[str, Any] | None) -> list[str]:
    """An env file written earlier that the pillar no longer names (it may hold a direct-mode password)."""
    if recorded is None or (current is not None and current["path"] == recorded["path"]):
        return []
    return [recorded["path"]]


RELAY_ENV = {
    "EMAIL_HOST": "localhost",
    "EMAIL_PORT": "25",
    "EMAIL_HOST_USER": "",
    "EMAIL_HOST_PASSWORD": "",
    "EMAIL_USE_TLS": "False",
    "EMAIL_USE_SSL": "False",
}


def _django_env(env: Mapping[str, Any] | None, route: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Django's EMAIL_* settings for the env file, each a ``value`` or the ``pillar`` path of a secret.

    relay (and always while relaying is disabled, ``route`` None): Django talks
    to the local Postfix with Django's defaults (no TLS: Django 4.2+ verifies
    certificates, and the local hop needs none).  direct: Django talks to the
    provider with exactly one of EMAIL_USE_TLS / EMAIL_USE_SSL, from the same
    ``tls`` key that drives Postfix; the password (and a username that is the
    password, as Postmark's token) stays a pillar path, read by the template.
    """
    if env is None:
        return None
    if env["mode"] == "relay" or route is None:
        variables = [{"name": k, "value": v} for k, v in RELAY_ENV.items()]
        return {**env, "mode": "relay", "variables": variables}
    secret = {"pillar": f"{PILLAR_ROOT}:password"}
    user = _secret_user(route["username"], route["password"])
    variables = [
        {"name": "EMAIL_HOST", "value": route["host"]},
        {"name": "EMAIL_PORT", "value": str(route["port"])},
        {"name": "EMAIL_HOST_USER", **({"value": user} if user is not None else secret)},
        {"name": "EMAIL_HOST_PASSWORD", **secret},
        {"name": "EMAIL_USE_TLS", "value": "True" if route["tls"] == STARTTLS else "False"},
        {"name": "EMAIL_USE_SSL", "value": "True" if route["tls"] == IMPLICIT else "False"},
    ]
    return {**env, "variables": variables}


def resolve_clean(
    pillar: Mapping[str, Any] | None, os_facts: Mapping[str, Any], recorded_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """
    Settings for ``postfix_relay.clean``: local delivery only, nothing relayed.

    Needs no provider or credentials, so clean works after the pillar is gone;
    a valid ``myhostname`` in pillar is kept.  Django's env file goes too,
    found from the pillar or from the formula's record of where it wrote it.
    """
    pillar = pillar if isinstance(pillar, Mapping) else {}
    raw_env = pillar.get("django_env")
    named = (
        _valid_env_record({k: v for k, v in raw_env.items() if k != "mode"}) if isinstance(raw_env, Mapping) else None
    )
    env_paths = sorted({e["path"] for e in (named, recorded_env) if e is not None})
    base = _local_base(pillar, os_facts)
    removed = {
        "comment": "Relay removed by postfix_relay.clean: outbound mail is refused (450) or deferred, never sent",
        "params": {"default_transport": "retry:outbound relay removed by postfix_relay.clean"},
    }
    return _assemble(base, "clean", [*base["identity"], removed], {"django_env_absent": env_paths})


def _local_base(pillar: Mapping[str, Any], os_facts: Mapping[str, Any]) -> dict[str, Any]:
    """The shared base for modes that need no valid pillar (disabled, clean): a valid myhostname is kept."""
    myhostname = pillar.get("myhostname")
    if not (isinstance(myhostname, str) and _HOST_RE.fullmatch(myhostname) and "." in myhostname):
        myhostname = _default_myhostname(os_facts)
    return _base(os_defaults(os_facts), myhostname.lower())


def _base(osd: Mapping[str, Any], myhostname: str) -> dict[str, Any]:
    """What the relay and the cleaned-up host share: OS facts, paths, identity."""
    db_type = osd["db_type"]
    sasl_passwd = f"{CONFIG_DIR}/sasl_passwd"
    identity = [
        {
            "comment": "Identity and compatibility",
            "params": {
                "compatibility_level": osd["compatibility_level"],
                "myhostname": myhostname,
                "myorigin": "$myhostname",
                "mydestination": "$myhostname, localhost.$mydomain, localhost",
                "biff": "no",
                "append_dot_mydomain": "no",
                "readme_directory": "no",
                "alias_maps": f"{db_type}:{ALIASES}",
                "alias_database": f"{db_type}:{ALIASES}",
            },
        },
        {
            "comment": "Send-only: listen on loopback, relay for local submissions only",
            "params": {
                "inet_interfaces": "loopback-only",
                "mynetworks": "127.0.0.0/8 [::1]/128",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
                "smtpd_sasl_auth_enable": "no",
            },
        },
    ]
    return {
        "os_family": osd["os_family"],
        "packages": osd["packages"],
        "debconf": osd["debconf"],
        "edits": osd["edits"],
        "service": "postfix",
        "db_type": db_type,
        "ca_file": osd["ca_file"],
        "paths": {
            "config_dir": CONFIG_DIR,
            "main_cf": f"{CONFIG_DIR}/main.cf",
            "master_cf": f"{CONFIG_DIR}/master.cf",
            "sasl_passwd": sasl_passwd,
            "sasl_passwd_db": sasl_passwd + DB_SUFFIX[db_type],
            "aliases": ALIASES,
            "aliases_db": ALIASES + DB_SUFFIX[db_type],
            "restart_marker": f"{CONFIG_DIR}/postfix_relay.restart",
            # Written once when master starts (a reload leaves it alone): its age is the master's.
            "master_pid": "/var/spool/postfix/pid/master.pid",
            "sender_relay": f"{CONFIG_DIR}/sender_relay",
            "sender_relay_db": f"{CONFIG_DIR}/sender_relay" + DB_SUFFIX[db_type],
            "sender_transport": f"{CONFIG_DIR}/sender_transport",
            "sender_transport_db": f"{CONFIG_DIR}/sender_transport" + DB_SUFFIX[db_type],
            "sender_canonical": f"{CONFIG_DIR}/sender_canonical",
            "redirect_recipients": f"{CONFIG_DIR}/redirect_recipients",
            "redirect_headers": f"{CONFIG_DIR}/redirect_headers",
            "mode_marker": f"{CONFIG_DIR}/postfix_relay.mode",
            "django_env_record": ENV_RECORD,
            "requeue_marker": REQUEUE_MARKER,
            "check_main_cf": "/usr/local/sbin/postfix_relay-check-main-cf",
        },
        "identity": identity,
        "myhostname": myhostname,
    }


def _main_cf_sections(
    *,
    provider,
    osd,
    identity,
    nexthop,
    cache_hosts,
    tls,
    tls_verify,
    sasl_map,
    pacing,
    features,
    overrides,
    tls_ca_file=None,
):
    """main.cf as ordered sections of parameters; pillar overrides go last."""
    cache = f"{osd['cache_db_type']}:${{data_directory}}/smtp_scache"
    # A private CA (tls_ca_file) takes smtp_tls_CAfile, which is global to the smtp
    # client and so applies to every route too.  The OS's CAs stay trusted through
    # smtp_tls_CApath, the same CAs as a hashed directory: routes to public providers
    # still verify, and the private relay is still checked at level secure (chain and
    # name).  Not smtp_tls_policy_maps' per-destination "tafile": the smtp client reads
    # it per delivery, inside its chroot jail on Debian.  CAfile is read before the
    # chroot (smtp and tlsproxy load it at start); CApath is searched inside it, where
    # Debian copies the directory when Postfix starts (hence in RESTART_PARAMS).
    trust = (
        {"smtp_tls_CAfile": tls_ca_file, "smtp_tls_CApath": osd["ca_path"]}
        if tls_ca_file
        else {"smtp_tls_CAfile": osd["ca_file"]}
    )
    sections = [
        *({"comment": s["comment"], "params": dict(s["params"])} for s in identity),
        {
            "comment": f"Relay everything through {provider['title']}",
            "params": {"relayhost": nexthop},
        },
        {
            "comment": "Authenticate to the provider (PLAIN/LOGIN over TLS only)",
            "params": {
                "smtp_sasl_auth_enable": "yes",
                "smtp_sasl_password_maps": sasl_map,
                "smtp_sasl_security_options": "noanonymous",
                "smtp_sasl_tls_security_options": "noanonymous",
                "smtp_sasl_auth_soft_bounce": "yes",
            },
        },
        {
            "comment": (
                "TLS to the provider: "
                + ("implicit TLS (EMAIL_USE_SSL)" if tls == IMPLICIT else "STARTTLS required (EMAIL_USE_TLS)")
                + (", certificate and name verified" if tls_verify else ", certificate NOT verified")
                + (f" (trusted: the private CA of {PILLAR_ROOT}:tls_ca_file and the OS's CAs)" if tls_ca_file else "")
            ),
            "params": {
                "smtp_tls_security_level": "secure" if tls_verify else "encrypt",
                **({"smtp_tls_wrappermode": "yes"} if tls == IMPLICIT else {}),
                **trust,
                "smtp_tls_mandatory_protocols": "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1",
                "smtp_tls_session_cache_database": cache,
                "smtp_tls_loglevel": "1",
            },
        },
        {
            "comment": (
                "Reuse TLS connections to the provider (tlsproxy, enabled in master.cf): "
                "one handshake and one AUTH for many messages"
            ),
            "params": {
                "smtp_tls_connection_reuse": "yes",
                # Bare host names: Postfix matches this list against the next-hop host without
                # [] or :port, so "$relayhost" ([host]:587) never matches and connections are then
                # cached only while qmgr sees a backlog (measured: 17-42 instead of 5 handshakes
                # per 1,000 messages).
                "smtp_connection_cache_destinations": ", ".join(cache_hosts),
            },
        },
        {"comment": "Pacing towards the provider", "params": pacing},
        *features,
        {
            "comment": (
                "Never bounce what the provider refused: defer, so that mail goes out once the cause "
                "is fixed (e.g. an unverified SES sender); retry soon, a relay has one destination"
            ),
            "params": {
                "soft_bounce": "yes",
                "queue_run_delay": "60s",
                "minimal_backoff_time": "60s",
                "maximal_backoff_time": "10m",
            },
        },
    ]
    if provider["main_cf"]:
        sections.append({"comment": f"From {provider['title']}'s Postfix guide", "params": dict(provider["main_cf"])})
    if overrides:
        for section in sections:
            for key in overrides:
                section["params"].pop(key, None)
        sections.append(
            {
                "comment": f"From pillar {PILLAR_ROOT}:main_cf",
                "params": {k: v for k, v in sorted(overrides.items()) if v is not None},
            }
        )
    return [s for s in sections if s["params"]]


# --------------------------------------------------------------------------
# DERIVATION: files and queue actions as data; the SLS files only loop over these.
# --------------------------------------------------------------------------
FEATURE_DEFAULTS: dict[str, Any] = {
    "provider": None,
    "relay": None,
    "sasl": None,
    "sasl_passwd": [],
    "routes": [],
    "sender_canonical": [],
    "root_alias": [],
    "redirect_all_to": [],
    "redirect_recipients": [],
    "django_env": None,
    "django_env_absent": [],
    "monitoring": None,
}


def _assemble(base: dict[str, Any], mode: str, sections: list[dict], features: Mapping[str, Any]) -> dict[str, Any]:
    """The one place every mode (enabled, disabled, clean) becomes settings: main.cf, files, queue actions."""
    out = {k: v for k, v in base.items() if k != "identity"}
    out.update(FEATURE_DEFAULTS)
    out.update(features)
    main_cf = {k: v for section in sections for k, v in section["params"].items()}
    out.update(
        {
            "mode": mode,
            "enabled": mode == "enabled",
            "main_cf_sections": sections,
            "main_cf": main_cf,
            "restart_params": {k: main_cf[k] for k in RESTART_PARAMS if k in main_cf},
        }
    )
    out["files"] = _files(out)
    out["master_cf_services"] = _master_cf_services(out)
    out["queue_actions"] = _queue_actions(out)
    return out


def _master_cf_services(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-route transports in master.cf, each present or absent, edited with ``postconf -M``.

    ``entry`` is the line as ``postconf -M`` prints it with runs of blanks squeezed
    (the idempotency check compares the two).  chroot ``n``: the clone reads the
    CA files, /etc/hosts and resolv.conf where the OS keeps them.
    """
    used = {r["transport"] for r in s["routes"]}
    out = []
    for mode, (name, options) in ROUTE_TRANSPORTS.items():
        service = f"{name}/unix"
        opts = " ".join(f"-o {k}={v}" for k, v in options.items())
        out.append(
            {
                "id": name,
                "service": service,
                "tls": mode,
                "present": name in used,
                "entry": f"{name} unix - - n - - smtp {opts}",
            }
        )
    return out


def _file(fid: str, path: str, present: bool = True, **spec: Any) -> dict[str, Any]:
    """One managed file: absent, or present from a ``template`` (+ ``context``), a ``source`` or ``contents``.

    ``order``: ``before`` main.cf (the maps it names), ``after`` it (markers), or None.
    ``compile``: the postmap/postalias run that builds its database.  ``sensitive``:
    holds a secret (diff hidden, root-only).  ``sls``: the SLS that manages it
    (``config``, or ``django_env`` for Django's env file).  ``line``: instead of a
    whole file, one ``KEY=value`` line in a file the OS owns (see _line_edits).
    Nothing here is a secret.
    """
    entry = {
        "id": fid,
        "path": path,
        "present": present,
        "template": None,
        "context": {},
        "source": None,
        "contents": None,
        "user": "root",
        "group": "root",
        "mode": "0644",
        "replace": True,
        "makedirs": False,
        "sensitive": False,
        "check_cmd": None,
        "only_if_exists": False,
        "order": None,
        "compile": None,
        "line": None,  # {"key", "value"}: one KEY=value line set in an existing file (file.replace)
        "sls": "config",
        "requires": [],  # other states of the same SLS (id suffixes after the prefix) that must run first
    }
    entry.update(spec)
    if not present and entry["sls"] == "config":
        entry["order"] = "after"  # main.cf stops naming it first
    return entry


def _line_edits(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The OS's own files that need one ``KEY=value`` line (SUSE: /etc/sysconfig/mail), before main.cf.

    Only edited where the file exists (a minion without the OS's postfix package has none).
    """
    return [
        _file(e["id"], e["path"], line={"key": e["key"], "value": e["value"]}, order="before", mode=None)
        for e in s["edits"]
    ]


def _map(fid: str, path: str, present: bool, db_type: str, command: str, **spec: Any) -> list[dict[str, Any]]:
    """A map and its compiled database: built before main.cf names it, removed after main.cf forgets it."""
    db = path + DB_SUFFIX[db_type]
    if not present:
        return [_file(fid, path, False), _file(f"{fid}_db", db, False)]
    build = {
        "id": f"{command}-{fid}" if command == "postmap" else command,
        "command": f"{command} {db_type}:{path}",
        "db": db,
        "umask": "077" if spec.get("sensitive") else None,
    }
    return [_file(fid, path, order="before", compile=build, **spec)]


def _files(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every file the formula manages in this mode, in the order the config SLS emits them."""
    paths, db_type, mode = s["paths"], s["db_type"], s["mode"]
    sections = {"sections": s["main_cf_sections"]}
    if mode == "clean":
        # Local-only main.cf where Postfix is installed; every file the relay added goes.
        kept = {"main_cf", "aliases"}
        files = _line_edits(s)
        files += [_file("main_cf", paths["main_cf"], template="main.cf.jinja", context=sections, only_if_exists=True)]
        files += [_file(k, paths[k], False) for k in CLEAN_REMOVES if k not in kept]
    else:
        relay = mode == "enabled"
        files = _line_edits(s)
        files += [
            _file("check_main_cf", paths["check_main_cf"], source="check-main-cf.sh", mode="0755", order="before"),
            # postmap/postalias read main.cf, which a fresh install lacks: a placeholder first.
            _file(
                "main_cf-placeholder",
                paths["main_cf"],
                contents="# postfix_relay: Salt is writing this file",
                replace=False,
                order="before",
            ),
            *_map(
                "sasl_passwd",
                paths["sasl_passwd"],
                relay,
                db_type,
                "postmap",
                template="sasl_passwd.jinja",
                context={"lines": s["sasl_passwd"]},
                mode="0600",
                sensitive=True,
            ),
            *_map(
                "sender_relay",
                paths["sender_relay"],
                bool(s["routes"]),
                db_type,
                "postmap",
                template="sender_relay.jinja",
                context={"routes": s["routes"]},
            ),
            *_map(
                "sender_transport",
                paths["sender_transport"],
                any(r["transport"] != "smtp" for r in s["routes"]),
                db_type,
                "postmap",
                # Every routed sender, "smtp" for the main mode's: Postfix looks up user@domain
                # before @domain, so both maps must hold the same keys (vip@d in one mode, @d in the other).
                template="sender_transport.jinja",
                context={"routes": s["routes"]},
            ),
            _file(
                "sender_canonical",
                paths["sender_canonical"],
                bool(s["sender_canonical"]),
                template="sender_canonical.jinja",
                context={"rules": s["sender_canonical"]},
                order="before",
            ),
            _file(
                "redirect_recipients",
                paths["redirect_recipients"],
                bool(s["redirect_recipients"]),
                template="redirect_recipients.jinja",
                context={"rules": s["redirect_recipients"]},
                order="before",
            ),
            _file(
                "redirect_headers",
                paths["redirect_headers"],
                bool(s["redirect_recipients"]),
                order="before",
                contents="# Managed by Salt (postfix_relay): keep each original recipient in a header.\n"
                "/^(.+)$/ PREPEND X-Original-To: $1",
            ),
            *_map(
                "aliases",
                paths["aliases"],
                True,
                db_type,
                "postalias",
                # With root_alias the file is managed whole; else only created when missing (Debian 13 ships none).
                **(
                    {"template": "aliases.jinja", "context": {"root": s["root_alias"]}}
                    if s["root_alias"]
                    else {
                        "contents": "# See man 5 aliases for format\npostmaster:    root",
                        "replace": False,
                        # Created only when missing: the OS's own file keeps its owner and mode.
                        "user": None,
                        "group": None,
                        "mode": None,
                    }
                ),
            ),
            _file(
                "main_cf",
                paths["main_cf"],
                template="main.cf.jinja",
                context=sections,
                check_cmd=paths["check_main_cf"],
            ),
            _file(
                "restart_marker",
                paths["restart_marker"],
                template="restart.jinja",
                context={"params": s["restart_params"]},
                order="after",
            ),
            # enabled or disabled, as last applied: switching back to enabled releases held mail.
            _file("mode", paths["mode_marker"], contents=mode, order="after"),
        ]
    # Django's env file: its own SLS (postfix_relay.django_env), so that a change to it
    # does not reload Postfix; in clean mode it goes with everything else.
    django = {"sls": "django_env"} if mode != "clean" else {}
    env = s["django_env"]
    if env:
        files += [
            _file(
                "env",
                env["path"],
                template="django.env.jinja",
                context={"django_env": env},
                user=env["user"],
                group=env["group"],
                mode="0600",
                makedirs=True,
                sensitive=True,
                **django,
            ),
            _file("record", paths["django_env_record"], contents=_env_record_text(env), **django),
        ]
    elif mode != "clean":
        files.append(_file("record", paths["django_env_record"], False, **django))
    # A file that may hold a direct-mode password stays recorded until it is gone.
    stale = [_file(path if django else f"django_env-{path}", path, False, **django) for path in s["django_env_absent"]]
    for entry in files:
        if entry["id"] == "record" or (mode == "clean" and entry["id"] == "django_env_record"):
            entry["requires"] = [f"file-absent-{x['id']}" for x in stale] + (["file-managed-env"] if env else [])
    files += stale
    files += _monitoring_files(s)
    return files


# What postfix_relay.clean removes (paths keys): credentials and every file the relay added.
CLEAN_REMOVES = (
    "sasl_passwd",
    "sasl_passwd_db",
    "sender_relay",
    "sender_relay_db",
    "sender_transport",
    "sender_transport_db",
    "sender_canonical",
    "redirect_recipients",
    "redirect_headers",
    "mode_marker",
    "django_env_record",
    "requeue_marker",
    "restart_marker",
    "check_main_cf",
)


def _env_record_text(env: Mapping[str, Any]) -> str:
    import json

    return json.dumps({k: env[k] for k in ("path", "user", "group")}, sort_keys=True)


REQUEUE_MARKER = f"{CONFIG_DIR}/postfix_relay.requeue"
# postsuper works on the queue files, Postfix running or not; before the first install there is no queue.
_QUEUE_EXISTS = f"test -d /var/spool/postfix/hold -a -e {CONFIG_DIR}/main.cf"


def _queue_actions(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the service SLS does to queued mail, in this order.

    ``prereq``: runs just before that file changes (Salt's prereq), so before the
    reload.  The requeue is level-triggered: a marker file says it is owed, and
    only a successful requeue removes it, so a run that fails after the hold is
    finished by the next one.  ``onchanges``: after the reload, when that file changed.
    """
    if s["mode"] == "clean":
        return []
    owe = f"touch {REQUEUE_MARKER}"
    actions = []
    if s["redirect_recipients"]:
        # A new or changed redirect: hold everything first, so that the reload (whose new
        # qmgr scans the deferred queue) or a start of a stopped Postfix cannot send mail
        # that still has its real recipients; the requeue below redirects and releases it.
        actions.append(
            {
                "id": "hold-before-redirect",
                "command": f"{owe} && postsuper -h ALL",
                "prereq": "redirect_recipients",
                "onlyif": _QUEUE_EXISTS,
            }
        )
    if s["mode"] == "disabled":
        # Relaying disabled: what is already queued waits on hold too (the transport
        # only defers anyway).  The requeue stays owed until relaying is enabled.
        actions.append({"id": "hold", "command": "postsuper -h ALL", "onchanges": "mode"})
        return _chained(actions)
    # Relaying enabled (again): what waited is requeued through cleanup, so that it passes
    # the redirect if one is set and leaves hold with a fresh arrival time (no expiry).
    actions.append({"id": "owe-requeue", "command": owe, "prereq": "mode", "onlyif": _QUEUE_EXISTS})
    actions.append(
        {
            "id": "requeue",
            "command": f"sleep 1 && postsuper -r ALL && rm -f {REQUEUE_MARKER}",
            "onlyif": f"test -e {REQUEUE_MARKER}",
        }
    )
    return _chained(actions)


def _chained(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each action after the reload runs after the one before it (prereq actions run before the reload)."""
    after = None
    for action in actions:
        for key in ("prereq", "onchanges", "onlyif"):
            action.setdefault(key, None)
        action["after"] = after if action["prereq"] is None else None
        if action["prereq"] is None:
            after = action["id"]
    return actions


# --------------------------------------------------------------------------
# VALIDATION and DERIVATION: monitoring (pillar postfix_relay:monitoring).  One
# collector, postfix_relay-metrics (a stdlib script run by a systemd timer, not
# Salt: a salt-call costs seconds of CPU), writes the Prometheus textfile and a
# state file; the beacon (_beacons/postfix_relay.py) reads that state file.  The
# script gets the reason classes (REASON_CLASSES, OPERATIONS) through its config.
# --------------------------------------------------------------------------
MONITORING_KEYS = {
    "textfile": "absolute path of the .prom file node_exporter's textfile collector reads",
    "interval": "seconds between two writes (5-3600, default 30)",
    "beacon": "Salt beacon on the event bus: {interval, deferred, oldest_age} (see README)",
}
BEACON_KEYS = {
    "interval": "seconds between two beacon checks (5-3600, default: monitoring:interval)",
    "deferred": "messages: fire when at least this many are deferred (1-1000000, default 1)",
    "oldest_age": "seconds: fire when a queued message is older (60-8640000, default 900)",
}
MONITORING_DEFAULTS = {"interval": 30, "beacon": {"deferred": 1, "oldest_age": 900}}
# Where the textfile may not go (its directory becomes writable for the root collector).
TEXTFILE_REFUSED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/etc", "/var/spool", "/proc", "/sys", "/dev")
METRICS_NAME = "postfix_relay-metrics"
MONITORING_PATHS = {
    "script": f"/usr/local/sbin/{METRICS_NAME}",
    "config": f"{CONFIG_DIR}/postfix_relay.monitoring.json",
    "service": f"/etc/systemd/system/{METRICS_NAME}.service",
    "timer": f"/etc/systemd/system/{METRICS_NAME}.timer",
    "state_dir": "/var/lib/postfix_relay",
    "state": "/var/lib/postfix_relay/metrics.json",
    # Written by the formula while the beacon is configured: switching it off removes it from the minion.
    "beacon_marker": f"{CONFIG_DIR}/postfix_relay.beacon",
}


def _bounded_int(errors: _Errors, key: str, value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.add(key, f"must be an integer from {low} to {high}, got {value!r}")
        return None
    return value


def _resolve_monitoring(errors: _Errors, raw: Any) -> dict[str, Any] | None:
    """``monitoring``: textfile metrics and/or the beacon; None (off) when the key is absent."""
    if raw is None:
        return None
    scope = errors.scoped("monitoring:")
    if not isinstance(raw, Mapping) or not ({"textfile", "beacon"} & set(raw)):
        errors.add(
            "monitoring",
            f"must be a mapping with textfile and/or beacon (e.g. textfile: "
            f"/var/lib/prometheus/node-exporter/postfix_relay.prom), got {raw!r}",
        )
        return None
    for key in raw:
        if key not in MONITORING_KEYS:
            scope.add(
                str(key), f"is not a known key{_suggest(key, MONITORING_KEYS)}; known: {', '.join(MONITORING_KEYS)}"
            )
    textfile = raw.get("textfile")
    if textfile is not None and (
        not isinstance(textfile, str) or not _ABS_PATH_RE.fullmatch(textfile) or not textfile.endswith(".prom")
    ):
        scope.add(
            "textfile",
            "must be the absolute path of a file ending in .prom (node_exporter's textfile collector reads only "
            f"*.prom) such as /var/lib/prometheus/node-exporter/postfix_relay.prom, got {textfile!r}",
        )
        textfile = None
    if textfile is not None:
        where = textfile.rsplit("/", 1)[0]
        bad = next((d for d in TEXTFILE_REFUSED_DIRS if where == d or where.startswith(d + "/")), None)
        if not where or bad:
            scope.add(
                "textfile",
                f"must not be in {bad or '/'} ("
                + (
                    "the collector runs with a private /tmp, node_exporter would never see it"
                    if bad in ("/tmp", "/var/tmp")
                    else "world-writable: anyone could plant files next to it"
                    if bad == "/dev/shm"
                    else "the collector would get write access to Postfix's configuration or queue"
                    if bad
                    else "a file in the root directory"
                )
                + "); use node_exporter's textfile directory, e.g. /var/lib/prometheus/node-exporter/postfix_relay.prom",
            )
            textfile = None
    interval = _bounded_int(scope, "interval", raw.get("interval", MONITORING_DEFAULTS["interval"]), 5, 3600)
    beacon = _resolve_beacon(scope, raw.get("beacon"), interval)
    return {"textfile": textfile, "interval": interval, "beacon": beacon, "paths": dict(MONITORING_PATHS)}


def _resolve_beacon(errors: _Errors, raw: Any, interval: int | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.add("beacon", f"must be a mapping ({', '.join(BEACON_KEYS)}) or true, got {raw!r}")
        return None
    scope = errors.scoped("beacon:")
    for key in raw:
        if key not in BEACON_KEYS:
            scope.add(str(key), f"is not a known key{_suggest(key, BEACON_KEYS)}; known: {', '.join(BEACON_KEYS)}")
    defaults = MONITORING_DEFAULTS["beacon"]
    return {
        "interval": _bounded_int(scope, "interval", raw.get("interval", interval or 30), 5, 3600),
        "deferred": _bounded_int(scope, "deferred", raw.get("deferred", defaults["deferred"]), 1, 1000000),
        "oldest_age": _bounded_int(scope, "oldest_age", raw.get("oldest_age", defaults["oldest_age"]), 60, 8640000),
        "state_file": MONITORING_PATHS["state"],
    }


def _monitoring_config(s: Mapping[str, Any]) -> str:
    """The collector's config file: paths, the info labels and the reason classes; never a secret."""
    import json

    mon = s["monitoring"]
    relay = s.get("relay") or {}
    config = {
        "textfile": mon["textfile"],
        "interval": mon["interval"],
        "state_file": mon["paths"]["state"],
        "info": {
            "provider": s.get("provider") or "",
            "relayhost": s["main_cf"].get("relayhost", ""),
            "tls": relay.get("tls") or "",
            "enabled": "true" if s["enabled"] else "false",
        },
        "reason_classes": [list(rule) for rule in REASON_CLASSES],
        "reason_scrub": [list(rule) for rule in REASON_SCRUB],
    }
    return json.dumps(config, indent=1, sort_keys=True)


def _monitoring_units(mon: Mapping[str, Any]) -> tuple[str, str]:
    paths = mon["paths"]
    # ReadWritePaths: the textfile's directory must exist (node_exporter's package creates it).
    writable = " ".join(sorted({paths["state_dir"], *([mon["textfile"].rsplit("/", 1)[0]] if mon["textfile"] else [])}))
    service = "\n".join(
        [
            "# Managed by Salt (postfix_relay:monitoring)",
            "[Unit]",
            "Description=postfix_relay: relay metrics for node_exporter and the Salt beacon",
            "After=postfix.service",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart=/usr/bin/python3 -IS {paths['script']} --config={paths['config']}",
            "StateDirectory=postfix_relay",
            "StateDirectoryMode=0755",
            "UMask=0022",
            "Nice=10",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            f"ReadWritePaths={writable}",
            "ProtectHome=yes",
            "PrivateTmp=yes",
        ]
    )
    timer = "\n".join(
        [
            "# Managed by Salt (postfix_relay:monitoring)",
            "[Unit]",
            "Description=postfix_relay: write the relay metrics every "
            f"{mon['interval']} seconds (postfix_relay:monitoring:interval)",
            "",
            "[Timer]",
            "OnActiveSec=1s",
            f"OnUnitActiveSec={mon['interval']}s",
            "AccuracySec=1s",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]
    )
    return service, timer


def _monitoring_files(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The collector and its units (SLS ``monitoring``); absent while monitoring is off and in clean mode."""
    mon = s.get("monitoring")
    paths = MONITORING_PATHS
    if mon is None:
        return [
            _file(f"monitoring_{k}", paths[k], False, sls="monitoring")
            for k in ("timer", "service", "script", "config", "state_dir", "beacon_marker")
        ]
    service, timer = _monitoring_units(mon)
    beacon = mon["beacon"]
    return [
        _file("monitoring_script", paths["script"], source=f"{METRICS_NAME}.py", mode="0755", sls="monitoring"),
        _file("monitoring_config", paths["config"], contents=_monitoring_config(s), sls="monitoring"),
        _file("monitoring_service", paths["service"], contents=service, sls="monitoring"),
        _file("monitoring_timer", paths["timer"], contents=timer, sls="monitoring"),
        _file(
            "monitoring_beacon_marker",
            paths["beacon_marker"],
            beacon is not None,
            contents="# postfix_relay: the beacon is configured (postfix_relay:monitoring:beacon)",
            sls="monitoring",
        ),
    ]


# --------------------------------------------------------------------------
# DERIVATION: secrets.  resolve() validates the passwords but never returns them: what it
# returns may be printed (postfix_relay.settings), cached or passed as state
# arguments.  The two files that need a secret (sasl_passwd, Django's env file
# in direct mode) get the pillar *path* of each secret, and their templates
# read the value from pillar while Salt renders the file on the minion.
# --------------------------------------------------------------------------
def _shown(username: str, password: str) -> str:
    """The username as it may be shown: hidden when it is the secret itself (a Postmark token)."""
    return REDACTED if _secret_user(username, password) is None else username


def _secret_user(username: str, password: str) -> str | None:
    """None when the username is the password (the template then uses the secret for both)."""
    return None if username == password else username


def _sasl_passwd_lines(nexthop: str, username: str, password: str, routes: list[dict]) -> list[dict[str, Any]]:
    """The lines of ``sasl_passwd``, secrets as pillar paths.

    The main line's key is exactly ``relayhost`` (``[host]:port``); per-sender
    routes add one ``sender user:password`` line per sender, looked up first
    (smtp_sender_dependent_authentication).
    """
    lines = [
        {"key": nexthop, "username": _secret_user(username, password), "password_pillar": f"{PILLAR_ROOT}:password"}
    ]
    for route in routes:
        path = f"{PILLAR_ROOT}:routes:{route['index']}:password"
        user = _secret_user(route["username"], route["password"])
        lines += [{"key": sender, "username": user, "password_pillar": path} for sender in route["senders"]]
    return lines


# --------------------------------------------------------------------------
# SALT-FACING: the execution functions (see __load__) and their helpers
# --------------------------------------------------------------------------
def _os_facts() -> dict[str, Any]:
    return {k: __grains__.get(k) for k in ("os_family", "os", "osmajorrelease", "fqdn", "host", "id")}


def _pillar() -> Any:
    return __pillar__.get(PILLAR_ROOT)


def _over_ssh() -> bool:
    """True when loaded as a salt-ssh wrapper module: running on the master, ``__salt__`` calls the target."""
    try:
        return hasattr(__salt__, "wfuncs")
    except NameError:  # plain Python (unit tests)
        return False


def _on_target(fun: str, *args: Any, **kwargs: Any) -> Any:
    """Under salt-ssh: run ``fun`` on the target, as salt-ssh does for a module it has no wrapper for.

    The wrapper copy of this module runs on the master; what reads the target's
    Postfix (status, send_test, map_is_current) must run there instead.
    """
    import json

    import salt.client.ssh

    argv = [fun, *(json.dumps(a) for a in args), *(f"{k}={json.dumps(v)}" for k, v in kwargs.items())]
    single = salt.client.ssh.Single(
        __salt__.opts, argv, mods=__salt__.mods, disable_wipe=True, fsclient=__salt__.fsclient,
        minion_opts=__salt__.minion_opts, **__salt__.kwargs,
    )  # fmt: skip
    stdout, stderr, retcode = single.cmd_block()
    try:
        ret = json.loads(stdout)["local"]
    except (ValueError, KeyError, TypeError):
        raise CommandExecutionError(
            f"{fun} on the target failed (rc={retcode}): {stderr[-500:] or stdout[-500:]}"
        ) from None
    if isinstance(ret, dict) and "return" in ret:
        if ret.get("retcode", 0):
            raise CommandExecutionError(f"{fun} on the target: {ret['return']}")
        return ret["return"]
    return ret


def _recorded_env() -> dict[str, str] | None:
    """Where the formula last wrote Django's env file (so that disable, clean and a new path find it).

    Under salt-ssh this runs on the master: the record is read on the target, once per run.
    """
    import json

    try:
        if _over_ssh():
            if "postfix_relay.env_record" not in __context__:
                found = __salt__["file.file_exists"](ENV_RECORD)
                __context__["postfix_relay.env_record"] = __salt__["file.read"](ENV_RECORD) if found else None
            text = __context__["postfix_relay.env_record"]
            return _valid_env_record(json.loads(text)) if text else None
        with open(ENV_RECORD, encoding="utf-8") as handle:
            return _valid_env_record(json.load(handle))
    except (OSError, ValueError):
        return None


def _file_hash(path: str, hash_type: str) -> str | None:
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.new(hash_type, handle.read()).hexdigest()
    except OSError:
        return None


def self_sync(saltenv="base", **kwargs):
    """
    Make the loaded copy of this module the one on the fileserver, once per run.

    The formula calls this from ``map.jinja`` before anything else of the
    module: ``state.apply postfix_relay`` syncs nothing by itself, and a minion
    that ran an older formula keeps the older module.  Only this one file is
    replaced (``saltutil.sync_modules`` would also remove the modules synced
    from other saltenvs), atomically, in Salt's extension module cache, and only
    when its hash differs; ``test=True`` writes nothing else.  The answer is
    remembered for the rest of the run (``__context__``), so the four SLS files
    that import ``map.jinja`` cost one fileserver request.  ``replaced: True``
    tells the caller to reload the loader (map.jinja does).

    Under salt-ssh the module runs on the master as a wrapper module (README):
    the copy checked is the master's, and a stale one there is replaced the same way.

    CLI Example:

    .. code-block:: bash

        salt '*' postfix_relay.self_sync

    Called by hand (as a job), it syncs from the minion's own saltenv only.
    """
    if any(str(key).startswith("__pub_") for key in kwargs):
        # Called as a job (salt / salt-call), not from the formula's render: an operator
        # whose ACL allows postfix_relay.* must not install another saltenv's code (any gitfs
        # branch is a saltenv), which the next postfix_relay.* call would run as root.
        own = __opts__.get("saltenv") or "base"
        if saltenv != own:
            raise CommandExecutionError(
                f"postfix_relay.self_sync: called by hand it syncs from this minion's own saltenv ({own}) "
                f"only, not {saltenv!r}; to use another saltenv's formula, apply it: "
                f"state.apply postfix_relay saltenv={saltenv}"
            )
    done = __context__.setdefault("postfix_relay.self_sync", {})
    if saltenv in done:
        return dict(done[saltenv], checked=False)
    ssh = _over_ssh()
    if ssh:  # the master's fileserver, directly (3006's salt-ssh cp wrapper has no hash_file)
        client = __context__["fileclient"]
        want = client.hash_file(SOURCE, saltenv)
        extmods = __context__["master_opts"]["extension_modules"]
        kind = "wrapper"
    else:
        want = __salt__["cp.hash_file"](SOURCE, saltenv)
        extmods = __opts__["extension_modules"]
        kind = "modules"
    if not want:
        raise CommandExecutionError(
            f"postfix_relay: {SOURCE} is not on the fileserver (saltenv {saltenv}). Serve the repository root, "
            "which holds both postfix_relay/ and _modules/, in file_roots or gitfs (see README)."
        )
    here = os.path.realpath(__file__)
    log.debug("postfix_relay.self_sync: %s checked against %s (saltenv %s)", here, SOURCE, saltenv)
    managed = os.path.dirname(here) == os.path.realpath(os.path.join(extmods, kind))
    if ssh and not managed and _file_hash(here, want["hash_type"]) != want["hsum"]:
        # module_dirs points at a checkout other than the one the fileserver serves (gitfs, an
        # older copy): the settings would come from other code than the SLS and templates.
        raise CommandExecutionError(
            f"postfix_relay under salt-ssh: the wrapper module {here} (module_dirs) differs from {SOURCE} on the "
            f"fileserver (saltenv {saltenv}); update that checkout to the version the fileserver serves, then run again"
        )
    replaced = False
    if managed and _file_hash(here, want["hash_type"]) != want["hsum"]:
        cached = client.cache_file(SOURCE, saltenv) if ssh else __salt__["cp.cache_file"](SOURCE, saltenv)
        if not cached or _file_hash(cached, want["hash_type"]) != want["hsum"]:
            raise CommandExecutionError(f"postfix_relay: could not fetch {SOURCE} (saltenv {saltenv})")
        import shutil
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(here), prefix=".postfix_relay.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(cached, "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, here)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        replaced = True
        log.info("postfix_relay: replaced %s with %s (saltenv %s)", here, SOURCE, saltenv)
        if not ssh:  # a running minion reloads its own loader too (an event, nothing written)
            __salt__["event.fire"]({}, "module_refresh")
    done[saltenv] = {"saltenv": saltenv, "path": here, "managed": managed, "replaced": replaced}
    return dict(done[saltenv], checked=True)


def settings(action="apply"):
    """
    The resolved relay settings for this minion.  They hold no secret: each
    password appears only as the pillar path the file templates read it from.

    ``action``: ``apply`` (what ``postfix_relay`` renders: the relay, or the
    off switch when ``enabled`` is false) or ``clean`` (what
    ``postfix_relay.clean`` renders; it needs no valid pillar).  Raises an
    error naming the bad pillar key when the pillar is invalid; the formula
    calls this while rendering, so a bad pillar stops the run before any state
    changes the minion.

    CLI Example:

    .. code-block:: bash

        salt '*' postfix_relay.settings
        salt '*' postfix_relay.settings action=clean
    """
    return resolve(_pillar(), _os_facts(), recorded_env=_recorded_env(), action=action)


def map_is_current(source, db_type="hash"):
    """
    True when the compiled map of ``source`` exists and is not older than it.

    ``postmap`` must rerun not only when Salt changed the source but also when
    the compiled file is missing or stale ("database ... is older than source
    file").  Used as the ``unless`` of the ``postmap`` states.

    CLI Example:

    .. code-block:: bash

        salt '*' postfix_relay.map_is_current /etc/postfix/sasl_passwd hash
    """
    if _over_ssh():
        return _on_target("postfix_relay.map_is_current", source, db_type)
    compiled = source + DB_SUFFIX.get(db_type, ".db")
    try:
        return os.stat(compiled).st_mtime_ns >= os.stat(source).st_mtime_ns
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------
# OPERATIONS: inspect and test the relay from the master
# --------------------------------------------------------------------------
# Why Postfix deferred a delivery, from the text of ``status=deferred (...)`` or a
# queue entry's ``delay_reason``: first match wins, anything else is ``other``.  The
# one copy: postfix_relay.status uses it here, the metrics collector gets it in its
# config file (postfix_relay.monitoring.json).  ``rejected``: a 5xx that soft_bounce
# kept in the queue (an unverified SES sender, a suspended account).
REASON_CLASSES = (
    (
        "auth",
        r"SASL authentication failed|no mechanism available|No worthy mechs"
        r"|authentication (?:required|failed|credentials invalid)|said: 53[05]\b(?!.*STARTTLS)",
    ),
    (
        "tls",
        r"\bTLS\b|STARTTLS|certificate|handshake|\bSSL\b",
    ),
    (
        "connect",
        r"connect to |Connection (?:refused|timed out|reset)|lost connection|timed out"
        r"|Network is unreachable|No route to host|Host or domain name not found|Name service error",
    ),
    (
        "throttled",
        r"said: 4\d\d\b|throttl|rate limit|too many|try again later",
    ),
    (
        "rejected",
        r"said: 5\d\d\b",
    ),
)
REASON_NAMES = (*(name for name, _ in REASON_CLASSES), "other")
_REASON_RES = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in REASON_CLASSES]
# Removed before classifying: addresses (<...>, a quoted local part included), host[ip] and
# name=..., so that smtp-tls.example.net or <handshake@evil.example> (an address anyone can
# sign up with) do not decide the class.  Shipped to the collector in its config too.
REASON_SCRUB = (
    (r'<(?:"(?:[^"\\]|\\.)*"|[^<>"])*>', "<>"),
    (r"[^\s\[\]()<>]+\[[0-9A-Fa-f:.]+\](?::\d+)?", "host"),
    (r"\bname=\S+", "name="),
)
_SCRUB_RES = [(re.compile(pattern), repl) for pattern, repl in REASON_SCRUB]


def classify_reason(text: str) -> str:
    """The reason class of a deferral text: connect | tls | auth | throttled | rejected | other."""
    text = text or ""
    for pattern, repl in _SCRUB_RES:
        text = pattern.sub(repl, text)
    for name, pattern in _REASON_RES:
        if pattern.search(text):
            return name
    return "other"


_STATUS_RE = re.compile(
    r"(?P<queue_id>[0-9A-Za-z]+): to=<(?P<to>[^>]*)>,.*? relay=(?P<relay>[^,]+),.*? "
    r"status=(?P<status>sent|deferred|bounced|expired) \((?P<reason>.*)\)$"
)


def parse_delivery(line: str) -> dict[str, str] | None:
    """One Postfix delivery log line (``… to=<…>, relay=…, status=… (…)``) as a dict."""
    match = _STATUS_RE.search(line.strip())
    return match.groupdict() if match else None


def summarize_queue(entries: list[dict]) -> dict[str, Any]:
    """``postqueue -j`` entries -> counts per queue and the most common deferral reasons."""
    counts = {name: 0 for name in ("active", "deferred", "hold", "incoming", "maildrop")}
    reasons: dict[str, int] = {}
    for entry in entries:
        counts[entry.get("queue_name", "incoming")] = counts.get(entry.get("queue_name", "incoming"), 0) + 1
        for rcpt in entry.get("recipients", []):
            reason = rcpt.get("delay_reason")
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
    common = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {"queue": counts, "deferral_reasons": [{"reason": r, "messages": n} for r, n in common]}


def _cmd(*argv: str, stdin: str | None = None) -> str:
    import subprocess

    proc = subprocess.run(list(argv), capture_output=True, text=True, input=stdin, timeout=60, check=False)
    return proc.stdout


def _mail_log(lines: int = 5000) -> list[str]:
    """Postfix's recent log lines, from the journal or /var/log/mail.log."""
    for path in ("/var/log/mail.log", "/var/log/maillog"):
        if os.path.exists(path):
            return _cmd("tail", "-n", str(lines), path).splitlines()
    return _cmd("journalctl", "-u", "postfix*", "--no-pager", "-o", "cat", "-n", str(lines)).splitlines()


def _queue_entries() -> list[dict]:
    import json

    return [json.loads(line) for line in _cmd("postqueue", "-j").splitlines() if line.strip()]


def status():
    """
    Relay health: relayhost, queue sizes, the last delivery and the commonest deferral reasons.

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:web' postfix_relay.status
    """
    if _over_ssh():
        return _on_target("postfix_relay.status")
    last = None
    for line in reversed(_mail_log()):
        last = parse_delivery(line)
        if last:
            break
    out = {"relayhost": _cmd("postconf", "-h", "relayhost").strip(), "last_delivery": last}
    out.update(_live_routes())
    entries = _queue_entries()
    out.update(summarize_queue(entries))
    out.update(reason_classes(entries, out))
    return out


def reason_classes(entries: list[dict], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The reason classes of the metrics (``postfix_relay_deferrals_total{reason}``) in ``status``:
    deferred messages per class, a ``class`` on each common reason and on a deferred last delivery."""
    by_class = dict.fromkeys(REASON_NAMES, 0)
    for entry in entries:
        if entry.get("queue_name") == "deferred":
            found = {classify_reason(r["delay_reason"]) for r in entry.get("recipients", []) if r.get("delay_reason")}
            for name in found:
                by_class[name] += 1
    for item in summary.get("deferral_reasons", []):
        item["class"] = classify_reason(item["reason"])
    last = summary.get("last_delivery")
    if last and last.get("status") == "deferred":
        last["class"] = classify_reason(last["reason"])
    return {"deferred_by_reason": by_class}


def _table_lines(param: str) -> list[list[str]]:
    """``key value`` lines of the source file of the map main.cf names in ``param`` (none: [])."""
    value = _cmd("postconf", "-h", param).strip()
    if ":" not in value:
        return []
    path = value.split(":", 1)[1]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return []
    rows = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [row for row in rows if len(row) == 2]


def _live_routes() -> dict[str, Any]:
    """The main route's TLS mode and each routed sender's relay and TLS mode, as Postfix is configured now."""
    if not _cmd("postconf", "-h", "relayhost").strip():
        return {"tls": None, "routes": []}  # relaying disabled or cleaned: nothing goes to a provider
    wrapper = _cmd("postconf", "-h", "smtp_tls_wrappermode").strip() == "yes"
    main_tls = IMPLICIT if wrapper else STARTTLS
    mode_of = {name: mode for mode, (name, _options) in ROUTE_TRANSPORTS.items()}
    transports = dict(_table_lines("sender_dependent_default_transport_maps"))
    routes = [
        {"sender": sender, "relay": relay, "tls": mode_of.get(transports.get(sender, ""), main_tls)}
        for sender, relay in _table_lines("sender_dependent_relayhost_maps")
    ]
    return {"tls": main_tls, "routes": routes}


def send_test(to, sender=None, timeout=60, subject="postfix_relay test message"):
    """
    Submit a test message to the local Postfix and report what became of it.

    Returns the queue id and the final status: ``sent``, ``deferred`` (with the
    reason Postfix logged), ``bounced``, or ``pending`` if nothing was logged
    within ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt web1 postfix_relay.send_test to=ops@example.com
    """
    if _over_ssh():
        return _on_target("postfix_relay.send_test", to, sender=sender, timeout=timeout, subject=subject)
    import smtplib
    import time
    import uuid
    from email.message import EmailMessage

    message_id = f"<postfix-relay-test-{uuid.uuid4().hex}@{__grains__.get('fqdn') or 'localhost'}>"
    msg = EmailMessage()
    msg["From"] = sender or f"root@{__grains__.get('fqdn') or 'localhost'}"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content("Sent by salt postfix_relay.send_test: the relay works if this arrives.\n")
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
        smtp.send_message(msg)
    queue_id = None
    result = {"message_id": message_id, "queue_id": None, "status": "pending", "reason": None}
    while time.monotonic() - started < float(timeout):
        lines = _mail_log(2000)
        if queue_id is None:
            for line in lines:
                if f"message-id={message_id}" in line:
                    queue_id = line.split(": message-id=")[0].split()[-1]
                    result["queue_id"] = queue_id
        if queue_id:
            for line in lines:
                found = parse_delivery(line)
                if found and found["queue_id"] == queue_id:
                    result.update(status=found["status"], reason=found["reason"], relay=found["relay"])
                    return result
        time.sleep(1)
    return result
