# -*- coding: utf-8 -*-
# vim: ft=yaml
# Operations suite: Postmark for everything, SendGrid for marketing senders,
# local users rewritten to a verified sender, root's mail forwarded.
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
  main_cf:
    # Tests only: resolve the providers through /etc/hosts (the fake providers).
    smtp_host_lookup: native
