# -*- coding: utf-8 -*-
# vim: ft=sls

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_file = tplroot ~ '.config.file' %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}

include:
  - {{ sls_config_file }}

{#- Reloaded when main.cf or a map changed; untouched otherwise. #}
postfix_relay-service-running-postfix:
  service.running:
    - name: {{ postfix_relay.service }}
    - enable: True
    - reload: True
    - require:
      - file: postfix_relay-config-file-managed-main_cf
      - cmd: postfix_relay-config-cmd-run-postalias
{%- if postfix_relay.enabled %}
      - file: postfix_relay-config-file-managed-sasl_passwd_db
{%- endif %}
    - watch:
      - file: postfix_relay-config-file-managed-main_cf
      - file: postfix_relay-config-file-replace-master_cf-tlsproxy
      - cmd: postfix_relay-config-cmd-run-postalias
{%- if postfix_relay.enabled %}
      - cmd: postfix_relay-config-cmd-run-postmap-sasl_passwd
{%- endif %}
{%- if postfix_relay.routes %}
      - cmd: postfix_relay-config-cmd-run-postmap-sender_relay
{%- endif %}
{%- if postfix_relay.sender_canonical %}
      - file: postfix_relay-config-file-managed-sender_canonical
{%- endif %}
{%- if postfix_relay.redirect_all_to %}
      - file: postfix_relay-config-file-managed-redirect_recipients
      - file: postfix_relay-config-file-managed-redirect_headers
{%- endif %}

{#- inet_interfaces and friends are read at start only.  Restart when the running
    master is older than the listener settings in the restart marker: after they
    changed, also when an earlier run changed them and then failed.  A master
    started after the marker (a fresh install) is not restarted again. #}
postfix_relay-service-module-run-restart:
  module.run:
    - service.restart:
      - name: {{ postfix_relay.service }}
    - onlyif:
      - test {{ postfix_relay.paths.master_pid }} -ot {{ postfix_relay.paths.restart_marker }}
    - require:
      - service: postfix_relay-service-running-postfix
      - file: postfix_relay-config-file-managed-restart_marker

{%- if postfix_relay.redirect_all_to %}

{#- Mail queued before the redirect went through cleanup with its real
    recipients: send it through cleanup again, so it is redirected too. #}
postfix_relay-service-cmd-run-requeue:
  cmd.run:
    - name: sleep 1 && postsuper -r ALL
    - require:
      - service: postfix_relay-service-running-postfix
    - require_in:
      - cmd: postfix_relay-service-cmd-run-flush
    - onchanges:
      - file: postfix_relay-config-file-managed-redirect_recipients
{%- endif %}

{%- if not postfix_relay.enabled %}

{#- Relaying disabled: what is already queued waits on hold too, so no flush can send it. #}
postfix_relay-service-cmd-run-hold:
  cmd.run:
    - name: postsuper -h ALL
    - require:
      - service: postfix_relay-service-running-postfix
    - require_in:
      - cmd: postfix_relay-service-cmd-run-flush
    - onchanges:
      - file: postfix_relay-config-file-managed-mode
{%- endif %}

{%- if postfix_relay.enabled %}

{#- Relaying enabled again: release what waited on hold while it was disabled. #}
postfix_relay-service-cmd-run-release-hold:
  cmd.run:
    - name: postsuper -H ALL
    - require:
      - service: postfix_relay-service-running-postfix
    - require_in:
      - cmd: postfix_relay-service-cmd-run-flush
    - onchanges:
      - file: postfix_relay-config-file-managed-mode
{%- endif %}

{#- After new credentials or relay settings, send what waited in the deferred
    queue now, instead of at the next retry. #}
postfix_relay-service-cmd-run-flush:
  cmd.run:
    - name: postqueue -f
    - require:
      - service: postfix_relay-service-running-postfix
      - module: postfix_relay-service-module-run-restart
    - onchanges:
      - file: postfix_relay-config-file-managed-main_cf
{%- if postfix_relay.enabled %}
      - cmd: postfix_relay-config-cmd-run-postmap-sasl_passwd
{%- endif %}
{%- if postfix_relay.routes %}
      - cmd: postfix_relay-config-cmd-run-postmap-sender_relay
{%- endif %}
