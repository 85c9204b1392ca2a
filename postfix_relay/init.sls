# -*- coding: utf-8 -*-
# vim: ft=sls
# Relay this minion's mail through the provider named in pillar postfix_relay.
---
include:
  - .package
  - .config
  - .service
