"""Privacy requests and retention: export and erase a subscriber, prune raw data past its retention
(docs/operations.md). Reads and writes every app's rows; nothing imports it."""
from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "privacy"

    def ready(self):
        from .admin import install_subscriber_action

        install_subscriber_action()
