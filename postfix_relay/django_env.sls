# -*- coding: utf-8 -*-
# vim: ft=sls
# Django's EMAIL_* settings in an env file, from the same pillar as the relay:
# relay mode -> the local Postfix; direct mode -> the provider itself.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}
{%- set env = postfix_relay.django_env %}
{%- if not env %}
{%-   do raise('postfix_relay.django_env: set pillar postfix_relay:django_env:path (see pillar.example)') %}
{%- endif %}

{#- In direct mode the file holds the password: root-only unless pillar names the app's user. #}
postfix_relay-django_env-file-managed-env:
  file.managed:
    - name: {{ env.path }}
    - source: salt://{{ tplroot }}/files/default/django.env.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
    - user: {{ env.user }}
    - group: {{ env.group }}
    - mode: '0600'
    - makedirs: True
    - show_changes: False
