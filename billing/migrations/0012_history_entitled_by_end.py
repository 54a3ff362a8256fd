# finance's metrics day (docs/finance.md "Metrics"): the history rows whose access ends in a given day, so that
# a day's stocks are carried from the day before instead of reading every subscription. Built CONCURRENTLY
# on PostgreSQL (no write lock on the history while it builds); plainly elsewhere (the SQLite demo).

import django.db.models.functions.comparison
from django.db import migrations, models

from billing.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('billing', '0011_beat_indexes'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='statuschange',
            index=models.Index(django.db.models.functions.comparison.Greatest('expires_at', 'grace_until'),
                               condition=models.Q(('new_status__in', ['ACTIVE', 'CANCELED', 'ON_GRACE', 'TRIAL'])),
                               name='statuschange_entitled_by_end'),
        ),
    ]
