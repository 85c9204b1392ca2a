# -*- coding: utf-8 -*-
# vim: ft=yaml
# The faults and security suite: a distinctive password, searched for everywhere.
---
postfix_relay:
  provider: sendgrid
  password: 'SG.faults-Zx81q.Distinctive-Secret-4f2b'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
