# -*- coding: utf-8 -*-
# vim: ft=yaml
# The fleet's pillar top file: exactly the one README and pillar.example document.
---
base:
  'G@roles:web or G@roles:worker':
    - match: compound
    - postfix_relay
