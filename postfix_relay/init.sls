# -*- coding: utf-8 -*-
# vim: ft=sls
# Relay this minion's mail through the provider named in pillar postfix_relay
# (and keep Django's env file when postfix_relay:django_env is set).
---
include:
  - .package
  - .config
  - .service
  - .django_env
  - .monitoring
  - .salt_ssh
