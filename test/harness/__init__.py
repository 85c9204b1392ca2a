"""Test harness for postfix_relay: formula loader, Salt runners, containers, fake provider."""
