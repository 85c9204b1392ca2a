"""Suite ses-implicit: eu-west-1, implicit TLS on 465, a password with spaces, quotes and punctuation."""

from relay_checks import *  # noqa: F403 - the shared relay checks, run with this suite's expectations
