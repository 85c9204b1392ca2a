"""Suite mailgun-eu: EU region, a per-domain SMTP login that contains '@'."""

from relay_checks import *  # noqa: F403 - the shared relay checks, run with this suite's expectations
