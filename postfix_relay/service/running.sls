# -*- coding: utf-8 -*-
# vim: ft=sls

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_file = tplroot ~ '.config.file' %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}

include:
  - {{ sls_config_file }}

{#- Reloaded when anything in the config SLS changed; untouched otherwise. #}
postfix_relay-service-running-postfix:
  service.running:
    - name: {{ postfix_relay.service }}
    - enable: True
    - reload: True
    - watch:
      - sls: {{ sls_config_file }}

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

{#- Queued mail: held, redirected again, released, in the order postfix_relay.settings gives. #}
{%- for action in postfix_relay.queue_actions %}

postfix_relay-service-cmd-run-{{ action.id }}:
  cmd.run:
    - name: {{ action.command }}
{%-   if action.onlyif %}
    - onlyif: {{ action.onlyif }}
{%-   endif %}
{%-   if action.prereq %}
    - prereq:
      - file: postfix_relay-config-file-managed-{{ action.prereq }}
{%-   else %}
    - require:
      - module: postfix_relay-service-module-run-restart
{%-     if action.after %}
      - cmd: postfix_relay-service-cmd-run-{{ action.after }}
{%-     endif %}
    - require_in:
      - cmd: postfix_relay-service-cmd-run-flush
{%-     if action.onchanges %}
    - onchanges:
      - file: postfix_relay-config-file-managed-{{ action.onchanges }}
{%-     endif %}
{%-   endif %}
{%- endfor %}

{#- After new credentials or relay settings, send what waited in the deferred
    queue now, instead of at the next retry (while relaying is disabled the
    transport can only defer: a flush sends nothing). #}
postfix_relay-service-cmd-run-flush:
  cmd.run:
    - name: postqueue -f
    - require:
      - module: postfix_relay-service-module-run-restart
    - onchanges:
      - sls: {{ sls_config_file }}
