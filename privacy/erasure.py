"""A customer's erasure request (`manage.py erase_subscriber`, the subscribers admin's erase action).

1. Refused while the customer has a live paid subscription at a store (entitled now, a trial included:
   the store charges when it ends) unless forced: the store keeps charging whatever we erase, so it
   must be cancelled there first. The refusal names each one.
2. Whatever still entitles them (forced store subscriptions, staff grants) is revoked through the one
   write path (REVOKED, cause staff, note "privacy erasure"): a status change like any other, published
   on the stream with `isSubscribed: false` under the user id consumers know. With nothing left to
   revoke, one event states the user's newest subscription as it is (oldStatus == newStatus,
   `isSubscribed: false`), as linking does. Those events are published before anything is overwritten;
   Redis unreachable: nothing is overwritten (run it again).
3. In one transaction, personal data is removed or overwritten (privacy/holdings.py finds it): the
   subscriber's e-mail and store identities are emptied and their user id becomes a pseudonym
   (`erased-<16 random hex>`, not derived from anything, so it leads back to no one); raw webhook bodies,
   headers, decoded payloads and store ids of the events naming them are emptied (the row and its dedupe
   key stay: a redelivery is still recognised); subscriptions' raw snapshots and transactions' raw store
   data are emptied; Google purchase tokens (the subscription's store id there) become the pseudonym;
   notes' text is replaced; the identifiers are replaced by the pseudonym wherever text names them
   (history notes, audit entries, the admin's log, stream and outgoing-webhook payloads); the cached
   entitlements are dropped from Redis. Kept as they were: the ledger's amounts, currencies, dates and
   store transaction ids, and every subscription row: finance totals do not change.
4. An `Erasure` row records who, when, why and how many rows of each kind, never the erased data; the
   audit log gets an entry too.

A dry run computes the same counts and changes nothing."""

import json
import logging
import secrets
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from accounts.models import Subscriber
from audit.records import actor_fields, record
from billing import entitlement_cache, outbox
from billing.apply import apply_snapshot, subscriber_publish_state
from billing.models import Outbox, Subscription
from billing.redis_client import get_redis
from billing.snapshots import Cause, CauseKind, Provider, Snapshot
from billing.statuses import Status

from .holdings import Holdings, holdings_of, scrubber
from .models import Erasure

logger = logging.getLogger(__name__)

ERASED_NOTE = "[erased: privacy request]"


class ErasureRefused(Exception):
    """The erasure cannot go ahead as asked; the message says why and what to do."""


class LivePaidSubscriptions(ErasureRefused):
    def __init__(self, subscriptions: list[Subscription]):
        self.subscriptions = subscriptions
        listed = "; ".join(f"{s.provider} subscription {s.provider_subscription_id} ({s.status}, until "
                           f"{s.access_ends_at:%Y-%m-%d} UTC)" if s.access_ends_at else
                           f"{s.provider} subscription {s.provider_subscription_id} ({s.status})"
                           for s in subscriptions)
        super().__init__(f"The customer still pays through: {listed}. The store keeps charging whatever we erase: "
                         "cancel (or refund) it at the store first, or erase anyway with --force (it is revoked "
                         "here, not at the store).")


@dataclass
class ErasureReport:
    pseudonym: str
    counts: dict
    revoked: list[str] = field(default_factory=list)
    dry_run: bool = False
    erasure_id: int | None = None


def live_paid_subscriptions(subscriber: Subscriber) -> list[Subscription]:
    now = timezone.now()
    return [s for s in Subscription.objects.filter(subscriber=subscriber, replaced_by__isnull=True)
            .exclude(provider=Provider.MANUAL).order_by("pk") if s.is_entitled(now)]


def _entitled(subscriber: Subscriber) -> list[Subscription]:
    now = timezone.now()
    return [s for s in Subscription.objects.filter(subscriber=subscriber, replaced_by__isnull=True).order_by("pk")
            if s.is_entitled(now)]


