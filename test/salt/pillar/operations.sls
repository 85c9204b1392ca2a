# -*- coding: utf-8 -*-
# vim: ft=yaml
# Operations suite: Postmark for everything, SendGrid for marketing senders,
# Mailgun over implicit TLS for @mg.example.com, local users rewritten to a
# verified sender, root's mail forwarded.
---
postfix_relay:
  provider: postmark
  password: 'pm-ops-5b7e21c9-token-aa04'
  from_address: noreply@example.com
  sender_map:
    www-data: app@example.com
  root_alias:
    - ops@example.com
  routes:
    - senders:
        - '@marketing.example.com'
      provider: sendgrid
      password: 'SG.ops-route-Wk2.sendgrid-marketing-key-19'
    # Implicit TLS (465) beside the STARTTLS main route: its own smtp transport.
    - senders:
        - '@mg.example.com'
      provider: mailgun
      username: postmaster@mg.example.com
      password: 'mg-ops-route-implicit-key-7c1e'
      port: 465
  main_cf:
    # Tests only: resolve the providers through /etc/hosts (the fake providers).
    smtp_host_lookup: native
