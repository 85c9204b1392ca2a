"""manage.py sendtestmail: send one message with Django's own mail API and say how."""

import json

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Send a test message through Django's configured SMTP backend."

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, help="comma-separated recipients")
        parser.add_argument("--subject", required=True)
        parser.add_argument("--message-id", required=True)
        parser.add_argument("--from", dest="from_email", default=None)

    def handle(self, *args, **options):
        message = EmailMessage(
            subject=options["subject"],
            body="Sent by the postfix_relay fleet test through django.core.mail.\n",
            from_email=options["from_email"] or settings.DEFAULT_FROM_EMAIL,
            to=options["to"].split(","),
            headers={"Message-ID": options["message_id"]},
        )
        sent = message.send(fail_silently=False)
        report = {
            "sent": sent,
            "email_host": settings.EMAIL_HOST,
            "email_port": settings.EMAIL_PORT,
            "use_tls": settings.EMAIL_USE_TLS,
            "use_ssl": settings.EMAIL_USE_SSL,
        }
        self.stdout.write(json.dumps(report))
