"""Queues by urgency with real worker processes, started as the Procfile starts them (`worker` on
webhooks,actions; `worker-slow` on slow): a long re-poll never delays webhook processing."""

import time

import pytest

from billing import tasks as billing_tasks
from billing.models import Subscription
from billing.snapshots import Provider
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.providers.google.conftest import PACKAGE, fake_play, google, load_sequence, token_of  # noqa: F401
from webhooks.models import WebhookEvent

from .adapter import event_body
from .helpers import post, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOOGLE_ANSWERS_AFTER = 15.0  # seconds: a store that answers slowly, at the network edge


def test_a_long_repoll_on_the_slow_queue_never_delays_webhook_processing(client, google, settings,  # noqa: F811
                                                                        queued_tasks, start_worker):
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
    token = token_of(step)
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    SubscriptionFactory(provider=Provider.GOOGLE, provider_subscription_id=token, store_product_id="session_pro",
                        subscriber=SubscriberFactory(external_id="42"), product=None)  # never confirmed: due
    store = {"GOOGLE_PLAY_PACKAGE_NAME": PACKAGE, "GOOGLE_SERVICE_ACCOUNT_FILE": settings.GOOGLE_SERVICE_ACCOUNT_FILE,
             "GOOGLE_PLAY_API_ENDPOINT": google.base_url, "GOOGLE_PLAY_API_TIMEOUT_SECONDS": "60",
             "GOOGLE_PUBSUB_AUDIENCE": settings.GOOGLE_PUBSUB_AUDIENCE,
             "GOOGLE_PUBSUB_SERVICE_ACCOUNT": settings.GOOGLE_PUBSUB_SERVICE_ACCOUNT}
    # each with one process: a slow job anywhere on the first would hold webhook processing
    start_worker(queues="slow", **store)
    start_worker(queues="webhooks,actions", **store)
    google.delay_next("get", GOOGLE_ANSWERS_AFTER)

    billing_tasks.repoll_subscriptions.delay()  # what beat does every 15 minutes
    wait_for(lambda: google.calls_of("get"), timeout=30, message="the re-poll waiting on Google")
    repoll_started = time.monotonic()

    for i in range(5):
        body = event_body(f"evt_q{i}", subscription_id=f"sub_Q{i}", user_id=str(700 + i))
        assert post(client, body).status_code == 200
    wait_for(lambda: WebhookEvent.objects.filter(status="processed").count() == 5, timeout=10,
             message="the webhooks processed while the re-poll runs")
    processed_after = time.monotonic() - repoll_started

    repoll = Subscription.objects.get(provider_subscription_id=token)
    assert repoll.last_verified_at is None  # the re-poll is still waiting for Google
    assert processed_after < GOOGLE_ANSWERS_AFTER
    print(f"\n5 webhooks processed {processed_after:.2f} s after a {GOOGLE_ANSWERS_AFTER:.0f} s re-poll began")

    # and the re-poll itself completes, on its own worker
    wait_for(lambda: Subscription.objects.filter(pk=repoll.pk, last_verified_at__isnull=False).exists(),
             timeout=GOOGLE_ANSWERS_AFTER + 30, message="the re-poll to finish")
