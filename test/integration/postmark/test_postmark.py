"""Suite postmark: the server API token alone (it is the username and the password)."""

from relay_checks import *  # noqa: F403 - the shared relay checks, run with this suite's expectations
