# -*- coding: utf-8 -*-
# vim: ft=yaml
# Suite sendgrid: port 587 (default), STARTTLS, the API key is the only credential.
---
postfix_relay:
  provider: sendgrid
  password: 'SG.kitchen-Kd8vZq2.sendgrid-test-key-Xy81'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
