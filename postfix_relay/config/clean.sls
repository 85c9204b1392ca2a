# -*- coding: utf-8 -*-
# vim: ft=sls
# Back to local delivery only: no relayhost, no credentials, still loopback-only
# (postfix_relay.settings in clean mode: map.jinja picks it for every *.clean SLS).

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- from tplroot ~ "/config/files.jinja" import file_states, master_cf_states %}

{#- Under salt-ssh: remove the state tarball (it holds the pillar) whatever SLS is applied. #}
include:
  - {{ tplroot }}.salt_ssh
{{ file_states(postfix_relay, tplroot, 'postfix_relay-config-clean') }}
{{ master_cf_states(postfix_relay, 'postfix_relay-config-clean') }}

{#- tlsproxy was enabled for TLS connection reuse only: comment it out again. #}
postfix_relay-config-clean-file-replace-master_cf-tlsproxy:
  file.replace:
    - name: {{ postfix_relay.paths.master_cf }}
    - pattern: '^tlsproxy[ \t]+unix[ \t]+(.*)$'
    - repl: '#tlsproxy  unix  \1'
    - ignore_if_missing: True
    - require:
      - file: postfix_relay-config-clean-file-managed-main_cf
