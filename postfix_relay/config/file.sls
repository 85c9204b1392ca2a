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

{#- The map type comes from grains (a fresh minion has no postconf to ask before
    the install): once the packages are in, Postfix must support it, else no map
    is compiled and main.cf is not written.  postconf needs a main.cf: after the
    placeholder.  With test=True on a fresh minion there is no postconf yet. #}
postfix_relay-config-cmd-run-check-db_type:
  cmd.run:
    - name: >-
        echo "postfix_relay: this minion's Postfix has no {{ postfix_relay.db_type }} map support (postconf -m):
        install the package that brings it (the formula installs {{ postfix_relay.packages | join(' ') }}), then apply again" >&2; exit 1
    - onlyif: command -v postconf
    - unless: postconf -m | grep -qx {{ postfix_relay.db_type }}
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
      - file: postfix_relay-config-file-managed-main_cf-placeholder
    - require_in:
{%- for f in postfix_relay.files if f.present and f.compile and f.sls == 'config' %}
      - cmd: postfix_relay-config-cmd-run-{{ f.compile.id }}
{%- endfor %}
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
