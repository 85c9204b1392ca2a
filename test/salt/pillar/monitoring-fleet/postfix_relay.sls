# -*- coding: utf-8 -*-
# vim: ft=yaml
# The monitoring fleet: the beacon checks every 5 seconds, the collector writes every 5.
---
postfix_relay:
  provider: sendgrid
  password: 'SG.beacon-Lk42v.sendgrid-test-key-Pz81'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
  monitoring:
    interval: 5
    beacon:
      interval: 5
      deferred: 1
