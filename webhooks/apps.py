from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from . import attention
        from .double_payment_attention import double_payment_rows  # models are loaded only now

        if double_payment_rows not in attention.SOURCES:
            attention.SOURCES.append(double_payment_rows)
