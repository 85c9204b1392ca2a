# -*- coding: utf-8 -*-
# vim: ft=sls
# Back to local delivery only: no relayhost, no credentials, still loopback-only.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set postfix_relay_clean = True %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- set paths = postfix_relay.paths %}

postfix_relay-config-clean-file-managed-main_cf:
  file.managed:
    - name: {{ paths.main_cf }}
    - source: salt://{{ tplroot }}/files/default/main.cf.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
        postfix_relay_clean: True
    - user: root
    - group: root
    - mode: '0644'
    - onlyif:
      - fun: file.file_exists
        path: {{ paths.main_cf }}

{%- for name in ('sasl_passwd', 'sasl_passwd_db', 'restart_marker', 'check_main_cf') %}

postfix_relay-config-clean-file-absent-{{ name }}:
  file.absent:
    - name: {{ paths[name] }}
    - require:
      - file: postfix_relay-config-clean-file-managed-main_cf
{%- endfor %}
