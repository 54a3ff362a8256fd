# Retention (privacy/retention.py) finds the events processed before its cutoff from an index instead of
# reading the whole table (docs/performance.md "Beat jobs at scale"). Built concurrently on PostgreSQL.

from django.db import migrations, models

from billing.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('webhooks', '0005_retry_horizon'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='webhookevent',
            index=models.Index(condition=models.Q(('status__in', ['ignored', 'processed'])), fields=['processed_at'],
                               name='webhook_event_done_by_time'),
        ),
    ]
