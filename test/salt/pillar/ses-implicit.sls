# -*- coding: utf-8 -*-
# vim: ft=yaml
# Suite ses-implicit: eu-west-1, implicit TLS on 465, a password with spaces,
# quotes and punctuation (including ':' and '#', which sasl_passwd must keep).
---
postfix_relay:
  provider: ses
  region: eu-west-1
  port: 465
  username: AKIAKITCHENTEST01
  password: 'S3s "kitchen" pass with spaces & punct!#%:;=+/'
  main_cf:
    smtp_host_lookup: native
