"""The formula rendered by real Salt (salt-call --local) for each provider and OS family."""

from __future__ import annotations

import json

import pytest
from harness.formula import DEBIAN12, MODULE_PATH, REDHAT9
from harness.saltlocal import LocalMinion, main_cf_param, state_args

SECRET = "Rndr-S3cret pass:word!"
TOKEN = "Rndr-Postmark-T0ken-7f3a"  # Postmark: the token is username and password

PILLARS = {
    "sendgrid": ({"provider": "sendgrid", "password": SECRET}, "smtp.sendgrid.net", 587, "apikey"),
    "mailgun-eu": (
        {"provider": "mailgun", "region": "eu", "username": "postmaster@mg.example.com", "password": SECRET},
        "smtp.eu.mailgun.org",
        587,
        "postmaster@mg.example.com",
    ),
    "ses-implicit": (
        {"provider": "ses", "region": "eu-west-1", "port": 465, "username": "AKIAEXAMPLE", "password": SECRET},
        "email-smtp.eu-west-1.amazonaws.com",
        465,
        "AKIAEXAMPLE",
    ),
    "postmark": ({"provider": "postmark", "password": TOKEN}, "smtp.postmarkapp.com", 587, TOKEN),
    "custom": (
        {"provider": "custom", "host": "mail.example.net", "port": 2525, "username": "relay", "password": SECRET},
        "mail.example.net",
        2525,
        "relay",
    ),
}
OSES = {
    "debian": (DEBIAN12, "hash", "/etc/ssl/certs/ca-certificates.crt"),
    "redhat": (REDHAT9, "lmdb", "/etc/pki/tls/certs/ca-bundle.crt"),
}


# Every provider on Debian; one on RedHat (the OS-specific parts of every platform are
# checked once each in test_render_os.py: provider x OS renders repeated them).
COMBOS = [(p, "debian") for p in PILLARS] + [("sendgrid", "redhat")]


@pytest.fixture(scope="module", params=COMBOS, ids=lambda v: f"{v[0]}-{v[1]}")
def rendered(request, tmp_path_factory):
    suite, os_name = request.param
    pillar, host, port, user = PILLARS[suite]
    grains, db, ca = OSES[os_name]
    minion = LocalMinion(tmp_path_factory.mktemp(f"{suite}-{os_name}"), grains, pillar)
    show = minion.show_sls()
    return {
        "minion": minion,
        "show": show,
        "main_cf": minion.render_state(show, "postfix_relay-config-file-managed-main_cf"),
        "sasl": minion.render_state(show, "postfix_relay-config-file-managed-sasl_passwd"),
        "restart": minion.render_state(show, "postfix_relay-config-file-managed-restart_marker"),
        "expect": {"host": host, "port": port, "user": user, "db": db, "ca": ca, "os": os_name, "pillar": pillar},
    }


def test_show_sls_succeeds_with_named_states(rendered):
    show = rendered["show"]
    assert show.returncode == 0, show.stdout + show.stderr
    assert isinstance(show.data, dict)
    assert all(sid.startswith("postfix_relay-") for sid in show.data), list(show.data)
    states = {sid: body for sid, body in show.data.items()}
    assert "postfix_relay-config-file-managed-sasl_passwd" in states
    assert "postfix_relay-service-running-postfix" in states


def test_rendered_sls_data_carries_no_secret(rendered):
    show, secret = rendered["show"], rendered["expect"]["pillar"]["password"]
    assert secret not in show.stdout and secret not in show.stderr


def test_sasl_passwd_state_is_private_and_hides_diff(rendered):
    args = state_args(rendered["show"].data, "postfix_relay-config-file-managed-sasl_passwd")
    assert args["mode"] == "0600" and args["user"] == "root" and args["group"] == "root"
    assert args["show_changes"] is False
    # The context holds where each secret is in pillar, never the secret: the template reads it there.
    assert set(args["context"]) == {"lines"}
    assert [line["password_pillar"] for line in args["context"]["lines"]] == ["postfix_relay:password"]
    assert rendered["expect"]["pillar"]["password"] not in json.dumps(args)
    db = state_args(rendered["show"].data, "postfix_relay-config-file-managed-sasl_passwd_db")
    assert db["mode"] == "0600" and db["replace"] is False
    assert db["name"].endswith(".lmdb" if rendered["expect"]["os"] == "redhat" else ".db")


