"""The project's settings with migrations off: builds the bench schema from the models in seconds
(as the test suite does), instead of replaying every app's migrations."""

from config.no_migrations import NoMigrations
from config.settings import *  # noqa: F403

MIGRATION_MODULES = NoMigrations()
