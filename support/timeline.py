"""One timeline per customer and per subscription (docs/support.md "The timeline"): status changes (the
ignored stale ones too), transactions, webhook events, staff actions, notes and the events published on
the stream, in one list, newest first, each entry with its cause in words.

A customer may have thousands of entries: a page is built from one bounded query per source (each
ordered by its own time and cut at the page size plus one, below a cursor), merged in memory. The
order is (time, kind rank, row id), newest first; the cursor is the last entry's triple, so the next
page starts exactly after it whatever the ties. A page costs at most one query per source, plus two
small ones keyed by the page's own rows (the webhook events its status changes name, the subscriptions
its webhook events touched), whatever the customer's size."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Exists, OuterRef, Q
from django.urls import NoReverseMatch, reverse

from accounts.models import Subscriber
from audit.models import AuditEntry, Note
from billing.explanations import LABELS, STORE_NAMES, absolute
from billing.models import Outbox, StatusChange, Subscription, Transaction
from billing.money import format_minor
from billing.snapshots import CauseKind
from webhooks.models import WebhookEvent

# The kinds, in the order they sort within one instant (a higher rank shows first, newest first): what
# a webhook caused shows above it, the stream event above the status change it publishes.
KINDS = ("webhook", "transaction", "status", "stream", "staff", "note")
KIND_LABELS = {"webhook": "webhook events", "transaction": "transactions", "status": "status changes",
               "stream": "stream events", "staff": "staff actions", "note": "notes"}
RANK = {kind: rank for rank, kind in enumerate(KINDS)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAGE_SIZE = 50
PAGE_SIZE_MAX = 200


@dataclass
class Entry:
    at: datetime  # when we recorded it (the list's order); a store's own time is in `details`
    kind: str
    key: int  # the row's id in its source
    title: str
    cause: str  # why it is here, in words
    provider: str = ""
    details: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, url)
    subscription: Subscription | None = None
    flag: str = ""  # e.g. "ignored (stale)": shown beside the title
    undo_url: str = ""

    @property
    def sort_key(self) -> tuple:
        return (self.at, RANK[self.kind], self.key)

    @property
    def cursor(self) -> str:
        return encode_cursor(self.sort_key)


@dataclass
class Page:
    entries: list[Entry]
    next_cursor: str  # "" on the last page


@dataclass(frozen=True)
class Scope:
    """Whose timeline: a subscriber's (all their subscriptions, their notes and the staff actions on
    them) or one subscription's (with its owner's notes)."""

    subscriber_id: int | None
    subscriptions: dict  # id → Subscription
    whole_subscriber: bool


def subscriber_scope(subscriber: Subscriber) -> Scope:
    subs = {s.pk: s for s in Subscription.objects.filter(subscriber=subscriber)}
    return Scope(subscriber.pk, subs, whole_subscriber=True)


def subscription_scope(subscription: Subscription) -> Scope:
    return Scope(subscription.subscriber_id, {subscription.pk: subscription}, whole_subscriber=False)


# --- cursor ------------------------------------------------------------------------------------

def encode_cursor(key: tuple) -> str:
    at, rank, pk = key
    return f"{(at - EPOCH) // timedelta(microseconds=1)}.{rank}.{pk}"


def decode_cursor(text: str) -> tuple | None:
    """The (time, rank, id) a cursor names, or None for a cursor we did not make (then: the first page)."""
    try:
        micros, rank, pk = (int(part) for part in (text or "").split("."))
        at = EPOCH + timedelta(microseconds=micros)  # exact, where a float timestamp may round
    except (ValueError, OverflowError, OSError):
        return None
    return (at, rank, pk) if 0 <= rank < len(KINDS) and pk >= 0 else None


def _before(kind: str, time_field: str, cursor: tuple | None) -> Q:
    """Rows of `kind` that sort strictly after the cursor in the newest-first order."""
    if cursor is None:
        return Q()
    at, rank, pk = cursor
    if RANK[kind] < rank:
        return Q(**{f"{time_field}__lte": at})
    if RANK[kind] > rank:
        return Q(**{f"{time_field}__lt": at})
    return Q(**{f"{time_field}__lt": at}) | Q(**{time_field: at, "pk__lt": pk})


# --- the page ----------------------------------------------------------------------------------

def timeline_page(scope: Scope, *, kinds=KINDS, provider: str = "", cursor: str = "",
                  limit: int = PAGE_SIZE) -> Page:
    """One page of the timeline, newest first. `kinds`: which sources; `provider`: only what concerns
    that store's subscriptions (notes and staff actions on the customer as a whole then drop out)."""
    limit = max(1, min(int(limit), PAGE_SIZE_MAX))
    after = decode_cursor(cursor)
    subs = {pk: s for pk, s in scope.subscriptions.items() if not provider or s.provider == provider}
    entries: list[Entry] = []
    for kind in kinds:
        if kind in SOURCES:
            entries += SOURCES[kind](scope, subs, bool(provider), after, limit + 1)
    entries.sort(key=lambda e: e.sort_key, reverse=True)
    page = entries[:limit]
    return Page(page, page[-1].cursor if len(entries) > limit else "")


