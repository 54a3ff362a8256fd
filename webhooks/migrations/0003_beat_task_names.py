"""The Apple notification recovery's beat job moved with its task to webhooks.tasks: the row beat
already holds (config/beat.py keeps existing rows as staff left them) follows the task's new name."""

from django.db import migrations

OLD = "billing.providers.apple.tasks.recover_failed_notifications"
NEW = "webhooks.tasks.recover_apple_notifications"


def rename(apps, schema_editor, old=OLD, new=NEW):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=old).update(task=new)


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_received_at_index"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
