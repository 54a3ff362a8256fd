"""The project's settings with migrations off: builds the bench schema from the models in seconds
(as the test suite does), instead of replaying every app's migrations."""

from config.settings import *  # noqa: F403


class _NoMigrations(dict):
    def __contains__(self, item):
        return True

    def __getitem__(self, item):
        return None


MIGRATION_MODULES = _NoMigrations()
