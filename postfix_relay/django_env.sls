# -*- coding: utf-8 -*-
# vim: ft=sls
# Django's EMAIL_* settings in an env file, from the same pillar as the relay:
# relay mode -> the local Postfix; direct mode -> the provider itself.  While
# relaying is disabled the file is written in relay mode (Django's mail is held
# like any other); a file the pillar no longer names is removed.  Its own SLS:
# a change here does not reload Postfix.

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}

{#- Under salt-ssh: remove the state tarball (it holds the pillar) whatever SLS is applied. #}
include:
  - {{ tplroot }}.salt_ssh
{%- from tplroot ~ "/config/files.jinja" import file_states %}
{{ file_states(postfix_relay, tplroot, 'postfix_relay-django_env', sls='django_env') }}
