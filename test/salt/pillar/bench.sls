# -*- coding: utf-8 -*-
# vim: ft=yaml
# make bench: SendGrid on 587 (the fake provider), the formula's defaults.
---
postfix_relay:
  provider: sendgrid
  password: 'SG.bench-Lm3v8.sendgrid-test-key-Qe52'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
