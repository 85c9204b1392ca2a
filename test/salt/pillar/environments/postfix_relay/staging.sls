# -*- coding: utf-8 -*-
# vim: ft=yaml
# Staging: Mailgun sandbox credentials, and nothing reaches a real recipient.
---
postfix_relay:
  provider: mailgun
  username: postmaster@sandbox.mg.example.com
  password: 'mg-env-staging-3f1e-sandbox'
  redirect_all_to: qa@example.com
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
