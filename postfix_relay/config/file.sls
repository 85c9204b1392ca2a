# -*- coding: utf-8 -*-
# vim: ft=sls

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_package_install = tplroot ~ '.package.install' %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- set paths = postfix_relay.paths %}

include:
  - {{ sls_package_install }}

postfix_relay-config-file-managed-check_main_cf:
  file.managed:
    - name: {{ paths.check_main_cf }}
    - source: salt://{{ tplroot }}/files/default/check-main-cf.sh
    - user: root
    - group: root
    - mode: '0755'

{#- TLS connection reuse needs the tlsproxy service, which Debian ships commented
    out (without it every message defers with "Cannot start TLS"). Uncomment
    the distribution's own line; add Postfix's default where there is none.
    With test=True on a fresh minion Postfix is not installed yet: no master.cf. #}
postfix_relay-config-file-replace-master_cf-tlsproxy:
  file.replace:
    - name: {{ paths.master_cf }}
    - pattern: '^#?[ \t]*tlsproxy[ \t]+unix[ \t]+(.*)$'
    - repl: 'tlsproxy  unix  \1'
    - append_if_not_found: True
    - not_found_content: 'tlsproxy  unix  -       -       n       -       0       tlsproxy'
    - ignore_if_missing: {{ opts.test | to_bool }}
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix

{#- postmap and postalias read main.cf, which a fresh install lacks; every map is
    compiled before main.cf points to it, so give them a placeholder first. #}
postfix_relay-config-file-managed-main_cf-placeholder:
  file.managed:
    - name: {{ paths.main_cf }}
    - replace: False
    - contents: '# postfix_relay: Salt is writing this file'
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix

{%- if postfix_relay.enabled and postfix_relay.relay.tls_ca_file %}

{#- postfix_relay:tls_ca_file may come from another state of the same run, so it is
    checked here, on the minion, before main.cf names it (test=True: "would run"). #}
postfix_relay-config-cmd-run-check-tls_ca_file:
  cmd.run:
    - name: >-
        echo "postfix_relay:tls_ca_file {{ postfix_relay.relay.tls_ca_file }} is not a readable file on this minion:
        deploy the private CA bundle first (a state ordered before postfix_relay), then apply again" >&2; exit 1
    - unless: test -r {{ postfix_relay.relay.tls_ca_file }}
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf
{%- endif %}

{#- Validated by Postfix before it replaces the working file. #}
postfix_relay-config-file-managed-main_cf:
  file.managed:
    - name: {{ paths.main_cf }}
    - source: salt://{{ tplroot }}/files/default/main.cf.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - check_cmd: {{ paths.check_main_cf }}
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
      - file: postfix_relay-config-file-managed-check_main_cf
      - file: postfix_relay-config-file-replace-master_cf-tlsproxy
      {#- Maps are built before main.cf names them (first enabling, routes added). #}
      - cmd: postfix_relay-config-cmd-run-postalias
{%- if postfix_relay.enabled %}
      - file: postfix_relay-config-file-managed-sasl_passwd_db
{%- endif %}
{%- if postfix_relay.routes %}
      - cmd: postfix_relay-config-cmd-run-postmap-sender_relay
{%- endif %}

postfix_relay-config-file-managed-restart_marker:
  file.managed:
    - name: {{ paths.restart_marker }}
    - source: salt://{{ tplroot }}/files/default/restart.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: postfix_relay-config-file-managed-main_cf

{%- if postfix_relay.enabled %}

{#- Credentials: rendered inside the template, diff hidden, root-only. #}
postfix_relay-config-file-managed-sasl_passwd:
  file.managed:
    - name: {{ paths.sasl_passwd }}
    - source: salt://{{ tplroot }}/files/default/sasl_passwd.jinja
    - template: jinja
    - context:
        lines: {{ postfix_relay.sasl_passwd | json }}
    - user: root
    - group: root
    - mode: '0600'
    - show_changes: False
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix

{#- Rebuilt when missing or older than its source, not only on change. #}
postfix_relay-config-cmd-run-postmap-sasl_passwd:
  cmd.run:
    - name: postmap {{ postfix_relay.db_type }}:{{ paths.sasl_passwd }}
    - umask: '077'
    - unless:
      - fun: postfix_relay.map_is_current
        source: {{ paths.sasl_passwd }}
        db_type: {{ postfix_relay.db_type }}
    - require:
      - file: postfix_relay-config-file-managed-sasl_passwd
      - file: postfix_relay-config-file-managed-main_cf-placeholder

postfix_relay-config-file-managed-sasl_passwd_db:
  file.managed:
    - name: {{ paths.sasl_passwd_db }}
    - replace: False
    - user: root
    - group: root
    - mode: '0600'
    - require:
      - cmd: postfix_relay-config-cmd-run-postmap-sasl_passwd
{%- else %}
{#- Relaying disabled: no credentials on the minion. #}
{%-   for name in ('sasl_passwd', 'sasl_passwd_db') %}

postfix_relay-config-file-absent-{{ name }}:
  file.absent:
    - name: {{ paths[name] }}
    - require:
      - file: postfix_relay-config-file-managed-main_cf
{%-   endfor %}
{%- endif %}

{#- enabled or disabled, as last applied: switching back to enabled releases held mail. #}
postfix_relay-config-file-managed-mode:
  file.managed:
    - name: {{ paths.mode_marker }}
    - contents: {{ 'enabled' if postfix_relay.enabled else 'disabled' }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: postfix_relay-config-file-managed-main_cf

{%- if postfix_relay.root_alias %}

{#- postfix_relay:root_alias: mail for root and postmaster leaves through the relay. #}
postfix_relay-config-file-managed-aliases:
  file.managed:
    - name: {{ paths.aliases }}
    - source: salt://{{ tplroot }}/files/default/aliases.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
{%- else %}

{#- Created only when missing (Debian 13 ships none): Postfix needs it for local mail. #}
postfix_relay-config-file-managed-aliases:
  file.managed:
    - name: {{ paths.aliases }}
    - replace: False
    - contents: |
        # See man 5 aliases for format
        postmaster:    root
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
{%- endif %}

postfix_relay-config-cmd-run-postalias:
  cmd.run:
    - name: postalias {{ postfix_relay.db_type }}:{{ paths.aliases }}
    - unless:
      - fun: postfix_relay.map_is_current
        source: {{ paths.aliases }}
        db_type: {{ postfix_relay.db_type }}
    - require:
      - file: postfix_relay-config-file-managed-aliases
      - file: postfix_relay-config-file-managed-main_cf-placeholder

{%- if postfix_relay.routes %}

{#- postfix_relay:routes: routed senders -> their provider; credentials are in sasl_passwd. #}
postfix_relay-config-file-managed-sender_relay:
  file.managed:
    - name: {{ paths.sender_relay }}
    - source: salt://{{ tplroot }}/files/default/sender_relay.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix

postfix_relay-config-cmd-run-postmap-sender_relay:
  cmd.run:
    - name: postmap {{ postfix_relay.db_type }}:{{ paths.sender_relay }}
    - unless:
      - fun: postfix_relay.map_is_current
        source: {{ paths.sender_relay }}
        db_type: {{ postfix_relay.db_type }}
    - require:
      - file: postfix_relay-config-file-managed-sender_relay
      - file: postfix_relay-config-file-managed-main_cf-placeholder
{%- else %}
{%-   for name in ('sender_relay', 'sender_relay_db') %}

postfix_relay-config-file-absent-{{ name }}:
  file.absent:
    - name: {{ paths[name] }}
    - require:
      - file: postfix_relay-config-file-managed-main_cf
{%-   endfor %}
{%- endif %}

{%- if postfix_relay.sender_canonical %}

{#- postfix_relay:from_address: local users' mail leaves with a verified sender. #}
postfix_relay-config-file-managed-sender_canonical:
  file.managed:
    - name: {{ paths.sender_canonical }}
    - source: salt://{{ tplroot }}/files/default/sender_canonical.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf
{%- else %}

postfix_relay-config-file-absent-sender_canonical:
  file.absent:
    - name: {{ paths.sender_canonical }}
    - require:
      - file: postfix_relay-config-file-managed-main_cf
{%- endif %}

{%- if postfix_relay.redirect_all_to %}

{#- postfix_relay:redirect_all_to (staging): envelope recipients replaced, originals in a header. #}
postfix_relay-config-file-managed-redirect_recipients:
  file.managed:
    - name: {{ paths.redirect_recipients }}
    - source: salt://{{ tplroot }}/files/default/redirect_recipients.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf

postfix_relay-config-file-managed-redirect_headers:
  file.managed:
    - name: {{ paths.redirect_headers }}
    - contents: |
        # Managed by Salt (postfix_relay): keep each original recipient in a header.
        /^(.+)$/ PREPEND X-Original-To: $1
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: postfix_relay-package-pkg-installed-postfix
    - require_in:
      - file: postfix_relay-config-file-managed-main_cf
{%- else %}
{%-   for name in ('redirect_recipients', 'redirect_headers') %}

postfix_relay-config-file-absent-{{ name }}:
  file.absent:
    - name: {{ paths[name] }}
    - require:
      - file: postfix_relay-config-file-managed-main_cf
{%-   endfor %}
{%- endif %}
