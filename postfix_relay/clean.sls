# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo postfix_relay: credentials and relay settings go, Postfix stays
# installed and running, listening on loopback only and delivering local mail;
# outbound mail is deferred (kept in the queue), never sent.
---
include:
  - .config.clean
  - .service.clean
