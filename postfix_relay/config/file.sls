# -*- coding: utf-8 -*-
# vim: ft=sls
# Every file the relay needs, as postfix_relay.settings lists them (config/files.jinja).

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_package_install = tplroot ~ '.package.install' %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- from tplroot ~ "/config/files.jinja" import file_states, master_cf_states %}

include:
  - {{ sls_package_install }}

{#- TLS connection reuse needs the tlsproxy service, which Debian ships commented
    out (without it every message defers with "Cannot start TLS"). Uncomment
    the distribution's own line; add Postfix's default where there is none.
    With test=True on a fresh minion Postfix is not installed yet: no master.cf. #}
postfix_relay-config-file-replace-master_cf-tlsproxy:
  file.replace:
    - name: {{ postfix_relay.paths.master_cf }}
    - pattern: '^#?[ \t]*tlsproxy[ \t]+unix[ \t]+(.*)$'
    - repl: 'tlsproxy  unix  \1'
    - append_if_not_found: True
    - not_found_content: 'tlsproxy  unix  -       -       n       -       0       tlsproxy'
    - ignore_if_missing: {{ opts.test | to_bool }}
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf

{%- if postfix_relay.relay and postfix_relay.relay.tls_ca_file %}

{#- postfix_relay:tls_ca_file may come from another state of the same run, so it is
    checked here, on the minion, before main.cf names it (test=True: "would run"). #}
postfix_relay-config-cmd-run-check-tls_ca_file:
  cmd.run:
    - name: >-
        echo "postfix_relay:tls_ca_file {{ postfix_relay.relay.tls_ca_file }} is not a PEM file with a certificate on this minion:
        deploy the private CA bundle first (a state ordered before postfix_relay), then apply again" >&2; exit 1
    - unless: test -f {{ postfix_relay.relay.tls_ca_file }} && grep -q 'BEGIN CERTIFICATE' {{ postfix_relay.relay.tls_ca_file }}
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf
{%- endif %}
{{ file_states(postfix_relay, tplroot, 'postfix_relay-config', 'postfix_relay-package-pkg-installed-postfix', 'config') }}
{{ master_cf_states(postfix_relay, 'postfix_relay-config', 'postfix_relay-package-pkg-installed-postfix') }}
