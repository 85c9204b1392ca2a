# -*- coding: utf-8 -*-
# vim: ft=yaml
# Suite postmark: the server API token alone (it is the username and the password).
---
postfix_relay:
  provider: postmark
  password: 'pm-kitchen-8c1e4f2a-token-5d9b'
  main_cf:
    smtp_host_lookup: native
