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

{#- tlsproxy was enabled for TLS connection reuse only: comment it out again. #}
postfix_relay-config-clean-file-replace-master_cf-tlsproxy:
  file.replace:
    - name: {{ paths.master_cf }}
    - pattern: '^tlsproxy[ \t]+unix[ \t]+(.*)$'
    - repl: '#tlsproxy  unix  \1'
    - ignore_if_missing: True
    - require:
      - file: postfix_relay-config-clean-file-managed-main_cf

{%- for name in postfix_relay.clean_absent %}

postfix_relay-config-clean-file-absent-{{ name }}:
  file.absent:
    - name: {{ paths[name] }}
    - require:
      - file: postfix_relay-config-clean-file-managed-main_cf
{%- endfor %}
{%- for path in postfix_relay.django_env_absent %}

{#- Django's env file (it may hold a direct-mode password). #}
postfix_relay-config-clean-file-absent-django_env-{{ path }}:
  file.absent:
    - name: {{ path }}
{%- endfor %}
