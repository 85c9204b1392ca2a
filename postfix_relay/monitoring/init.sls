# -*- coding: utf-8 -*-
# vim: ft=sls
# Relay health (pillar postfix_relay:monitoring): postfix_relay-metrics, run by a
# systemd timer, writes the Prometheus textfile and the state file that the Salt
# beacon (_beacons/postfix_relay.py) reads.  Off: timer, files and beacon go.
# Its own SLS: a change here does not reload Postfix.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- from tplroot ~ "/config/files.jinja" import file_states %}
{%- set mon = postfix_relay.monitoring %}
{%- set prefix = 'postfix_relay-monitoring' %}
{%- set units = ['monitoring_service', 'monitoring_timer'] %}
{%- set mfiles = postfix_relay.files | selectattr('sls', 'equalto', 'monitoring') | list %}
{%- set script = mfiles | selectattr('id', 'equalto', 'monitoring_script') | map(attribute='path') | first %}
{%- set config = mfiles | selectattr('id', 'equalto', 'monitoring_config') | map(attribute='path') | first %}
{%- set marker = mfiles | selectattr('id', 'equalto', 'monitoring_beacon_marker') | map(attribute='path') | first %}
{%- set timer_unit = mfiles | selectattr('id', 'equalto', 'monitoring_timer') | map(attribute='path') | first %}
{%- if mon %}

include:
  - {{ tplroot }}.package.install
{{ file_states(postfix_relay, tplroot, prefix, 'postfix_relay-package-pkg-installed-postfix', 'monitoring') }}

{{ prefix }}-cmd-run-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%-   for unit in units %}
      - file: {{ prefix }}-file-managed-{{ unit }}
{%-   endfor %}
{%-   if mon.textfile %}

{#- node_exporter's package creates its textfile directory; without it, this does. #}
{{ prefix }}-file-directory-textfile:
  file.directory:
    - name: {{ mon.textfile.rsplit('/', 1)[0] }}
    - makedirs: True
    - require_in:
      - service: {{ prefix }}-service-running-timer
{%-   endif %}

{{ prefix }}-service-running-timer:
  service.running:
    - name: postfix_relay-metrics.timer
    - enable: True
    - require:
      - cmd: {{ prefix }}-cmd-run-daemon-reload
      - file: {{ prefix }}-file-managed-monitoring_script
      - file: {{ prefix }}-file-managed-monitoring_config
      - file: {{ prefix }}-file-managed-monitoring_service
    - watch:
      - file: {{ prefix }}-file-managed-monitoring_timer

{#- Write now, not at the next tick, after the collector or its config changed. #}
{{ prefix }}-cmd-run-write:
  cmd.run:
    - name: systemctl start postfix_relay-metrics.service
    - require:
      - service: {{ prefix }}-service-running-timer
    - onchanges:
      - file: {{ prefix }}-file-managed-monitoring_script
      - file: {{ prefix }}-file-managed-monitoring_config
      - file: {{ prefix }}-file-managed-monitoring_service
{%-   if mon.beacon %}

{#- `state.apply postfix_relay` does not sync _beacons/ (only a highstate does).
    Only when the minion's copy differs from the fileserver's: saltutil states say
    "would change" under test=True whatever they sync, and a refresh reloads beacons. #}
{%-     set synced = salt['config.get']('extension_modules') ~ '/beacons/postfix_relay.py' %}
{%-     set served = salt['cp.hash_file']('salt://_beacons/postfix_relay.py', saltenv) or {} %}
{{ prefix }}-saltutil-sync_beacons:
  saltutil.sync_beacons:
    - refresh: True
{%-     if served.get('hsum') %}
    - unless: >-
        test "$({{ served.hash_type }}sum {{ synced }} 2>/dev/null | cut -d' ' -f1)"
        = {{ served.hsum }}
{%-     else %}
    {#- Not on the fileserver: nothing to compare with, let the sync say so. #}
    - unless: 'false'
{%-     endif %}

{{ prefix }}-beacon-present:
  beacon.present:
    - name: postfix_relay
    - save: True
    - interval: {{ mon.beacon.interval }}
    - deferred: {{ mon.beacon.deferred }}
    - oldest_age: {{ mon.beacon.oldest_age }}
    - state_file: {{ mon.beacon.state_file }}
    - require:
      - saltutil: {{ prefix }}-saltutil-sync_beacons
      - service: {{ prefix }}-service-running-timer
{%-   endif %}
{%- else %}

{#- Monitoring off (or never on): stop the timer first, then the files go. #}
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
{%-   for f in mfiles %}
      - file: {{ prefix }}-file-absent-{{ f.id }}
{%-   endfor %}
{{ file_states(postfix_relay, tplroot, prefix, None, 'monitoring') }}

{{ prefix }}-cmd-run-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%-   for unit in units %}
      - file: {{ prefix }}-file-absent-{{ unit }}
{%-   endfor %}
{%- endif %}
{%- if not (mon and mon.beacon) %}

{#- The beacon was configured by an earlier run (its marker says so): remove it.
    Only then: beacons.* talk to the salt-minion daemon, which a masterless
    salt-call may not have. #}
{{ prefix }}-beacon-absent:
  beacon.absent:
    - name: postfix_relay
    - save: True
    - onlyif: test -e {{ marker }}
    - require_in:
      - file: {{ prefix }}-file-absent-monitoring_beacon_marker
{%- endif %}
