# -*- coding: utf-8 -*-
# vim: ft=yaml
# The monitoring suite: textfile metrics every 5 seconds (the secret is searched for).
---
postfix_relay:
  provider: sendgrid
  password: 'SG.monitoring-Qw71.Distinctive-Secret-9c3e'
  main_cf:
    # Tests only: resolve the provider through /etc/hosts (the fake provider).
    smtp_host_lookup: native
  monitoring:
    textfile: /var/lib/prometheus/node-exporter/postfix_relay.prom
    interval: 5
