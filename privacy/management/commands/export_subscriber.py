"""A customer's access request: everything we hold about them, as JSON (docs/operations.md "Privacy requests")."""

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import subscriber_by_external_id
from privacy.export import export_json


class Command(BaseCommand):
    help = "Write everything held about a customer (the app's user id) as JSON, to standard output or --output."

    def add_arguments(self, parser):
        parser.add_argument("user_id", help="The app's user id")
        parser.add_argument("--output", help="Write to this file instead of standard output")

    def handle(self, *args, user_id, output=None, **options):
        subscriber = subscriber_by_external_id(user_id)
        if subscriber is None:
            raise CommandError(f"No subscriber with user id {user_id!r}: we hold nothing under that id.")
        document = export_json(subscriber)
        if output:
            with open(output, "w", encoding="utf-8") as f:
                f.write(document + "\n")
            self.stderr.write(f"Wrote {len(document)} characters to {output}.")
        else:
            self.stdout.write(document)
