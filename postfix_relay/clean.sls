# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo postfix_relay: credentials and relay settings go, Postfix stays
# installed and running, listening on loopback only and delivering local mail;
# outbound mail is refused with a temporary 450 at SMTP submission or kept in
# the deferred queue (local programs): never sent, never bounced.
---
include:
  - .config.clean
  - .service.clean
  - .monitoring.clean
