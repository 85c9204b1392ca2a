"""Minimal Django settings: only what sending mail needs, EMAIL_* from the environment.

The env file comes from the formula's postfix_relay.django_env state (relay
mode: the local Postfix; direct mode: the provider), loaded by systemd's
EnvironmentFile= as a web or worker service would.
"""

import os

SECRET_KEY = "postfix-relay-fleet-test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["relayapp"]
DATABASES = {}
USE_TZ = True

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "False") == "True"
EMAIL_USE_SSL = os.environ.get("EMAIL_USE_SSL", "False") == "True"
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "noreply@example.com")
