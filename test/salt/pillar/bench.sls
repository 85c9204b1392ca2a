# -*- coding: utf-8 -*-
# vim: ft=yaml
# make bench: SendGrid on 587 (the fake provider), the formula's defaults, and
# two routes with their own fake providers: Mailgun on 465 (implicit TLS, the
# cloned smtp transport) and Postmark on 587 (STARTTLS, the main route's mode).
---
postfix_relay:
  provider: sendgrid
  password: 'SG.bench-Lm3v8.sendgrid-test-key-Qe52'
  routes:
    - senders:
        - '@news.example.com'
      provider: mailgun
      username: postmaster@news.example.com
      password: 'mg-bench-route-implicit-key-4d2a'
      port: 465
    - senders:
        - '@billing.example.com'
      provider: postmark
      password: 'pm-bench-route-9f3c1e-token-b7'
  main_cf:
    # Tests only: resolve the providers through /etc/hosts (the fake providers).
    smtp_host_lookup: native
