"""The sweeper: which events it takes as lost (the queue has the fresh ones)."""

import pytest

from webhooks import sweep
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_sweeper_leaves_fresh_events_to_the_queue(settings):
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 300
    WebhookEvent.objects.create(provider="hooktest", dedupe_key="evt_fresh", body=b"{}")
    assert sweep.events_stuck().count() == 0
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 0
    assert sweep.events_stuck().count() == 1
