# -*- coding: utf-8 -*-
# vim: ft=yaml
# Suite custom: any SMTP host, port 2525 with STARTTLS.
---
postfix_relay:
  provider: custom
  host: smtp.relay.example.net
  port: 2525
  username: relay-user
  password: 'custom-kitchen-Rt7!pass'
  main_cf:
    smtp_host_lookup: native
