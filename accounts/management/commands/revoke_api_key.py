"""manage.py revoke_api_key --prefix P"""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from accounts.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the 8 characters after 'bk_')."

    def add_arguments(self, parser):
        parser.add_argument("--prefix", required=True)

    def handle(self, *args, prefix, **options):
        try:
            key = api_key_revoke(prefix=prefix.strip())
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with prefix {prefix!r}.") from None
        self.stdout.write(f"Revoked API key '{key.name}' ({key.prefix}) at {key.revoked_at.isoformat()}. "
                          "Running servers stop accepting it within API_KEY_CACHE_SECONDS.")
