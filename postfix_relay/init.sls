# -*- coding: utf-8 -*-
# vim: ft=sls
# Relay this minion's mail through the provider named in pillar postfix_relay
# (and write Django's env file when postfix_relay:django_env is set).

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}

include:
  - .package
  - .config
  - .service
{%- if postfix_relay.django_env %}
  - .django_env
{%- endif %}
