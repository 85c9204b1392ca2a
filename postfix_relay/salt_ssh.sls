# -*- coding: utf-8 -*-
# vim: ft=sls
{#-
    Under salt-ssh only.  salt-ssh ships the whole pillar of the target (the
    password included) in <thin_dir>/salt_state.tgz and leaves that file on the
    target after the run.  It is unpacked before any state runs, so the last
    state removes it.  It is salt-ssh's transport file, not part of the relay:
    reported as no change, so a converged run stays at 0 changes.
#}
{%- if salt.wfuncs is defined and opts.get('thin_dir') %}

postfix_relay-salt_ssh-cmd-run-remove-state-tarball:
  cmd.run:
    - name: >-
        rm -f '{{ opts.thin_dir }}/salt_state.tgz' &&
        echo && echo 'changed=no comment="removed the salt-ssh state tarball (it holds the pillar)"'
    # A dry run must not leave the pillar on the target either: test=True runs test_name.
    - stateful:
      - test_name: >-
          rm -f '{{ opts.thin_dir }}/salt_state.tgz' &&
          echo && echo 'changed=no comment="removed the salt-ssh state tarball (it holds the pillar)"'
    - order: last
{%- endif %}
