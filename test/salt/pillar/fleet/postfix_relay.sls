# -*- coding: utf-8 -*-
# vim: ft=yaml
# The fleet's pillar: SendGrid, plus Django's env file for the app on every minion.
---
postfix_relay:
  provider: sendgrid
  password: 'SG.fleet-T7hq2.sendgrid-test-key-Mw39'
  django_env:
    path: /etc/relayapp/email.env
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