def test_main_cf_is_validated_before_install(rendered):
    args = state_args(rendered["show"].data, "postfix_relay-config-file-managed-main_cf")
    assert args["check_cmd"] == "/usr/local/sbin/postfix_relay-check-main-cf"


def test_postmap_uses_explicit_type_and_reruns_when_stale(rendered):
    exp = rendered["expect"]
    args = state_args(rendered["show"].data, "postfix_relay-config-cmd-run-postmap-sasl_passwd")
    assert args["name"] == f"postmap {exp['db']}:/etc/postfix/sasl_passwd"
    assert args["unless"][0]["fun"] == "postfix_relay.map_is_current"


def test_service_reloads_on_config_and_restarts_on_listener_change(rendered):
    running = state_args(rendered["show"].data, "postfix_relay-service-running-postfix")
    assert running["reload"] is True and running["enable"] is True
    watched = {next(iter(w.values())) for w in running["watch"]}
    # The whole config SLS (as template-formula does): main.cf, master.cf, every map and file.
    assert watched == {"postfix_relay.config.file"}
    config_states = {
        sid for sid, body in rendered["show"].data.items() if body["__sls__"] == "postfix_relay.config.file"
    }
    assert {
        "postfix_relay-config-file-managed-main_cf",
        "postfix_relay-config-file-replace-master_cf-tlsproxy",
        "postfix_relay-config-cmd-run-postmap-sasl_passwd",
        "postfix_relay-config-cmd-run-postalias",
    } <= config_states
    restart = state_args(rendered["show"].data, "postfix_relay-service-module-run-restart")
    assert restart["service.restart"] == [{"name": "postfix"}]
    # Only when the running master predates the listener settings (self-healing, no restart after a fresh start).
    assert restart["onlyif"] == ["test /var/spool/postfix/pid/master.pid -ot /etc/postfix/postfix_relay.restart"]


def test_packages_per_os(rendered):
    show = rendered["show"]
    pkgs = state_args(show.data, "postfix_relay-package-pkg-installed-postfix")["pkgs"]
    if rendered["expect"]["os"] == "debian":
        assert pkgs == ["postfix", "libsasl2-modules", "ca-certificates"]
        debconf = state_args(show.data, "postfix_relay-package-cmd-run-debconf")
        assert "postfix/main_mailer_type select No configuration" in debconf["stdin"]
    else:  # EL 9: lmdb needs Postfix's lmdb plugin package
        assert pkgs == ["postfix", "cyrus-sasl-plain", "ca-certificates", "postfix-lmdb"]
        assert "postfix_relay-package-cmd-run-debconf" not in show.data


def test_main_cf_content(rendered):
    text, exp = rendered["main_cf"], rendered["expect"]
    assert text.startswith("# Managed by Salt (postfix_relay)")
    assert main_cf_param(text, "relayhost") == f"[{exp['host']}]:{exp['port']}"
    assert main_cf_param(text, "smtp_sasl_password_maps") == f"{exp['db']}:/etc/postfix/sasl_passwd"
    assert main_cf_param(text, "smtp_tls_security_level") == "secure"
    assert main_cf_param(text, "smtp_tls_CAfile") == exp["ca"]
    assert main_cf_param(text, "smtp_tls_wrappermode") == ("yes" if exp["port"] == 465 else None)
    assert main_cf_param(text, "inet_interfaces") == "loopback-only"
    assert main_cf_param(text, "smtp_sasl_security_options") == "noanonymous"
    assert main_cf_param(text, "myhostname") == "web1.example.com"
    assert main_cf_param(text, "smtp_tls_connection_reuse") == "yes"
    assert rendered["expect"]["pillar"]["password"] not in text
    names = [line.split(" = ")[0] for line in text.splitlines() if " = " in line and not line.startswith("#")]
    assert len(names) == len(set(names)), "a parameter is rendered twice"


