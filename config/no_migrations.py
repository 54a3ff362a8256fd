"""MIGRATION_MODULES that says "no migrations" for every app: the schema is then built from the models
(`migrate --run-syncdb`), as pytest-django's --nomigrations does. Used by `make run`'s first start
(billing/management/commands/prepare_demo.py) and the bench databases (bench/settings_syncdb.py)."""


class NoMigrations(dict):
    def __contains__(self, app_label):
        return True

    def __getitem__(self, app_label):
        return None
