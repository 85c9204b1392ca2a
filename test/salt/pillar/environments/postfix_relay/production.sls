# -*- coding: utf-8 -*-
# vim: ft=yaml
# Production: Amazon SES in eu-west-1.
---
postfix_relay:
  provider: ses
  region: eu-west-1
  username: AKIAENVPRODUCTION01
  password: 'ses-env-production-Yh8+secret'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
