# -*- coding: utf-8 -*-
# vim: ft=yaml
# The monitoring fleet's pillar top file.
---
base:
  'G@roles:web':
    - match: compound
    - postfix_relay
