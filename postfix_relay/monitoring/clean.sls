# -*- coding: utf-8 -*-
# vim: ft=sls
# Monitoring goes with the relay: the timer stops before config.clean removes the
# collector, its units and state (they are in the clean `files` list), the
# textfile goes, and the beacon if an earlier run configured it.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_clean = tplroot ~ '.config.clean' %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- set prefix = 'postfix_relay-monitoring-clean' %}
{%- set mfiles = postfix_relay.files | selectattr('sls', 'equalto', 'monitoring') | list %}
{%- set script = mfiles | selectattr('id', 'equalto', 'monitoring_script') | map(attribute='path') | first %}
{%- set config = mfiles | selectattr('id', 'equalto', 'monitoring_config') | map(attribute='path') | first %}
{%- set marker = mfiles | selectattr('id', 'equalto', 'monitoring_beacon_marker') | map(attribute='path') | first %}
{%- set timer_unit = mfiles | selectattr('id', 'equalto', 'monitoring_timer') | map(attribute='path') | first %}

include:
  - {{ sls_config_clean }}

{#- Only where the formula installed the timer: elsewhere service.dead says "would
    have been stopped" (result None) under test=True on a converged minion. #}
{{ prefix }}-service-dead-timer:
  service.dead:
    - name: postfix_relay-metrics.timer
    - enable: False
    - onlyif: test -e {{ timer_unit }}

{#- After the timer (a tick could write it again); a run in progress is stopped too. #}
{{ prefix }}-cmd-run-remove-textfile:
  cmd.run:
    - name: >-
        systemctl stop postfix_relay-metrics.service;
        /usr/bin/python3 -IS {{ script }} --config={{ config }} --remove-textfile
    - onlyif: test -e {{ script }} -a -e {{ config }}
    - require:
      - service: {{ prefix }}-service-dead-timer
    - require_in:
{%- for f in mfiles %}
      - file: postfix_relay-config-clean-file-absent-{{ f.id }}
{%- endfor %}

{{ prefix }}-beacon-absent:
  beacon.absent:
    - name: postfix_relay
    - save: True
    - onlyif: test -e {{ marker }}
    - require_in:
      - file: postfix_relay-config-clean-file-absent-monitoring_beacon_marker
