# -*- coding: utf-8 -*-
# vim: ft=yaml
# One pillar tree, one formula, settings picked by the `environment` grain
# (as README's "Environments" section recommends).
---
base:
  'G@roles:web and G@environment:staging':
    - match: compound
    - postfix_relay.staging
  'G@roles:web and G@environment:production':
    - match: compound
    - postfix_relay.production