def _take(queryset, kind: str, time_field: str, after, n: int):
    return queryset.filter(_before(kind, time_field, after)).order_by(f"-{time_field}", "-pk")[:n]


def _admin_url(name: str, pk) -> str:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:  # the model is not in this admin site
        return ""


def _status(status: str) -> str:
    return LABELS.get(status, status or "—")


def _store(provider: str) -> str:
    return STORE_NAMES.get(provider, provider)


# --- sources: each returns up to n entries after the cursor, newest first ------------------------

def _status_changes(scope, subs, by_provider, after, n) -> list[Entry]:
    rows = list(_take(StatusChange.objects.filter(subscription_id__in=list(subs)).select_related("staff_user"),
                      "status", "recorded_at", after, n))
    event_ids = {int(r.cause_ref) for r in rows if r.cause == CauseKind.WEBHOOK and r.cause_ref.isdigit()}
    events = {e.pk: e for e in WebhookEvent.objects.filter(pk__in=event_ids).only("id", "provider", "event_type")}
    entries = []
    for row in rows:
        sub = subs[row.subscription_id]
        cause, links = _change_cause(row, sub, events)
        details = [f"At the store: {absolute(row.occurred_at)}"]
        if row.ignored:
            details.insert(0, "Not applied: the store's time is older than the state we already hold "
                              "(it arrived late or out of order).")
        entries.append(Entry(
            at=row.recorded_at, kind="status", key=row.pk, provider=sub.provider, subscription=sub,
            title=f"{_status(row.old_status) if row.old_status else 'New'} → {_status(row.new_status)}",
            flag="ignored (stale)" if row.ignored else "", cause=cause, details=details, links=links))
    return entries


def _change_cause(row: StatusChange, sub: Subscription, events: dict) -> tuple[str, list]:
    store = _store(sub.provider)
    note = f" — {row.note}" if row.note else ""
    if row.cause == CauseKind.WEBHOOK:
        event = events.get(int(row.cause_ref)) if row.cause_ref.isdigit() else None
        what = f"{event.event_type or 'an event'}" if event else f"event {row.cause_ref}"
        url = _admin_url("admin:webhooks_webhookevent_change", event.pk) if event else ""
        return f"{store} told us: webhook {what}{note}", [(f"webhook event #{row.cause_ref}", url)] if url else []
    if row.cause == CauseKind.POLL:
        who = f" by {row.staff_user.get_username()}" if row.staff_user else ""
        return f"Re-poll of {store}{who}: the store's answer ({row.cause_ref or 'scheduled'}){note}", []
    if row.cause == CauseKind.VERIFICATION:
        return f"Purchase verified with {store} ({row.cause_ref or 'by the app'}){note}", []
    if row.cause == CauseKind.STAFF:
        who = row.staff_user.get_username() if row.staff_user else row.cause_ref.removeprefix("staff:")
        return f"Staff: {who or 'a staff member'}{' — why: ' + row.note if row.note else ''}", []
    if row.cause == CauseKind.BEAT:
        return f"Scheduled job {row.cause_ref or ''}{note}".replace("  ", " "), []
    if row.cause == CauseKind.BACKFILL:
        return f"Backfill / import from {store} ({row.cause_ref}){note}", []
    if row.cause == CauseKind.API:
        return f"API call ({row.cause_ref}){note}", []
    return f"{row.get_cause_display()} {row.cause_ref}{note}", []


def _transactions(scope, subs, by_provider, after, n) -> list[Entry]:
    rows = _take(Transaction.objects.filter(subscription_id__in=list(subs)).defer("raw"),
                 "transaction", "recorded_at", after, n)
    entries = []
    for row in rows:
        sub = subs[row.subscription_id]
        details = [f"At the store: {absolute(row.occurred_at)}", f"Store transaction id: {row.provider_transaction_id}"]
        if row.order_id and row.order_id != row.provider_transaction_id:
            details.append(f"Order id: {row.order_id}")
        if row.refers_to:
            details.append(f"For payment: {row.refers_to}")
        if row.period_start and row.period_end:
            details.append(f"Pays for {absolute(row.period_start)} to {absolute(row.period_end)}")
        if row.environment != "production":
            details.append(f"Environment: {row.environment}")
        entries.append(Entry(
            at=row.recorded_at, kind="transaction", key=row.pk, provider=row.provider, subscription=sub,
            title=f"{row.get_kind_display().capitalize()} {format_minor(row.amount_minor, row.currency)}",
            cause=f"Reported by {_store(row.provider)}", details=details,
            links=[("transaction", _admin_url("admin:billing_transaction_change", row.pk))]))
    return entries


