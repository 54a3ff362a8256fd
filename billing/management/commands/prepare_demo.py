"""`make run`'s set-up in one process: the database, then the demo data.

A new SQLite database is built from the models, as the test suite builds its database, and every
migration is then recorded as applied: replaying the migrations (dj-stripe's alone are hundreds) took
most of a first start on SQLite. An existing database, or any other database, is migrated as usual."""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection
from django.test.utils import override_settings

from config.no_migrations import NoMigrations


def is_new_sqlite_database() -> bool:
    return connection.vendor == "sqlite" and not connection.introspection.table_names()


class Command(BaseCommand):
    help = "Create or migrate the database, then load the demo data (make run)."

    def handle(self, *args, **options):
        quiet = {"verbosity": 0, "interactive": False}
        if is_new_sqlite_database():
            self.stdout.write(f"New demo database {settings.DATABASES['default']['NAME']}: built from the models")
            with override_settings(MIGRATION_MODULES=NoMigrations()):
                call_command("migrate", run_syncdb=True, **quiet)
            call_command("migrate", fake=True, **quiet)
        else:
            call_command("migrate", **quiet)
        call_command("seed_demo", stdout=self.stdout)
