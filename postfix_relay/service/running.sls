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
      - file: postfix_relay-config-file-managed-sasl_passwd_db
      - cmd: postfix_relay-config-cmd-run-postalias
    - watch:
      - file: postfix_relay-config-file-managed-main_cf
      - file: postfix_relay-config-file-replace-master_cf-tlsproxy
      - cmd: postfix_relay-config-cmd-run-postmap-sasl_passwd
      - cmd: postfix_relay-config-cmd-run-postalias
{%- if postfix_relay.routes %}
      - cmd: postfix_relay-config-cmd-run-postmap-sender_relay
{%- endif %}
{%- if postfix_relay.sender_canonical %}
      - file: postfix_relay-config-file-managed-sender_canonical
{%- endif %}

{#- inet_interfaces and friends are read at start only: restart on change. #}
postfix_relay-service-running-postfix-restart:
  service.running:
    - name: {{ postfix_relay.service }}
    - require:
      - service: postfix_relay-service-running-postfix
    - watch:
      - file: postfix_relay-config-file-managed-restart_marker

{#- After new credentials or relay settings, send what waited in the deferred
    queue now, instead of at the next retry. #}
postfix_relay-service-cmd-run-flush:
  cmd.run:
    - name: postqueue -f
    - require:
      - service: postfix_relay-service-running-postfix
      - service: postfix_relay-service-running-postfix-restart
    - onchanges:
      - file: postfix_relay-config-file-managed-main_cf
      - cmd: postfix_relay-config-cmd-run-postmap-sasl_passwd
{%- if postfix_relay.routes %}
      - cmd: postfix_relay-config-cmd-run-postmap-sender_relay
{%- endif %}
