"""Suite custom: any SMTP host, port 2525 with STARTTLS."""

from relay_checks import *  # noqa: F403 - the shared relay checks, run with this suite's expectations
