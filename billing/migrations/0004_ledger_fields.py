from django.db import migrations, models


class Migration(migrations.Migration):
    """The ledger's details (issue 13): filled by the write path from each store's data; the data
    migration 0005 fills what it can for existing rows from their stored payloads."""

    dependencies = [("billing", "0003_product_offered")]

    operations = [
        migrations.RenameField("transaction", "created_at", "recorded_at"),
        migrations.AlterModelOptions(
            name='transaction',
            options={'ordering': ['-occurred_at'], 'permissions': [('export_finance', 'Can export finance data (CSV / JSON lines)')]},
        ),
        migrations.AddField(
            model_name='transaction',
            name='charge_id',
            field=models.CharField(blank=True, help_text='Stripe charge', max_length=255),
        ),
        migrations.AddField(
            model_name='transaction',
            name='country',
            field=models.CharField(blank=True, help_text="ISO 3166 alpha-2, or Apple's storefront", max_length=3),
        ),
        migrations.AddField(
            model_name='transaction',
            name='fee_minor',
            field=models.BigIntegerField(blank=True, help_text='Stripe: from the balance transaction', null=True),
        ),
        migrations.AddField(
            model_name='transaction',
            name='line_item_id',
            field=models.CharField(blank=True, help_text='Apple webOrderLineItemId', max_length=255),
        ),
        migrations.AddField(
            model_name='transaction',
            name='net_minor',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='transaction',
            name='offer_kind',
            field=models.CharField(blank=True, choices=[('', 'none'), ('introductory', 'introductory'), ('free_trial', 'free trial'), ('promotional', 'promotional'), ('offer_code', 'offer code')], max_length=16),
        ),
        migrations.AddField(
            model_name='transaction',
            name='order_id',
            field=models.CharField(blank=True, help_text='Google orderId, Apple transactionId, Stripe invoice, Xsolla transaction', max_length=255),
        ),
        migrations.AddField(
            model_name='transaction',
            name='period_end',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='transaction',
            name='period_start',
            field=models.DateTimeField(blank=True, help_text='The service period it pays for', null=True),
        ),
        migrations.AddField(
            model_name='transaction',
            name='refers_to',
            field=models.CharField(blank=True, help_text='Refunds, chargebacks, reversals: the store id of the payment', max_length=255),
        ),
        migrations.AddField(
            model_name='transaction',
            name='settlement_currency',
            field=models.CharField(blank=True, help_text='The currency of fee and net', max_length=3),
        ),
        migrations.AddField(
            model_name='transaction',
            name='store_product_id',
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AlterField(
            model_name='transaction',
            name='kind',
            field=models.CharField(choices=[('purchase', 'purchase'), ('renewal', 'renewal'), ('refund', 'refund'), ('chargeback', 'chargeback'), ('refund_reversed', 'refund reversed')], max_length=16),
        ),
        migrations.AlterField(
            model_name='transaction',
            name='occurred_at',
            field=models.DateTimeField(help_text='When it happened at the store'),
        ),
        migrations.AlterField(
            model_name='transaction',
            name='recorded_at',
            field=models.DateTimeField(auto_now_add=True, help_text='When we recorded it (a late refund shows)'),
        ),
        migrations.AddIndex(
            model_name='transaction',
            index=models.Index(condition=models.Q(('order_id', ''), _negated=True), fields=['order_id'], name='transaction_by_order_id'),
        ),
    ]