def test_sasl_passwd_content(rendered):
    exp = rendered["expect"]
    lines = [line for line in rendered["sasl"].splitlines() if line and not line.startswith("#")]
    assert lines == [f"[{exp['host']}]:{exp['port']} {exp['user']}:{exp['pillar']['password']}"]
    assert rendered["sasl"].endswith("\n") and not rendered["sasl"].endswith("\n\n")


def test_restart_marker_content(rendered):
    assert "inet_interfaces = loopback-only" in rendered["restart"].splitlines()


def test_secret_not_in_logs_or_caches_after_rendering(rendered):
    minion, secret = rendered["minion"], rendered["expect"]["pillar"]["password"]
    hits = [p for p in minion.files_containing(secret) if "rendered" not in p.parts and "pillar" not in p.parts]
    assert hits == []


# --------------------------------------------------------------------------
# Bad pillar: rendering fails with the message, before any state exists.
# --------------------------------------------------------------------------
BAD = [
    ({"provider": "sendgird", "password": "x"}, "postfix_relay:provider must be one of"),
    ({"provider": "sendgrid"}, "postfix_relay:password is required"),
    ({"provider": "ses", "username": "u", "password": "x"}, "postfix_relay:region is required for ses"),
    (
        {"provider": "mailgun", "region": "ap", "username": "u", "password": "x"},
        "postfix_relay:region must be one of us | eu",
    ),
    ({"provider": "custom", "username": "u", "password": "x"}, "postfix_relay:host is required"),
    ({"provider": "sendgrid", "password": "x", "port": 99999}, "postfix_relay:port must be an integer from 1 to 65535"),
    (
        {"provider": "postmark", "password": "x", "tls": "implicit"},
        "postfix_relay:tls implicit is not offered by postmark",
    ),
    (
        {"provider": "sendgrid", "password": "x", "main_cf": {"inet_interfaces": "all"}},
        "postfix_relay:main_cf:inet_interfaces is security-critical",
    ),
    (None, "postfix_relay:provider is required"),
]


