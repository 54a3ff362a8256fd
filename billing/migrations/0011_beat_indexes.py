# Indexes for the beat jobs at scale (docs/performance.md "Beat jobs at scale"): each job reads the few rows
# it needs, not the whole table. Built CONCURRENTLY on PostgreSQL (no write lock on tables of millions of
# rows while they build); other databases (the SQLite demo) build them plainly.

import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models

from billing.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('accounts', '0002_finance_scope'),
        ('billing', '0010_drift'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='statuschange',
            index=models.Index(fields=['occurred_at'], name='statuschange_by_occurred'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(django.db.models.functions.comparison.Greatest('expires_at', 'grace_until'),
                               condition=models.Q(('status__in', ['ACTIVE', 'CANCELED', 'ON_GRACE', 'TRIAL'])),
                               name='subscription_entitled_by_end'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(condition=models.Q(('acknowledged_at__isnull', True),
                                                  ('acknowledgement_due_at__isnull', False)),
                               fields=['acknowledgement_due_at', 'id'], name='subscription_ack_pending'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(condition=models.Q(('replaced_by__isnull', True),
                                                  ('status__in', ['ACTIVE', 'CANCELED', 'ON_GRACE']),
                                                  ('subscriber__isnull', False),
                                                  models.Q(('provider', 'manual'), _negated=True)),
                               fields=['subscriber', 'id'], name='subscription_paying_by_user'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='outbox',
            index=models.Index(condition=models.Q(('published_at__isnull', False)), fields=['created_at'],
                               name='outbox_published_by_time'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='transaction',
            index=models.Index(fields=['recorded_at'], name='transaction_by_recorded'),
        ),
    ]
