# -*- coding: utf-8 -*-
# vim: ft=sls
# Django's EMAIL_* settings in an env file, from the same pillar as the relay:
# relay mode -> the local Postfix; direct mode -> the provider itself.
# While relaying is disabled the file is written in relay mode (Django's mail is
# held like any other); a file the pillar no longer names is removed.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- set env = postfix_relay.django_env %}

{%- if env %}

{#- In direct mode the template reads the password from pillar: root-only unless pillar names the app's user. #}
postfix_relay-django_env-file-managed-env:
  file.managed:
    - name: {{ env.path }}
    - source: salt://{{ tplroot }}/files/default/django.env.jinja
    - template: jinja
    - context:
        django_env: {{ env | json }}
    - user: {{ env.user }}
    - group: {{ env.group }}
    - mode: '0600'
    - makedirs: True
    - show_changes: False

{#- Where the file is, so that disabling, clean or a new path find it without the pillar. #}
postfix_relay-django_env-file-managed-record:
  file.managed:
    - name: {{ postfix_relay.paths.django_env_record }}
    - contents: {{ {'path': env.path, 'user': env.user, 'group': env.group} | json | yaml_dquote }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: postfix_relay-django_env-file-managed-env
{%- else %}

postfix_relay-django_env-file-absent-record:
  file.absent:
    - name: {{ postfix_relay.paths.django_env_record }}
{%- endif %}
{%- for path in postfix_relay.django_env_absent %}

postfix_relay-django_env-file-absent-{{ path }}:
  file.absent:
    - name: {{ path }}
{%-   if env %}
    - require_in:
      - file: postfix_relay-django_env-file-managed-record
{%-   else %}
    - require_in:
      - file: postfix_relay-django_env-file-absent-record
{%-   endif %}
{%- endfor %}