def _webhook_events(scope, subs, by_provider, after, n) -> list[Entry]:
    # Linked by processing (webhooks/processing.py `_link`: each event to the subscriptions it touched);
    # the raw body stays out of the query.
    linked = WebhookEvent.subscriptions.through.objects.filter(subscription_id__in=list(subs))
    rows = _take(WebhookEvent.objects.filter(pk__in=linked.values("webhookevent_id"))
                 .only("id", "provider", "event_type", "status", "outcome", "error", "received_at", "occurred_at",
                       "dedupe_key", "attempts"),
                 "webhook", "received_at", after, n)
    rows = list(rows)
    # Which of the scope's subscriptions each event touched (one query for the page's events).
    touched = dict(linked.filter(webhookevent_id__in=[r.pk for r in rows]).order_by("subscription_id")
                   .values_list("webhookevent_id", "subscription_id")) if rows else {}
    entries = []
    for row in rows:
        details = [f"Outcome: {row.outcome}" if row.outcome else f"Status: {row.status}"]
        if row.error:
            details.append(f"Error: {row.error[:300]}")
        if row.occurred_at:
            details.append(f"At the store: {absolute(row.occurred_at)}")
        details.append(f"Store's event id: {row.dedupe_key}")
        url = _admin_url("admin:webhooks_webhookevent_change", row.pk)
        entries.append(Entry(
            at=row.received_at, kind="webhook", key=row.pk, provider=row.provider,
            subscription=subs.get(touched.get(row.pk)),
            title=f"Webhook {row.event_type or '(no type)'}", flag=row.status if row.status != "processed" else "",
            cause=f"Sent by {_store(row.provider)}", details=details,
            links=[("event and raw body", url)] if url else []))
    return entries


def _staff_actions(scope, subs, by_provider, after, n) -> list[Entry]:
    where = Q(subscription_id__in=list(subs))
    if scope.whole_subscriber and not by_provider and scope.subscriber_id is not None:
        # Also what was done to the customer as a whole (an identity edit), and to a subscription that
        # has since moved to someone else (the move itself names the customer it was taken from).
        where |= Q(subscriber_id=scope.subscriber_id)
    undone = AuditEntry.objects.filter(undoes=OuterRef("pk"))
    rows = _take(AuditEntry.objects.filter(where).annotate(was_undone=Exists(undone)), "staff", "created_at", after, n)
    entries = []
    for row in rows:
        sub = subs.get(row.subscription_id)
        details = []
        if row.target:
            details.append(f"On: {row.target}")
        if row.undoes_id:
            details.append(f"Undoes staff action #{row.undoes_id}")
        undo = ""
        if (row.details or {}).get("undoable") and not row.was_undone:
            undo = _admin_url("support-undo", row.pk)
        entries.append(Entry(
            at=row.created_at, kind="staff", key=row.pk, provider=sub.provider if sub else "", subscription=sub,
            title=f"Staff action: {row.action.replace('_', ' ')}", flag="undone" if row.was_undone else "",
            cause=f"By {row.actor_label}" + (f" — why: {row.reason}" if row.reason else ""), details=details,
            undo_url=undo))
    return entries


def _notes(scope, subs, by_provider, after, n) -> list[Entry]:
    if by_provider or scope.subscriber_id is None:
        return []  # a note is about the customer, not one store
    rows = _take(Note.objects.filter(subscriber_id=scope.subscriber_id), "note", "created_at", after, n)
    return [Entry(at=row.created_at, kind="note", key=row.pk, title="Note", cause=f"Written by {row.author_label}",
                  details=[row.text]) for row in rows]


def _stream_events(scope, subs, by_provider, after, n) -> list[Entry]:
    rows = _take(Outbox.objects.filter(subscription_id__in=list(subs)), "stream", "created_at", after, n)
    entries = []
    for row in rows:
        sub = subs[row.subscription_id]
        payload = row.payload or {}
        if row.published_at:
            state = f"Published {absolute(row.published_at)}" + (f" as {row.stream_id}" if row.stream_id else "")
        else:
            error = f": {row.last_error}" if row.last_error else ""
            state = f"Waiting to be published ({row.attempts} attempts{error})"
        details = [state, f"eventId {row.event_id}",
                   f"userId {payload.get('userId')}, isSubscribed {str(payload.get('isSubscribed')).lower()}"]
        entries.append(Entry(
            at=row.created_at, kind="stream", key=row.pk, provider=sub.provider, subscription=sub,
            title=f"Stream event {payload.get('oldStatus') or '—'} → {payload.get('newStatus')}",
            flag="" if row.published_at else "unpublished",
            cause="Told other services (billing:events) of the change", details=details,
            links=[("outbox row", _admin_url("admin:billing_outbox_change", row.pk))]))
    return entries


SOURCES = {"status": _status_changes, "transaction": _transactions, "webhook": _webhook_events,
           "staff": _staff_actions, "note": _notes, "stream": _stream_events}
