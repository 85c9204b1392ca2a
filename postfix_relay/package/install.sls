# -*- coding: utf-8 -*-
# vim: ft=sls

{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import postfix_relay with context %}

{#- Under salt-ssh: remove the state tarball (it holds the pillar) whatever SLS is applied. #}
include:
  - {{ tplroot }}.salt_ssh

{%- if postfix_relay.debconf %}
{#- Preseed only before the first install: answers make it non-interactive
    and keep Postfix stopped until our main.cf is in place. #}
postfix_relay-package-cmd-run-debconf:
  cmd.run:
    - name: debconf-set-selections
    - stdin: |
{%-   for line in postfix_relay.debconf %}
        {{ line | join(' ') }}
{%-   endfor %}
    - unless:
      - fun: pkg.version
        args:
          - postfix
    - require_in:
      - pkg: postfix_relay-package-pkg-installed-postfix
{%- endif %}

postfix_relay-package-pkg-installed-postfix:
  pkg.installed:
    - pkgs: {{ postfix_relay.packages | json }}
