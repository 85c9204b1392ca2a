# -*- coding: utf-8 -*-
# vim: ft=yaml
# A staging box: Mailgun sandbox credentials, and nothing may reach a real recipient.
---
postfix_relay:
  provider: mailgun
  username: postmaster@sandbox.mg.example.com
  password: 'mg-staging-0c4d9e-sandbox-key'
  redirect_all_to: qa@example.com
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
