"""What the Stripe benches share (bench/stripe_pipeline.py, bench/vs_djstripe.py): the Stripe API fake
(tests/fakes/stripe.py) as a server, the events it emits for a few hundred subscriptions, the settings
that point the app (and the stripe library dj-stripe calls) at it, and one `celery worker -P solo`."""

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELERY = ROOT / ".venv" / "bin" / "celery"
SECRET_KEY = "sk_test_" + "bench" * 5  # the fake takes keys of Stripe's shape
WEBHOOK_SECRET = "whsec_bench"
PROCFILE_QUEUES = "webhooks,actions,celery"  # the Procfile's `worker`


def stripe_env(fake_url: str) -> dict:
    """The app's Stripe settings: our keys, the fake as the API (STRIPE_API_BASE: our client, and through
    `client.configure_library()` dj-stripe's), test mode allowed, no budget on calls to the fake."""
    return {"STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": fake_url,
            "STRIPE_ALLOW_TEST_MODE": "1", "STORE_BUDGET_STRIPE_PER_MINUTE": "1000000"}


def process_env(*, db_url: str, redis_url: str, fake_url: str, settings_module: str, allowed_hosts: str,
                stream: str, drop: tuple[str, ...] = (), **extra) -> dict:
    """A served app's or worker's environment for the Stripe benches: the caller's environment without
    its database, Redis, Celery and Stripe settings (nor `drop`'s prefixes), then the bench's."""
    prefixes = ("DATABASE_URL", "REDIS_URL", "CELERY_", "STRIPE_", *drop)
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({"DATABASE_URL": db_url, "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url,
                "SECRET_KEY": "bench-only", "DEBUG": "0", "LOG_LEVEL": "WARNING",
                "DJANGO_SETTINGS_MODULE": settings_module, "ALLOWED_HOSTS": allowed_hosts,
                "CELERY_TASK_ALWAYS_EAGER": "0", **stripe_env(fake_url),
                "BILLING_EVENTS_STREAM": stream, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def make_events(fake, run: str, subscriptions: int, renewals: int = 1, *, outcomes: bool = False) -> list[dict]:
    """The events Stripe sends for `subscriptions` new subscriptions (customer.created,
    customer.subscription.created, invoice.paid, invoice.payment_succeeded), each renewed `renewals` times
    (customer.subscription.updated and the invoice's events), in the order Stripe emits them.

    `outcomes`: not every subscription ends active. Of each ten: one stays in its trial (not renewed), one
    renewal is declined (past_due, invoice.payment_failed), one is set to cancel at the period's end, one
    is canceled (customer.subscription.deleted); the others end active."""
    price = fake.add_price(fake.add_product(f"Premium {run}"), unit_amount=999)
    subs = []
    for i in range(subscriptions):
        customer = fake.customer_create({"email": f"u{run}{i}@example.com"})
        trial = outcomes and i % 10 == 1
        subs.append(fake.start_subscription(customer, price, payment_method="pm_card_visa",
                                            trial_days=14 if trial else 0, metadata={"user_id": f"{run}-{i}"}))
    for _ in range(renewals):
        for i, sub in enumerate(subs):
            if outcomes and i % 10 == 1:
                continue
            declined = outcomes and i % 10 == 3
            fake.renew(sub["id"], payment_method="pm_card_chargeCustomerFail" if declined else None)
    if outcomes:
        for i, sub in enumerate(subs):
            if i % 10 == 5:
                fake.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
            elif i % 10 == 7:
                fake.subscription_cancel(sub["id"])
    return fake.take_events()


def start_worker(env: dict, queues: str, log_name: str) -> subprocess.Popen:
    """One `celery worker -P solo` (one process, as the Procfile's worker with concurrency 1)."""
    log = open(log_name, "wb")  # noqa: SIM115 (closed when the process ends)
    return subprocess.Popen([CELERY, "-A", "config", "worker", "-P", "solo", "-c", "1", "-Q", queues,
                             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(worker: subprocess.Popen, log_name: str) -> None:
    deadline = time.monotonic() + 60
    while b"ready." not in Path(log_name).read_bytes():
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError("the worker did not start: " + Path(log_name).read_text()[-3000:])
        time.sleep(0.05)


def pending() -> int:
    """Events still `received` in the database Django is set up with; raises on the first failed one."""
    from webhooks.models import WebhookEvent

    failed = WebhookEvent.objects.exclude(error="").values_list("error", flat=True).first()
    if failed:
        raise RuntimeError(f"an event failed: {failed}")
    return WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).count()
