from django.apps import AppConfig


class FinanceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "finance"

    def ready(self):
        # The Transactions and Subscriptions lists' "Export CSV" (billing's admin offers the hook; billing
        # never imports finance).
        from . import admin_exports, admin_subscription_exports

        admin_exports.install()
        admin_subscription_exports.install()
