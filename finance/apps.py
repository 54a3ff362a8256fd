from django.apps import AppConfig


class FinanceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "finance"

    def ready(self):
        # The Subscriptions admin's "Export CSV" (billing's admin offers the hook; billing never imports finance).
        from .admin_subscription_exports import install

        install()
