"""Bad pillars and the words their refusal must contain.

Shared by the unit tests (settings() refuses each) and the faults suite (on a
converged minion each fails the run and changes nothing).  Each entry:
(id, pillar, fragments that must appear in the message).
"""

BAD_PILLARS = [
    # id, pillar, expected fragments
    ("no-pillar", None, ["postfix_relay:provider is required", "sendgrid | mailgun | ses | postmark | custom"]),
    ("missing-provider", {"password": "x"}, ["postfix_relay:provider is required"]),
    (
        "unknown-provider",
        {"provider": "sendgird", "password": "x"},
        ["postfix_relay:provider must be one of", "did you mean 'sendgrid'"],
    ),
    ("provider-not-string", {"provider": 5, "password": "x"}, ["postfix_relay:provider must be one of"]),
    ("missing-password", {"provider": "sendgrid"}, ["postfix_relay:password is required"]),
    ("empty-password", {"provider": "sendgrid", "password": ""}, ["postfix_relay:password must not be empty"]),
    (
        "int-password",
        {"provider": "sendgrid", "password": 123},
        ["postfix_relay:password must be a string", "quote it"],
    ),
    (
        "password-newline",
        {"provider": "sendgrid", "password": "abc\ndef"},
        ["postfix_relay:password must be a single line"],
    ),
    (
        "password-leading-space",
        {"provider": "sendgrid", "password": " abc"},
        ["postfix_relay:password must not start or end with whitespace"],
    ),
    (
        "password-trailing-space",
        {"provider": "sendgrid", "password": "abc "},
        ["postfix_relay:password must not start or end with whitespace"],
    ),
    (
        "password-control",
        {"provider": "sendgrid", "password": "ab\x07c"},
        ["postfix_relay:password must not contain control characters"],
    ),
    (
        "ses-no-region",
        {"provider": "ses", "username": "u", "password": "x"},
        ["postfix_relay:region is required for ses"],
    ),
    (
        "ses-bad-region",
        {"provider": "ses", "region": "europe", "username": "u", "password": "x"},
        ["postfix_relay:region must be an AWS region"],
    ),
    (
        "ses-unknown-region",
        {"provider": "ses", "region": "eu-west-9", "username": "u", "password": "x"},
        ["'eu-west-9' is not an SES region", "did you mean 'eu-west-", "postfix_relay:host"],
    ),
    (
        "mailgun-bad-region",
        {"provider": "mailgun", "region": "asia", "username": "u", "password": "x"},
        ["postfix_relay:region must be one of us | eu"],
    ),
    (
        "region-on-sendgrid",
        {"provider": "sendgrid", "region": "eu", "password": "x"},
        ["postfix_relay:region is only used with ses and mailgun"],
    ),
    (
        "custom-no-host",
        {"provider": "custom", "username": "u", "password": "x"},
        ["postfix_relay:host is required when provider is custom"],
    ),
    (
        "host-whitespace",
        {"provider": "custom", "host": "smtp example.net", "username": "u", "password": "x"},
        ["postfix_relay:host must be a plain host name"],
    ),
    (
        "host-brackets",
        {"provider": "custom", "host": "[smtp.example.net]", "username": "u", "password": "x"},
        ["postfix_relay:host must be a plain host name"],
    ),
    (
        "host-with-port",
        {"provider": "custom", "host": "smtp.example.net:587", "username": "u", "password": "x"},
        ["postfix_relay:host must be a plain host name", "postfix_relay:port"],
    ),
    (
        "host-control",
        {"provider": "custom", "host": "smtp.example.net\n", "username": "u", "password": "x"},
        ["postfix_relay:host must be a plain host name"],
    ),
    (
        "port-zero",
        {"provider": "sendgrid", "password": "x", "port": 0},
        ["postfix_relay:port must be an integer from 1 to 65535, got 0"],
    ),
    (
        "port-big",
        {"provider": "custom", "host": "h.example", "username": "u", "password": "x", "port": 70000},
        ["postfix_relay:port must be an integer from 1 to 65535"],
    ),
    ("port-text", {"provider": "sendgrid", "password": "x", "port": "smtp"}, ["postfix_relay:port must be an integer"]),
    ("port-bool", {"provider": "sendgrid", "password": "x", "port": True}, ["postfix_relay:port must be an integer"]),
    (
        "port-not-offered",
        {"provider": "sendgrid", "password": "x", "port": 2587},
        ["postfix_relay:port 2587 is not offered by sendgrid", "25, 587, 2525 (STARTTLS)", "465 (implicit TLS)"],
    ),
    (
        "tls-bad",
        {"provider": "sendgrid", "password": "x", "tls": "ssl"},
        ["postfix_relay:tls must be starttls", "implicit"],
    ),
    (
        "tls-port-mismatch",
        {"provider": "sendgrid", "password": "x", "port": 587, "tls": "implicit"},
        ["postfix_relay:tls is implicit but sendgrid port 587 speaks starttls", "465"],
    ),
    (
        "postmark-implicit",
        {"provider": "postmark", "password": "x", "tls": "implicit"},
        ["postfix_relay:tls implicit is not offered by postmark"],
    ),
    (
        "postmark-465",
        {"provider": "postmark", "password": "x", "port": 465},
        ["postfix_relay:port 465 is not offered by postmark"],
    ),
    (
        "tls-verify-text",
        {"provider": "sendgrid", "password": "x", "tls_verify": "no"},
        ["postfix_relay:tls_verify must be true or false"],
    ),
    (
        "username-newline",
        {"provider": "mailgun", "username": "a\nb", "password": "x"},
        ["postfix_relay:username must be a single line"],
    ),
    (
        "username-space",
        {"provider": "mailgun", "username": "pm@mg.example.com ", "password": "x"},
        ["postfix_relay:username must not start or end with whitespace"],
    ),
    (
        "username-colon",
        {"provider": "mailgun", "username": "a:b", "password": "x"},
        ["postfix_relay:username must not contain ':'"],
    ),
    ("username-missing", {"provider": "mailgun", "password": "x"}, ["postfix_relay:username is required for mailgun"]),
    (
        "username-sendgrid",
        {"provider": "sendgrid", "username": "me@example.com", "password": "x"},
        ["postfix_relay:username for sendgrid is always 'apikey'"],
    ),
    (
        "postmark-token-colon",
        {"provider": "postmark", "password": "a:b"},
        ["postfix_relay:password contains ':'", "postfix_relay:username"],
    ),
    (
        "main-cf-bad-key",
        {"provider": "sendgrid", "password": "x", "main_cf": {"Header-Size": 1}},
        ["postfix_relay:main_cf parameter name 'Header-Size' must match [A-Za-z0-9_]+", "case-sensitive"],
    ),
    (
        "main-cf-newline",
        {"provider": "sendgrid", "password": "x", "main_cf": {"smtpd_banner": "a\nrelayhost = evil"}},
        ["postfix_relay:main_cf:smtpd_banner must be a single line"],
    ),
    (
        "main-cf-dict-value",
        {"provider": "sendgrid", "password": "x", "main_cf": {"biff": {"a": 1}}},
        ["postfix_relay:main_cf:biff must be a string, number, boolean or list"],
    ),
    (
        "main-cf-not-mapping",
        {"provider": "sendgrid", "password": "x", "main_cf": ["biff"]},
        ["postfix_relay:main_cf must be a mapping"],
    ),
    (
        "main-cf-protected",
        {"provider": "sendgrid", "password": "x", "main_cf": {"inet_interfaces": "all"}},
        ["postfix_relay:main_cf:inet_interfaces is security-critical", "postfix_relay:allow_unsafe_overrides"],
    ),
    (
        "main-cf-protected-tls",
        {"provider": "sendgrid", "password": "x", "main_cf": {"smtp_tls_security_level": "may"}},
        ["postfix_relay:main_cf:smtp_tls_security_level is security-critical"],
    ),
    (
        "main-cf-relayhost",
        {"provider": "sendgrid", "password": "x", "main_cf": {"relayhost": "[evil]:25"}},
        ["postfix_relay:main_cf:relayhost is security-critical"],
    ),
    (
        "allow-unknown",
        {"provider": "sendgrid", "password": "x", "allow_unsafe_overrides": ["biff"]},
        ["postfix_relay:allow_unsafe_overrides lists 'biff', which is not a protected parameter"],
    ),
    (
        "unknown-key",
        {"provider": "sendgrid", "passwd": "x"},
        ["postfix_relay:passwd is not a known key", "did you mean 'password'", "postfix_relay:password is required"],
    ),
    (
        "myhostname-short",
        {"provider": "sendgrid", "password": "x", "myhostname": "web1"},
        ["postfix_relay:myhostname must be fully qualified"],
    ),
    (
        "myhostname-bad",
        {"provider": "sendgrid", "password": "x", "myhostname": "web 1.example.com"},
        ["postfix_relay:myhostname must be a plain host name"],
    ),
    (
        "unknown-provider-collects-more",
        {"provider": "mailgum", "password": "x ", "port": 0},
        ["did you mean 'mailgun'", "postfix_relay:port must be", "postfix_relay:password must not start"],
    ),
    (
        "concurrency-zero",
        {"provider": "sendgrid", "password": "x", "concurrency": 0},
        ["postfix_relay:concurrency must be an integer from 1 to 100"],
    ),
    (
        "concurrency-text",
        {"provider": "sendgrid", "password": "x", "concurrency": "many"},
        ["postfix_relay:concurrency must be an integer"],
    ),
    (
        "rate-too-fast",
        {"provider": "ses", "region": "eu-west-1", "username": "u", "password": "x", "rate_per_second": 14},
        [
            "postfix_relay:rate_per_second must be a number from 0.000278 (one message an hour) to 1",
            "postfix_relay:concurrency",
        ],
    ),
    (
        "sandbox-not-ses",
        {"provider": "sendgrid", "password": "x", "sandbox": True},
        ["postfix_relay:sandbox applies to providers with a sandbox rate limit (ses), not sendgrid"],
    ),
    (
        "sandbox-not-bool",
        {"provider": "ses", "region": "eu-west-1", "username": "u", "password": "x", "sandbox": "yes"},
        ["postfix_relay:sandbox must be true or false"],
    ),
    (
        "rate-zero",
        {"provider": "sendgrid", "password": "x", "rate_per_second": 0},
        ["postfix_relay:rate_per_second must be a number from"],
    ),
    (
        "rate-per-second-tiny",
        {"provider": "sendgrid", "password": "x", "rate_per_second": 1e-12},
        ["postfix_relay:rate_per_second must be a number from", "one message an hour"],
    ),
    (
        "from-address-bad",
        {"provider": "sendgrid", "password": "x", "from_address": "noreply"},
        ["postfix_relay:from_address must be an address"],
    ),
    (
        "sender-map-without-from",
        {"provider": "sendgrid", "password": "x", "sender_map": {"root": "ops@example.com"}},
        ["postfix_relay:from_address is required when sender_map"],
    ),
    (
        "sender-map-bad-user",
        {
            "provider": "sendgrid",
            "password": "x",
            "from_address": "n@example.com",
            "sender_map": {"Bad User": "a@example.com"},
        },
        ["postfix_relay:sender_map:Bad User must be a local user name"],
    ),
    (
        "root-alias-bad",
        {"provider": "sendgrid", "password": "x", "root_alias": ["ops"]},
        ["postfix_relay:root_alias entries must be addresses"],
    ),
    (
        "routes-not-list",
        {"provider": "sendgrid", "password": "x", "routes": {"senders": ["@a.example.com"]}},
        ["postfix_relay:routes must be a list"],
    ),
    (
        "route-bad-sender",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [{"senders": ["marketing"], "provider": "postmark", "password": "t"}],
        },
        ["postfix_relay:routes:0:senders entries must look like"],
    ),
    (
        "route-no-password",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [{"senders": ["@m.example.com"], "provider": "mailgun", "username": "u"}],
        },
        ["postfix_relay:routes:0:password is required"],
    ),
    (
        "route-tls-contradicts-port",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [
                {"senders": ["@m.example.com"], "provider": "sendgrid", "password": "y", "port": 465, "tls": "starttls"}
            ],
        },
        ["postfix_relay:routes:0:tls is starttls but sendgrid port 465 speaks implicit"],
    ),
    (
        "route-duplicate-sender",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [
                {"senders": ["@m.example.com"], "provider": "postmark", "password": "t"},
                {"senders": ["@M.example.com"], "provider": "postmark", "password": "u"},
            ],
        },
        ["postfix_relay:routes:1:senders '@M.example.com' is already routed"],
    ),
    (
        "route-unknown-key",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [{"senders": ["@m.example.com"], "provider": "postmark", "password": "t", "pasword": "t"}],
        },
        ["postfix_relay:routes:0:pasword is not a route key"],
    ),
    (
        "redirect-bad",
        {"provider": "sendgrid", "password": "x", "redirect_all_to": "qa"},
        ["postfix_relay:redirect_all_to must be an address"],
    ),
    (
        "enabled-text",
        {"provider": "sendgrid", "password": "x", "enabled": "no"},
        ["postfix_relay:enabled must be true or false"],
    ),
    # ---- tls_ca_file (a relay with a private CA) and mixed-case main.cf names ----
    (
        "tls-ca-file-public-provider",
        {"provider": "sendgrid", "password": "x", "tls_ca_file": "/etc/ssl/corp/ca.pem"},
        [
            "postfix_relay:tls_ca_file is for a relay whose certificate comes from a private CA",
            "provider custom or a host override",
            "remove tls_ca_file",
        ],
    ),
    (
        "tls-ca-file-without-verify",
        {
            "provider": "custom",
            "host": "smtp.corp.example",
            "username": "u",
            "password": "x",
            "tls_ca_file": "/etc/ssl/corp/ca.pem",
            "tls_verify": False,
        },
        ["postfix_relay:tls_ca_file contradicts tls_verify: false", "remove tls_verify: false"],
    ),
    (
        "tls-ca-file-relative",
        {"provider": "custom", "host": "h.example", "username": "u", "password": "x", "tls_ca_file": "corp/ca.pem"},
        ["postfix_relay:tls_ca_file must be the absolute path of a PEM file on the minion"],
    ),
    (
        "tls-ca-file-dotdot",
        {"provider": "custom", "host": "h.example", "username": "u", "password": "x", "tls_ca_file": "/etc/../ca.pem"},
        ["postfix_relay:tls_ca_file must be the absolute path", "'..'"],
    ),
    (
        "tls-ca-file-per-route",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [
                {
                    "senders": ["@corp.example.com"],
                    "provider": "custom",
                    "host": "smtp.corp.example",
                    "username": "u",
                    "password": "y",
                    "tls_ca_file": "/etc/ssl/corp/ca.pem",
                }
            ],
        },
        ["postfix_relay:routes:0:tls_ca_file is not a route key", "set postfix_relay:tls_ca_file"],
    ),
    (
        "tls-ca-file-and-main-cf",
        {
            "provider": "custom",
            "host": "h.example",
            "username": "u",
            "password": "x",
            "tls_ca_file": "/etc/ssl/corp/ca.pem",
            "main_cf": {"smtp_tls_CAfile": "/etc/ssl/other.pem"},
            "allow_unsafe_overrides": ["smtp_tls_CAfile"],
        },
        ["postfix_relay:tls_ca_file and postfix_relay:main_cf:smtp_tls_CAfile both set the trusted CAs"],
    ),
    (
        "main-cf-protected-cafile",
        {
            "provider": "custom",
            "host": "h.example",
            "username": "u",
            "password": "x",
            "main_cf": {"smtp_tls_CAfile": "/x.pem"},
        },
        ["postfix_relay:main_cf:smtp_tls_CAfile is security-critical", "set postfix_relay:tls_ca_file instead"],
    ),
    (
        "main-cf-wrong-case",
        {"provider": "sendgrid", "password": "x", "main_cf": {"smtp_tls_cafile": "/x.pem"}},
        ["postfix_relay:main_cf:smtp_tls_cafile is not a Postfix parameter", "did you mean 'smtp_tls_CAfile'"],
    ),
    # ---- addresses: nothing that /etc/aliases or a Postfix table would take as an instruction ----
    (
        "root-alias-pipe",
        {"provider": "sendgrid", "password": "x", "root_alias": "|/usr/local/bin/evil"},
        ["postfix_relay:root_alias entries must be addresses", "'|' is not allowed", "allowed: user@example.com"],
    ),
    (
        "root-alias-file",
        {"provider": "sendgrid", "password": "x", "root_alias": ["ops@example.com", "/root/.ssh/authorized_keys"]},
        ["postfix_relay:root_alias entries must be addresses", "'/' is not allowed", "allowed: user@example.com"],
    ),
    (
        "root-alias-include",
        {"provider": "sendgrid", "password": "x", "root_alias": ":include:/etc/postfix/more"},
        ["postfix_relay:root_alias entries must be addresses", "':include:' is not allowed"],
    ),
    (
        "from-address-dollar",
        {"provider": "sendgrid", "password": "x", "from_address": "noreply${1}@example.com"},
        ["postfix_relay:from_address must be an address", "'$' is not allowed", "allowed: user@example.com"],
    ),
    (
        "sender-map-pipe",
        {
            "provider": "sendgrid",
            "password": "x",
            "from_address": "n@example.com",
            "sender_map": {"www-data": "|x@example.com"},
        },
        ["postfix_relay:sender_map:www-data must be an address", "'|' is not allowed"],
    ),
    (
        "redirect-whitespace",
        {"provider": "sendgrid", "password": "x", "redirect_all_to": ["qa@example.com", "qa @example.com"]},
        ["postfix_relay:redirect_all_to must be an address", "whitespace is not allowed"],
    ),
    (
        "redirect-control",
        {"provider": "sendgrid", "password": "x", "redirect_all_to": "qa\x07@example.com"},
        ["postfix_relay:redirect_all_to must be an address", "control characters are not allowed"],
    ),
    (
        "route-sender-slash",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [{"senders": ["/tmp/x@example.com"], "provider": "postmark", "password": "t"}],
        },
        ["postfix_relay:routes:0:senders entries must look like", "'/' is not allowed"],
    ),
    (
        "route-sender-comment",
        {
            "provider": "sendgrid",
            "password": "x",
            "routes": [{"senders": ["#news@example.com"], "provider": "postmark", "password": "t"}],
        },
        ["postfix_relay:routes:0:senders entries must look like", "must not start with '#'"],
    ),
    (
        "redirect-percent-hack",
        {"provider": "sendgrid", "password": "x", "redirect_all_to": "qa%customer.example@localhost"},
        ["postfix_relay:redirect_all_to", "'%' and '!' are not allowed"],
    ),
    (
        "redirect-switched-off-by-main-cf",
        {
            "provider": "sendgrid",
            "password": "x",
            "redirect_all_to": "qa@example.com",
            "main_cf": {"receive_override_options": "no_address_mappings"},
            "allow_unsafe_overrides": ["receive_override_options"],
        },
        ["postfix_relay:main_cf:receive_override_options would change or switch off", "redirect_all_to"],
    ),
    (
        "virtual-alias-maps-unprotected",
        {"provider": "sendgrid", "password": "x", "main_cf": {"virtual_alias_maps": "hash:/etc/postfix/virtual"}},
        ["postfix_relay:main_cf:virtual_alias_maps is security-critical", "allow_unsafe_overrides"],
    ),
    (
        "content-filter-unprotected",
        {"provider": "sendgrid", "password": "x", "main_cf": {"content_filter": "smtp:[198.51.100.7]:25"}},
        ["postfix_relay:main_cf:content_filter is security-critical"],
    ),
    (
        "django-direct-with-redirect",
        {
            "provider": "sendgrid",
            "password": "x",
            "redirect_all_to": "qa@example.com",
            "django_env": {"path": "/etc/app/email.env", "mode": "direct"},
        },
        ["postfix_relay:django_env:mode direct", "postfix_relay:redirect_all_to", "use mode relay"],
    ),
    # monitoring (postfix_relay:monitoring)
    (
        "monitoring-not-mapping",
        {"provider": "sendgrid", "password": "x", "monitoring": True},
        ["postfix_relay:monitoring must be a mapping with textfile and/or beacon"],
    ),
    (
        "monitoring-textfile-relative",
        {"provider": "sendgrid", "password": "x", "monitoring": {"textfile": "postfix_relay.prom"}},
        ["postfix_relay:monitoring:textfile must be the absolute path of a file ending in .prom"],
    ),
    (
        "monitoring-textfile-not-prom",
        {"provider": "sendgrid", "password": "x", "monitoring": {"textfile": "/var/lib/node/postfix_relay.txt"}},
        ["postfix_relay:monitoring:textfile", "only *.prom"],
    ),
    (
        "monitoring-interval-too-short",
        {"provider": "sendgrid", "password": "x", "monitoring": {"textfile": "/var/lib/n/p.prom", "interval": 1}},
        ["postfix_relay:monitoring:interval must be an integer from 5 to 3600, got 1"],
    ),
    (
        "monitoring-interval-text",
        {"provider": "sendgrid", "password": "x", "monitoring": {"textfile": "/var/lib/n/p.prom", "interval": "30s"}},
        ["postfix_relay:monitoring:interval must be an integer from 5 to 3600, got '30s'"],
    ),
    (
        "monitoring-unknown-key",
        {"provider": "sendgrid", "password": "x", "monitoring": {"textfile": "/var/lib/n/p.prom", "intervall": 30}},
        ["postfix_relay:monitoring:intervall is not a known key", "did you mean 'interval'"],
    ),
    (
        "monitoring-beacon-bad-threshold",
        {"provider": "sendgrid", "password": "x", "monitoring": {"beacon": {"oldest_age": "15m"}}},
        ["postfix_relay:monitoring:beacon:oldest_age must be an integer from 60 to 8640000"],
    ),
    (
        "monitoring-beacon-unknown-key",
        {"provider": "sendgrid", "password": "x", "monitoring": {"beacon": {"deferd": 5}}},
        ["postfix_relay:monitoring:beacon:deferd is not a known key", "did you mean 'deferred'"],
    ),
    (
        "monitoring-bad-while-disabled",
        {"enabled": False, "monitoring": {"textfile": "/tmp/x.prom", "interval": 0}},
        ["postfix_relay:monitoring:interval must be an integer from 5 to 3600"],
    ),
]