def _counts(h: Holdings, revoke: list[Subscription]) -> dict:
    return {
        "subscriptions_revoked": len(revoke),
        "subscriptions_kept": h.subscriptions.count(),
        "transactions_kept": h.transactions.count(),
        "status_history_kept": h.status_changes.count(),
        "webhook_events_emptied": h.webhook_events.count(),
        "notes_erased": h.notes.count(),
        "audit_entries_scrubbed": h.audit_entries.count(),
        "stream_events_scrubbed": h.outbox.count(),
        "outgoing_events_scrubbed": h.outgoing_events.count(),
        "admin_log_scrubbed": h.admin_log.count(),
        "identities_removed": sum(1 for f in Subscriber.IDENTITY_FIELDS if getattr(h.subscriber, f)),
        "email_removed": int(bool(h.subscriber.email)),
    }


def subscriber_erase(*, subscriber: Subscriber, reason: str, actor=None, force: bool = False,
                     dry_run: bool = False) -> ErasureReport:
    """Erase one customer (module docstring). Raises ErasureRefused (LivePaidSubscriptions) before
    changing anything."""
    reason = (reason or "").strip()
    if not reason:
        raise ErasureRefused("A reason is required (e.g. the ticket of the privacy request).")
    if Erasure.objects.filter(pseudonym=subscriber.external_id).exists():
        raise ErasureRefused(f"{subscriber.external_id} is erased already.")
    live = live_paid_subscriptions(subscriber)
    if live and not force:
        raise LivePaidSubscriptions(live)
    revoke = _entitled(subscriber)
    report = ErasureReport(pseudonym="", counts=_counts(holdings_of(subscriber), revoke),
                           revoked=[str(s) for s in revoke], dry_run=dry_run)
    if dry_run:
        return report
    if get_redis() is None:
        raise ErasureRefused("Redis is unavailable: the event stream must learn that the user is no longer "
                             "subscribed before their id is erased. Nothing was changed; try again.")
    _revoke(subscriber, revoke, reason, actor)
    _publish_their_events(subscriber)
    report.pseudonym = f"erased-{secrets.token_hex(8)}"
    report.erasure_id = _overwrite(subscriber, report, reason, actor, force=bool(live))
    return report


def _revoke(subscriber: Subscriber, subscriptions: list[Subscription], reason: str, actor) -> None:
    """Access ends now, through the write path: history, outbox row, stream event, cache refresh."""
    staff_user_id = getattr(actor, "pk", None)
    cause = Cause(CauseKind.STAFF, ref="privacy:erasure", staff_user_id=staff_user_id,
                  note=f"privacy erasure: {reason}")
    if not subscriptions:  # access ended earlier; consumers still hear that the user is gone, not subscribed
        subscriber_publish_state(subscriber=subscriber, cause=cause)
        return
    now = timezone.now()
    for sub in subscriptions:
        observed = now if sub.last_event_at is None or sub.last_event_at <= now else sub.last_event_at
        apply_snapshot(Snapshot(provider=sub.provider, provider_subscription_id=sub.provider_subscription_id,
                                status=Status.REVOKED, observed_at=observed, environment=sub.environment,
                                ended_at=now, auto_renew=False if sub.provider == Provider.MANUAL else None), cause)


def _publish_their_events(subscriber: Subscriber) -> None:
    """Their stream events leave under the user id consumers know before the id is overwritten."""
    pending = list(Outbox.objects.filter(subscription__subscriber=subscriber, published_at__isnull=True)
                   .values_list("pk", flat=True))
    if pending:
        outbox.publish_pending(ids=pending)
    if Outbox.objects.filter(pk__in=pending, published_at__isnull=True).exists():
        raise ErasureRefused("The event stream did not take the user's last events (Redis unavailable). Access "
                             "was revoked; nothing was erased yet: run the erasure again once Redis is back.")


