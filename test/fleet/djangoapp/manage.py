#!/usr/bin/env python3
"""The fleet tests' Django project: settings read EMAIL_* from the environment, as the seed recommends."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relayapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
