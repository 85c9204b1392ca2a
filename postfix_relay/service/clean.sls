# -*- coding: utf-8 -*-
# vim: ft=sls
# Postfix keeps running, with the local-only main.cf that config.clean wrote.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_clean = tplroot ~ '.config.clean' %}

include:
  - {{ sls_config_clean }}

postfix_relay-service-clean-cmd-run-reload:
  cmd.run:
    - name: postfix reload
    - onlyif: postfix status
    - onchanges:
      - sls: {{ sls_config_clean }}