def _overwrite(subscriber: Subscriber, report: ErasureReport, reason: str, actor, *, force: bool) -> int:
    old_external_id = subscriber.external_id
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        h = holdings_of(subscriber)
        report.counts = _counts(h, [])  # as found under the lock
        report.counts["subscriptions_revoked"] = len(report.revoked)
        scrub = scrubber(h.identifiers(), report.pseudonym)

        def scrub_json(data):
            return json.loads(scrub(json.dumps(data))) if data else data

        # Materialized first: emptying the events' store ids changes what the lazy query would find.
        events = list(h.webhook_events.only("pk", "provider", "dedupe_key", "outcome", "error", "traceback"))
        for event in events:
            type(event).objects.filter(pk=event.pk).update(
                body=b"", headers={}, payload={}, store_ids=[], store_ids_text="",
                payload_problem="emptied by a privacy erasure", outcome=scrub(event.outcome),
                error=scrub(event.error), traceback=scrub(event.traceback))
        for sub in h.subscriptions:
            fields = {"raw_snapshot": {}}
            if sub.provider == Provider.GOOGLE:  # the purchase token: a secret of the buyer's device
                fields["provider_subscription_id"] = f"{report.pseudonym}-{sub.pk}"
            Subscription.objects.filter(pk=sub.pk).update(**fields)
        h.transactions.update(raw={})
        for change in h.status_changes.exclude(note="", cause_ref=""):
            note, ref = scrub(change.note), scrub(change.cause_ref)
            if (note, ref) != (change.note, change.cause_ref):
                type(change).objects.filter(pk=change.pk).update(note=note, cause_ref=ref)
        h.notes.update(text=ERASED_NOTE)
        for entry in h.audit_entries:
            type(entry).objects.filter(pk=entry.pk).update(reason=scrub(entry.reason), target=scrub(entry.target),
                                                           details=scrub_json(entry.details))
        for rows in (h.outbox, h.outgoing_events):
            for row in rows:
                type(row).objects.filter(pk=row.pk).update(
                    payload={**scrub_json(row.payload), "userId": report.pseudonym})
        for entry in h.admin_log:
            type(entry).objects.filter(pk=entry.pk).update(object_repr=scrub(entry.object_repr),
                                                           change_message=scrub(entry.change_message))
        _forget_stripe_mirror(subscriber, [e.dedupe_key for e in events if e.provider == Provider.STRIPE])
        subscriber.external_id, subscriber.email = report.pseudonym, ""
        for name in Subscriber.IDENTITY_FIELDS:
            setattr(subscriber, name, None)
        subscriber.save()
        erasure = Erasure.objects.create(pseudonym=report.pseudonym, reason=reason, forced=force,
                                         counts=report.counts, **_actor(actor))
        record(actor=actor, action="erase_subscriber", reason=reason, subscriber=subscriber,
               target=f"privacy.erasure:{erasure.pk}", details={"counts": report.counts, "forced": force})
        transaction.on_commit(lambda: _forget_cached(old_external_id))
    _forget_cached(old_external_id)
    logger.info("subscriber erased as %s (erasure %s): %s", report.pseudonym, erasure.pk, report.counts)
    return erasure.pk


def _actor(actor) -> dict:
    fields = actor_fields(actor)
    return {"actor_user": fields.get("actor_user"), "actor_label": fields["actor_label"]}


def _forget_cached(external_id: str) -> None:
    """The check API's cached entries under the old user id (a miss now reads the database: not subscribed)."""
    client = get_redis()
    if client is None:
        return
    try:
        client.delete(entitlement_cache.key_for(external_id), entitlement_cache.VERSION_KEY.format(external_id))
    except Exception:  # the entry's TTL (CHECK_CACHE_TTL_SECONDS) bounds it; it names no one once read as a miss
        logger.warning("could not drop the cached entitlements of an erased user", exc_info=True)


def _forget_stripe_mirror(subscriber: Subscriber, stripe_event_ids: list[str]) -> None:
    """dj-stripe's mirror holds Stripe's copy of the customer (e-mail, metadata.user_id) and its events."""
    from djstripe.models import Customer, Event  # imported late: dj-stripe's models are heavy

    try:
        with transaction.atomic():  # a savepoint: a mirror row we cannot delete must not stop the erasure
            if stripe_event_ids:
                Event.objects.filter(id__in=stripe_event_ids).delete()
            if subscriber.stripe_customer_id:
                Customer.objects.filter(id=subscriber.stripe_customer_id).delete()
    except Exception:  # e.g. a protected relation: the mirror is Stripe's copy, re-synced from Stripe anyway
        logger.warning("dj-stripe mirror rows of an erased customer not deleted", exc_info=True)
