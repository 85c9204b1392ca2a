# -*- coding: utf-8 -*-
# vim: ft=yaml
# Suite mailgun-eu: EU region, a per-domain SMTP login that contains '@'.
---
postfix_relay:
  provider: mailgun
  region: eu
  username: postmaster@mg.example.com
  password: 'mg-kitchen-Q4hT9-secret-77af'
  main_cf:
    smtp_host_lookup: native
