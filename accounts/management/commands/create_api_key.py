"""manage.py create_api_key --name N --scopes check,read,verify,manage: prints the key once."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a service caller. The key is printed once and stored only as a hash."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. 'orders-service'")
        parser.add_argument("--scopes", required=True,
                            help=f"Comma-separated, any of: {', '.join(ApiKey.SCOPES)}")

    def handle(self, *args, name, scopes, **options):
        try:
            key, raw = api_key_create(name=name, scopes=scopes.split(","))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(raw)
        self.stderr.write(f"Created API key '{key.name}' (prefix {key.prefix}, scopes {','.join(key.scopes)}). "
                          "Store it now: it cannot be shown again. Use it as 'Authorization: Api-Key <key>'.")
