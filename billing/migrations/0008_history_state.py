"""Each history row carries the state that came into force (issue 13: "as of" a past moment, metrics
rebuilt from the history). Existing rows: each subscription's newest applied row gets the
subscription's current state (the best we know: nothing was recorded after it); older rows stay
empty (state_known False: only their status is known; docs/finance.md)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


STATE_FIELDS = ("subscriber_id", "product_id", "store_product_id", "environment", "amount_minor", "currency",
                "period_unit", "period_value", "auto_renew", "expires_at", "grace_until")


def fill_newest_rows(apps, schema_editor):
    Subscription = apps.get_model("billing", "Subscription")
    StatusChange = apps.get_model("billing", "StatusChange")
    newest = (StatusChange.objects.filter(subscription=models.OuterRef("pk"), ignored=False)
              .order_by("-id").values("id")[:1])
    pending = []
    for sub in (Subscription.objects.annotate(newest_id=models.Subquery(newest))
                .filter(newest_id__isnull=False).iterator(chunk_size=2000)):
        row = StatusChange(id=sub.newest_id, state_known=True, **{name: getattr(sub, name) for name in STATE_FIELDS})
        pending.append(row)
        if len(pending) >= 1000:
            StatusChange.objects.bulk_update(pending, ["state_known", *STATE_FIELDS])
            pending = []
    if pending:
        StatusChange.objects.bulk_update(pending, ["state_known", *STATE_FIELDS])


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_finance_scope'),
        ("billing", "0007_double_payment"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='statuschange',
            name='amount_minor',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='auto_renew',
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='currency',
            field=models.CharField(blank=True, max_length=3),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='environment',
            field=models.CharField(blank=True, choices=[('production', 'Production'), ('sandbox', 'Sandbox')], max_length=16),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='expires_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='grace_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='kind',
            field=models.CharField(choices=[('status', 'status change or note'), ('state', 'state only (price, product, period, expiry; status unchanged)')], default='status', max_length=8),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='period_unit',
            field=models.CharField(blank=True, choices=[('day', 'day'), ('week', 'week'), ('month', 'month'), ('year', 'year')], max_length=8),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='period_value',
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='product',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='billing.product'),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='state_known',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='store_product_id',
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name='statuschange',
            name='subscriber',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='accounts.subscriber'),
        ),
        migrations.AddIndex(
            model_name='statuschange',
            index=models.Index(fields=['subscription', '-id'], name='statuschange_by_sub_newest'),
        ),
        migrations.RunPython(fill_newest_rows, migrations.RunPython.noop, elidable=True),
    ]