@pytest.mark.parametrize(("pillar", "message"), BAD, ids=[m.split(" ")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_pillar_fails_rendering_with_its_message(tmp_path, pillar, message):
    minion = LocalMinion(tmp_path, DEBIAN12, pillar)
    res = minion.show_sls()
    assert res.returncode != 0
    assert isinstance(res.data, list), res.stdout
    assert all("Rendering SLS" in err for err in res.data)
    assert message in res.data[0]
    assert "nothing was changed on this minion" in res.data[0]


def test_bad_password_is_never_echoed(tmp_path):
    minion = LocalMinion(tmp_path, DEBIAN12, {"provider": "sendgrid", "password": " Leaky-Secret-42"})
    res = minion.show_sls()
    assert res.returncode != 0
    assert "Leaky-Secret-42" not in res.stdout + res.stderr + minion.log_text()


# --------------------------------------------------------------------------
# The execution module reaches a brand-new minion and replaces a stale copy.
# --------------------------------------------------------------------------
def test_module_synced_on_fresh_minion_and_stale_copy_replaced(tmp_path):
    minion = LocalMinion(tmp_path, DEBIAN12, PILLARS["sendgrid"][0])
    synced = minion.extmods / "modules" / "postfix_relay.py"
    assert not synced.exists()
    assert minion.show_sls().returncode == 0
    assert synced.read_bytes() == MODULE_PATH.read_bytes()
    # An older formula's module: settings() that knows nothing of this pillar.
    synced.write_text("def settings(clean=False):\n    raise RuntimeError('stale module still loaded')\n")
    res = minion.show_sls()
    assert res.returncode == 0, res.stdout
    assert synced.read_bytes() == MODULE_PATH.read_bytes()


def test_missing_module_on_fileserver_names_the_fix(tmp_path):
    minion = LocalMinion(tmp_path, DEBIAN12, PILLARS["sendgrid"][0])
    # Serve only the formula directory, as a user who forgot _modules/ would.
    (minion.file_root / "_modules").unlink()
    assert (minion.file_root / "postfix_relay").exists()
    res = minion.show_sls()
    assert res.returncode != 0
    assert "salt://_modules/postfix_relay.py is not on the fileserver" in json.dumps(res.data)


# --------------------------------------------------------------------------
# clean needs no pillar and renders a local-only main.cf
# --------------------------------------------------------------------------
def test_clean_renders_without_pillar(tmp_path):
    minion = LocalMinion(tmp_path, DEBIAN12, None)
    res = minion.show_sls("postfix_relay.clean")
    assert res.returncode == 0, res.stdout
    absent = {body["file"][0]["name"] for sid, body in res.data.items() if "file-absent" in sid}
    assert absent == {
        "/etc/postfix/sasl_passwd",
        "/etc/postfix/sasl_passwd.db",
        "/etc/postfix/sender_relay",
        "/etc/postfix/sender_relay.db",
        "/etc/postfix/sender_transport",
        "/etc/postfix/sender_transport.db",
        "/etc/postfix/sender_canonical",
        "/etc/postfix/redirect_recipients",
        "/etc/postfix/redirect_headers",
        "/etc/postfix/postfix_relay.mode",
        "/etc/postfix/postfix_relay.django_env",
        "/etc/postfix/postfix_relay.requeue",
        "/etc/postfix/postfix_relay.restart",
        "/usr/local/sbin/postfix_relay-check-main-cf",
        # monitoring (postfix_relay:monitoring): collector, units, state; the timer stops first
        "/usr/local/sbin/postfix_relay-metrics",
        "/etc/postfix/postfix_relay.monitoring.json",
        "/etc/systemd/system/postfix_relay-metrics.service",
        "/etc/systemd/system/postfix_relay-metrics.timer",
        "/var/lib/postfix_relay",
        "/etc/postfix/postfix_relay.beacon",
    }
    # The per-route transports leave master.cf too.
    removed = {
        res.data[f"postfix_relay-config-clean-cmd-run-master_cf-{n}"]["cmd"][0]["name"]
        for n in ("postfix_relay_implicit", "postfix_relay_starttls")
    }
    assert removed == {"postconf -MX postfix_relay_implicit/unix", "postconf -MX postfix_relay_starttls/unix"}
    # The timer stops, then the textfile goes, then the collector and its units.
    remove = res.data["postfix_relay-monitoring-clean-cmd-run-remove-textfile"]["cmd"]
    assert {"require": [{"service": "postfix_relay-monitoring-clean-service-dead-timer"}]} in remove
    assert any("postfix_relay-config-clean-file-absent-monitoring_timer" in str(x) for x in remove)
    text = minion.render_state(res, "postfix_relay-config-clean-file-managed-main_cf")
    assert main_cf_param(text, "relayhost") is None
    assert main_cf_param(text, "inet_interfaces") == "loopback-only"
    assert main_cf_param(text, "default_transport").startswith("retry:")
    assert "smtp_sasl" not in text


# --------------------------------------------------------------------------
# django_env: included by init.sls when the pillar asks for it
# --------------------------------------------------------------------------
def test_django_env_state_and_file(tmp_path):
    pillar = {
        **PILLARS["sendgrid"][0],
        "django_env": {"path": "/etc/app/email.env", "mode": "direct", "user": "www-data"},
    }
    minion = LocalMinion(tmp_path, DEBIAN12, pillar)
    show = minion.show_sls()
    assert show.returncode == 0, show.stdout
    args = state_args(show.data, "postfix_relay-django_env-file-managed-env")
    assert (args["name"], args["user"], args["mode"], args["show_changes"]) == (
        "/etc/app/email.env",
        "www-data",
        "0600",
        False,
    )
    assert SECRET not in show.stdout
    text = minion.render_state(show, "postfix_relay-django_env-file-managed-env")
    assert f"EMAIL_HOST_PASSWORD={json.dumps(SECRET)}" in text.splitlines()
    assert 'EMAIL_USE_TLS="True"' in text and 'EMAIL_USE_SSL="False"' in text


def test_no_django_env_file_without_pillar(tmp_path):
    show = LocalMinion(tmp_path, DEBIAN12, PILLARS["sendgrid"][0]).show_sls()
    assert show.returncode == 0
    assert [sid for sid in show.data if "django_env" in sid] == ["postfix_relay-django_env-file-absent-record"]


# --------------------------------------------------------------------------
# Operations features: sender rewriting, root alias, per-sender routes
# --------------------------------------------------------------------------
def test_operations_features_render(tmp_path):
    pillar = {
        **PILLARS["postmark"][0],
        "from_address": "noreply@example.com",
        "root_alias": "ops@example.com",
        "routes": [{"senders": ["@marketing.example.com"], "provider": "sendgrid", "password": SECRET}],
    }
    minion = LocalMinion(tmp_path, DEBIAN12, pillar)
    show = minion.show_sls()
    assert show.returncode == 0, show.stdout
    assert SECRET not in show.stdout and TOKEN not in show.stdout
    for sid in (
        "postfix_relay-config-file-managed-sender_relay",
        "postfix_relay-config-cmd-run-postmap-sender_relay",
        "postfix_relay-config-file-managed-sender_canonical",
    ):
        assert sid in show.data, sid
    assert state_args(show.data, "postfix_relay-config-file-managed-aliases")["template"] == "jinja"
    # Every map is compiled before main.cf names it (first enabling of routes, disabled -> enabled):
    # main.cf waits for the maps, and the maps need only main.cf to exist (the placeholder).
    for sid in (
        "postfix_relay-config-cmd-run-postmap-sender_relay",
        "postfix_relay-config-file-managed-sasl_passwd_db",
        "postfix_relay-config-cmd-run-postalias",
        "postfix_relay-config-file-managed-sender_canonical",
    ):
        required_in = {next(iter(r.values())) for r in state_args(show.data, sid)["require_in"]}
        assert required_in == {"postfix_relay-config-file-managed-main_cf"}, sid
    for sid in (
        "postfix_relay-config-cmd-run-postmap-sender_relay",
        "postfix_relay-config-cmd-run-postmap-sasl_passwd",
    ):
        requires = {next(iter(r.values())) for r in state_args(show.data, sid)["require"]}
        assert "postfix_relay-config-file-managed-main_cf" not in requires, sid
        assert "postfix_relay-config-file-managed-main_cf-placeholder" in requires, sid
    assert minion.render_state(show, "postfix_relay-config-file-managed-sender_relay").splitlines()[1:] == [
        "@marketing.example.com [smtp.sendgrid.net]:587"
    ]
    assert minion.render_state(show, "postfix_relay-config-file-managed-sender_canonical").splitlines()[1:] == [
        r"!/@(example\.com|marketing\.example\.com)$/ noreply@example.com"
    ]
    assert minion.render_state(show, "postfix_relay-config-file-managed-aliases").splitlines()[1:] == [
        "postmaster:    root",
        "root:          ops@example.com",
    ]
    sasl = minion.render_state(show, "postfix_relay-config-file-managed-sasl_passwd").splitlines()[1:]
    assert sasl == [f"[smtp.postmarkapp.com]:587 {TOKEN}:{TOKEN}", f"@marketing.example.com apikey:{SECRET}"]
    cf = minion.render_state(show, "postfix_relay-config-file-managed-main_cf")
    assert main_cf_param(cf, "sender_dependent_relayhost_maps") == "hash:/etc/postfix/sender_relay"
    assert main_cf_param(cf, "sender_canonical_maps") == "regexp:/etc/postfix/sender_canonical"


# --------------------------------------------------------------------------
# monitoring: off by default (timer stopped, files absent, beacon removed only if the formula set it)
# --------------------------------------------------------------------------
def test_monitoring_off_by_default(rendered):
    show = rendered["show"]
    dead = state_args(show.data, "postfix_relay-monitoring-service-dead-timer")
    assert dead["name"] == "postfix_relay-metrics.timer" and dead["enable"] is False
    # Skipped where the formula never installed it (test=True would else report "would stop").
    assert dead["onlyif"] == "test -e /etc/systemd/system/postfix_relay-metrics.timer"
    assert "postfix_relay-monitoring-file-absent-monitoring_script" in show.data
    assert "postfix_relay-monitoring-file-absent-monitoring_timer" in show.data
    absent = state_args(show.data, "postfix_relay-monitoring-beacon-absent")
    assert absent["onlyif"] == "test -e /etc/postfix/postfix_relay.beacon"


def test_monitoring_on_renders_collector_timer_and_beacon(tmp_path):
    pillar = {
        "provider": "sendgrid",
        "password": SECRET,
        "monitoring": {"textfile": "/var/lib/prometheus/node-exporter/postfix_relay.prom", "beacon": {"deferred": 5}},
    }
    show = LocalMinion(tmp_path, DEBIAN12, pillar).show_sls()
    assert show.returncode == 0, show.stdout + show.stderr
    assert SECRET not in show.stdout
    script = state_args(show.data, "postfix_relay-monitoring-file-managed-monitoring_script")
    assert (
        script["source"] == "salt://postfix_relay/files/default/postfix_relay-metrics.py" and script["mode"] == "0755"
    )
    timer = state_args(show.data, "postfix_relay-monitoring-service-running-timer")
    assert timer["name"] == "postfix_relay-metrics.timer" and timer["enable"] is True
    beacon = state_args(show.data, "postfix_relay-monitoring-beacon-present")
    assert (beacon["name"], beacon["interval"], beacon["deferred"], beacon["oldest_age"]) == (
        "postfix_relay",
        30,
        5,
        900,
    )
    assert "postfix_relay-monitoring-saltutil-sync_beacons" in show.data
    assert "postfix_relay-monitoring-beacon-absent" not in show.data
    directory = state_args(show.data, "postfix_relay-monitoring-file-directory-textfile")
    assert directory["name"] == "/var/lib/prometheus/node-exporter"


def test_route_in_another_tls_mode_renders_its_transport(tmp_path):
    pillar = {
        **PILLARS["sendgrid"][0],
        "routes": [
            {"senders": ["@mg.example.com"], "provider": "mailgun", "username": "u", "password": SECRET, "port": 465}
        ],
    }
    minion = LocalMinion(tmp_path, DEBIAN12, pillar)
    show = minion.show_sls()
    assert show.returncode == 0, show.stdout
    assert SECRET not in show.stdout
    add = state_args(show.data, "postfix_relay-config-cmd-run-master_cf-postfix_relay_implicit")
    entry = "postfix_relay_implicit unix - - n - - smtp -o smtp_tls_wrappermode=yes"
    assert add["name"] == f"postconf -M 'postfix_relay_implicit/unix={entry}'"
    assert add["unless"].endswith(f"= '{entry}'")
    # Added before main.cf names it; the unused clone is removed after main.cf forgets it.
    assert {next(iter(r.values())) for r in add["require_in"]} == {"postfix_relay-config-file-managed-main_cf"}
    drop = state_args(show.data, "postfix_relay-config-cmd-run-master_cf-postfix_relay_starttls")
    assert drop["name"] == "postconf -MX postfix_relay_starttls/unix"
    assert {next(iter(r.values())) for r in drop["require"]} == {"postfix_relay-config-file-managed-main_cf"}
    transport = minion.render_state(show, "postfix_relay-config-file-managed-sender_transport")
    assert transport.splitlines()[1:] == ["@mg.example.com postfix_relay_implicit"]
    cf = minion.render_state(show, "postfix_relay-config-file-managed-main_cf")
    assert main_cf_param(cf, "sender_dependent_default_transport_maps") == "hash:/etc/postfix/sender_transport"
    assert main_cf_param(cf, "smtp_tls_wrappermode") is None
