"""Suite sendgrid: port 587 (default), STARTTLS, the API key is the only credential."""

from relay_checks import *  # noqa: F403 - the shared relay checks, run with this suite's expectations
