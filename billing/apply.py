"""The ONE write path of subscription state: `apply_snapshots` (and `apply_snapshot`, for one).
Webhooks, verification, re-polls, staff fixes and beat jobs all come through it.

A batch of snapshots is applied as if one after the other, in order, in one transaction: the rows
they touch are read and locked together (one query), changed in memory in order, and written
together. A drain group of 25 webhook events pays a few dozen statements in all instead of about ten
each. The one visible difference from separate calls: `isSubscribed` on the stream is computed as of
the batch's commit (what consumers see at once), not between the snapshots of the batch.

One module on purpose (about 450 lines): the write path is read, and reviewed, as a whole."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Subscriber
from accounts.selectors import subscriber_by_identity
from accounts.services import subscriber_set_identity, subscribers_get_or_create

from . import after_commit, double_payments, outbox, sandbox_purchases
from .db import insert_rows_ignoring_conflict, update_rows
from .drift import drift_for
from .ledger import ledger_amount, ledger_details
from .models import HISTORY_STATE_FIELDS, Drift, Outbox, Product, StatusChange, Subscription, Transaction
from .snapshots import Cause, CauseKind, Snapshot
from .statuses import Status, grants_access

logger = logging.getLogger(__name__)

# Causes that mean the store itself just told us this state.
_STORE_CONFIRMED = {CauseKind.WEBHOOK, CauseKind.POLL, CauseKind.VERIFICATION, CauseKind.BACKFILL}

# Snapshot fields copied onto the subscription when given (None keeps what is stored).
_OPTIONAL_FIELDS = (
    "period_unit", "period_value", "amount_minor", "upcoming_amount_minor", "currency", "auto_renew",
    "started_at", "current_period_start", "current_period_end", "expires_at", "grace_until",
    "canceled_at", "ended_at", "acknowledgement_due_at",
)
# Statuses that end a subscription for good: a superseded one keeps its own, any other becomes EXPIRED.
_TERMINAL = (Status.EXPIRED, Status.REVOKED)
# The history note of a test purchase recorded without access (written once, like a store's claim).
_WITHHELD_MARK = "test purchase (sandbox)"

# The subscription's state as the write path compares it (what changed is what is written).
_STATE_FIELDS = tuple(f.attname for f in Subscription._meta.concrete_fields
                      if f.name not in ("id", "provider", "provider_subscription_id", "created_at", "updated_at"))

Key = tuple[str, str]  # (provider, provider subscription id)


@dataclass(frozen=True)
class ApplyResult:
    subscription_id: int
    outcome: str  # "created", "updated", "unchanged" or "stale"
    old_status: str
    new_status: str
    transactions_added: int = 0
    drift: Drift | None = None  # what a store read (Cause.found_by) changed, recorded with the batch

    @property
    def status_changed(self) -> bool:
        return self.outcome in ("created", "updated") and self.old_status != self.new_status


def apply_snapshot(snapshot: Snapshot, cause: Cause) -> ApplyResult:
    """Apply a store's state to our subscription, in one transaction with the row locked.

    - a snapshot older than `last_event_at` changes nothing but is recorded as ignored (no regression);
    - transactions are recorded once per provider id, stale or not (money facts do not regress);
    - a status change writes a StatusChange and an Outbox row; after commit the outbox is relayed to
      the stream and the subscriber's cached entitlements are refreshed.
    """
    return apply_snapshots([(snapshot, cause)])[0]


def apply_snapshots(items: list[tuple[Snapshot, Cause]]) -> list[ApplyResult]:
    """apply_snapshot for each (snapshot, cause), in order, sharing the reads and writes (module
    docstring). The results are in the same order."""
    if not items:
        return []
    # No savepoint of its own: nested in a caller's transaction (a drain group), the caller's savepoint
    # isolates a failure, and Django refuses any further query in a block that failed without one, so
    # a half-applied batch can never be committed.
    with transaction.atomic(savepoint=False):
        batch = _Batch([snapshot for snapshot, _ in items])
        results = [batch.apply(snapshot, cause) for snapshot, cause in items]
        batch.write()
    return results


def subscription_link_subscriber(*, subscription_id: int, subscriber: Subscriber, cause: Cause) -> Subscription:
    """Staff links an orphan (or moves a subscription) to a subscriber. The new owner's state is
    published on the stream; a previous owner gets an event too (their access may just have ended)."""
    if subscriber is None:
        raise ValueError("a subscriber is required")
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        previous = sub.subscriber
        if previous is not None and previous.pk == subscriber.pk:
            return sub
        sub.subscriber = subscriber
        sub.save(update_fields=["subscriber", "updated_at"])
        moved = f" (was {previous.external_id})" if previous is not None else ""
        batch = _Batch([])  # the same history row and stream events as any change of the write path
        now = timezone.now()
        batch.status_change(sub, sub.status, now, cause,
                            _join(f"linked to user {subscriber.external_id}{moved}", cause.note))
        if previous is not None:
            batch.status_change(sub, sub.status, now, cause, "", publish_for=previous)
        batch.refresh.update((sub.subscriber_id, previous.pk if previous is not None else None))
        batch.write()
    return sub


def subscriber_publish_state(*, subscriber: Subscriber, cause: Cause) -> int | None:
    """Publish a user's state on the stream without a change of status (oldStatus == newStatus; the
    subscription whose access ended last), as linking does: for an event consumers must hear although
    access did not change (a privacy erasure: the user is gone). A history row says why. None: the user
    has no subscription."""
    with transaction.atomic():
        sub = (Subscription.objects.select_for_update(of=("self",)).select_related("subscriber")
               .filter(subscriber=subscriber)
               .order_by(F("replaced_by").asc(nulls_first=True), F("expires_at").desc(nulls_first=True), "-pk")
               .first())
        if sub is None:
            return None
        batch = _Batch([])  # the same history row and stream event as any change of the write path
        batch.status_change(sub, sub.status, timezone.now(), cause, cause.note)
        batch.write()
    return sub.pk


class _Batch:
    """The rows a batch of snapshots touches: subscriptions (locked; the new ones inserted bare first,
    so that every row has an id and a lock), their users and products, and the transactions already
    recorded. `apply` changes them in memory; `write` stores what changed."""

    def __init__(self, snapshots: list[Snapshot]):
        self.now = timezone.now()
        # The subscriptions the snapshots supersede are locked with them (never created).
        replaced = {(s.provider, s.replaces) for s in snapshots if s.replaces}
        self.subs, self.new_keys = _lock_or_create({_key(s) for s in snapshots}, also=replaced)
        self.original = {key: _state(sub) for key, sub in self.subs.items()}
        applied = _not_stale(snapshots, self.subs)
        self.subscribers = self._subscribers_for(applied)
        self.products = _products_for(applied, self.subs)
        self.recorded = _recorded_transactions(snapshots)
        self.seen: set[Key] = set()
        self.transactions: list[Transaction] = []
        self.history: list[StatusChange] = []
        self.drifts: list[Drift] = []
        # stream events: (payload draft, subscription, the user it is for)
        self.events: list[tuple[dict, Subscription, Subscriber]] = []
        self.refresh: set[int | None] = set()

    def _subscribers_for(self, snapshots: list[Snapshot]) -> dict[str, Subscriber]:
        """Users named by the snapshots, except the ones already linked (read with the lock)."""
        emails: dict[str, str] = {}
        for s in snapshots:
            user_id = str(s.user_id).strip() if s.user_id not in (None, "") else ""
            linked = self.subs[_key(s)].subscriber if self.subs[_key(s)].subscriber_id is not None else None
            if user_id and not (linked is not None and linked.external_id == user_id and (linked.email or not s.email)):
                emails[user_id] = emails.get(user_id) or s.email
        found = subscribers_get_or_create(emails=emails) if emails else {}
        for sub in self.subs.values():
            if sub.subscriber_id is not None:
                found.setdefault(sub.subscriber.external_id, sub.subscriber)
        return found

    def apply(self, snapshot: Snapshot, cause: Cause) -> ApplyResult:
        key = _key(snapshot)
        sub = self.subs[key]
        created = key in self.new_keys and key not in self.seen  # the first snapshot of a row we created
        self.seen.add(key)
        old_status, old_subscriber_id = sub.status, sub.subscriber_id

        if sub.last_event_at is not None and snapshot.observed_at < sub.last_event_at:
            added = self._record_transactions(sub, snapshot)
            self._history(sub, old_status, snapshot.status, snapshot.observed_at, cause, ignored=True,
                          note=_join(f"stale: store time {snapshot.observed_at.isoformat()} is older than the "
                                     f"state applied ({sub.last_event_at.isoformat()})", cause.note))
            if added:
                self.refresh.add(sub.subscriber_id)
            return ApplyResult(sub.pk, "stale", old_status, old_status, added)

        before = _state(sub) if cause.kind == CauseKind.STAFF or (cause.found_by and not created) else None
        state_before = _history_state(sub)
        self._take_state(sub, snapshot, cause)
        claim_note = self._link_user(sub, snapshot)
        withheld_note = self._withhold(sub)
        # A store read finding what no delivered event told us (billing/drift.py): no query, the row is in hand.
        drift = (drift_for(before, sub, found_by=cause.found_by, observed_at=snapshot.observed_at, now=self.now)
                 if cause.found_by and not created else None)
        if drift is not None:
            self.drifts.append(drift)
        added = self._record_transactions(sub, snapshot)
        if snapshot.replaces:
            self._supersede(sub, snapshot, cause)

        changed = old_status != sub.status  # a new row starts INACTIVE
        linked = old_subscriber_id is None and sub.subscriber_id is not None and not created
        if changed or linked:
            # An orphan getting its user is published too: for that user, access just changed.
            self.status_change(sub, old_status, snapshot.observed_at, cause, _join(
                cause.note, claim_note, withheld_note,
                f"linked to user {sub.subscriber.external_id}" if linked else ""))
        elif (cause.kind == CauseKind.STAFF and _state(sub) != before) or (
                claim_note and not self._claim_recorded(sub, claim_note)) or (
                withheld_note and not self._claim_recorded(sub, _WITHHELD_MARK)):
            # No status change, but in the history all the same: a staff fix (a grant extended: who, why),
            # a store's conflicting claim on the user, a test purchase kept without access (once each).
            self._history(sub, old_status, sub.status, snapshot.observed_at, cause,
                          note=_join(cause.note, claim_note, withheld_note))
        elif grants_access(sub.status) and _history_state(sub) != state_before:
            # What finance reads of an entitled subscription changed without a status change (a renewal's
            # new expiry, a new price or plan): a `state` row, so that "as of" a past moment is rebuilt
            # from the history alone. A subscription without access (ended, superseded, not yet paid)
            # records its state at its next status change: nothing is counted from it until then.
            self._history(sub, old_status, sub.status, snapshot.observed_at, cause, note=cause.note,
                          kind=StatusChange.Kind.STATE)
        self.refresh.update((sub.subscriber_id, old_subscriber_id))
        outcome = "created" if created else ("updated" if changed else "unchanged")
        return ApplyResult(sub.pk, outcome, old_status, sub.status, added, drift)

    def _take_state(self, sub: Subscription, snapshot: Snapshot, cause: Cause) -> None:
        """The store's state, on the row: every field the snapshot knows, the product, the freshness."""
        sub.status = snapshot.status
        for name in _OPTIONAL_FIELDS:
            value = getattr(snapshot, name)
            if value is not None:
                setattr(sub, name, value)
        if snapshot.status != Status.ON_GRACE and snapshot.grace_until is None and not snapshot.derived:
            sub.grace_until = None  # the store says grace is over: an old grace end must not extend access
        if snapshot.acknowledged:
            sub.acknowledged_at = sub.acknowledged_at or self.now
        if snapshot.store_product_id:
            product = self.products.get((snapshot.provider, snapshot.store_product_id))
            if product is None:
                product = self.products[(snapshot.provider, snapshot.store_product_id)] = _product_create(snapshot)
            _label_product(product, snapshot)
            sub.product = product
            sub.store_product_id = snapshot.store_product_id
        sub.environment = snapshot.environment
        if not snapshot.derived:
            sub.last_event_at = snapshot.observed_at
        if cause.kind in _STORE_CONFIRMED:
            sub.last_verified_at = self.now
        if snapshot.raw:
            sub.raw_snapshot = snapshot.raw

    def _link_user(self, sub: Subscription, snapshot: Snapshot) -> str:
        """Link the user the store names; a claim on a row that already has another user is only noted."""
        subscriber = self._resolve_subscriber(sub, snapshot)
        if subscriber is not None and sub.subscriber_id not in (None, subscriber.pk):
            # Ownership moves only through staff (subscription_link_subscriber); the claim stays visible.
            logger.warning("%s: store claims user %s, linked to subscriber id %s", sub, subscriber.external_id,
                           sub.subscriber_id)
            return f"store claims user {subscriber.external_id}; kept the linked user"
        if subscriber is not None:
            sub.subscriber = subscriber
        return ""

    def _withhold(self, sub: Subscription) -> str:
        """The store's state stands, but grants nothing when the subscription was superseded (it stays
        EXPIRED) or is a test purchase this deployment does not grant access for (INACTIVE: recorded,
        visible to staff, never entitled; billing/sandbox_purchases.py). Returns the history note."""
        if not grants_access(sub.status):
            return ""
        if sub.replaced_by_id is not None:
            sub.status = Status.EXPIRED
            return f"superseded by subscription {sub.replaced_by_id}: stays ended"
        owner = sub.subscriber.external_id if sub.subscriber_id is not None else None
        if sandbox_purchases.grants_access(sub.provider, sub.environment, owner):
            return ""
        store_status, sub.status = sub.status, Status.INACTIVE
        return sandbox_purchases.refusal_note(sub.provider, store_status)

    def status_change(self, sub: Subscription, old_status: str, occurred_at: datetime, cause: Cause, note: str,
                      *, publish_for: Subscriber | None = None) -> None:
        """A history row, and a stream event when the subscription has a user (or for `publish_for`,
        a previous owner). An orphan's changes are not published (consumers key everything on userId);
        linking it later publishes its state."""
        if publish_for is None:
            self._history(sub, old_status, sub.status, occurred_at, cause, note=note)
        subscriber = publish_for or (sub.subscriber if sub.subscriber_id is not None else None)
        if subscriber is not None:
            self.events.append((outbox.payload_draft(event_id=str(uuid.uuid4()), subscription=sub,
                                                     old_status=old_status, occurred_at=occurred_at,
                                                     subscriber=subscriber), sub, subscriber))

    def _history(self, sub: Subscription, old_status: str, new_status: str, occurred_at: datetime, cause: Cause, *,
                 note: str, ignored: bool = False, kind: str = StatusChange.Kind.STATUS) -> None:
        # An applied row carries the state now in force (copied now: a later snapshot of the batch may
        # change the row again); an ignored one changed nothing and carries none.
        state = {} if ignored else {"state_known": True, **_history_state(sub)}
        self.history.append(StatusChange(subscription=sub, old_status=old_status, new_status=new_status,
                                         occurred_at=occurred_at, cause=cause.kind, cause_ref=cause.ref,
                                         staff_user_id=cause.staff_user_id, note=note, ignored=ignored,
                                         kind=kind, **state))

    def _resolve_subscriber(self, sub: Subscription, snapshot: Snapshot) -> Subscriber | None:
        """The app's user id if the store carried it, else a store identity, else the superseded
        subscription's owner. None: keep the current link (or stay an orphan)."""
        if snapshot.user_id not in (None, ""):
            subscriber = self.subscribers[str(snapshot.user_id).strip()]
            if snapshot.identity_field:
                subscriber_set_identity(subscriber=subscriber, field=snapshot.identity_field,
                                        value=snapshot.identity_value)
            return subscriber
        if snapshot.identity_field:
            found = subscriber_by_identity(snapshot.identity_field, snapshot.identity_value)
            if found is not None:
                return found
        if sub.subscriber_id is None and snapshot.replaces:
            old = self.subs.get((snapshot.provider, snapshot.replaces)) or (
                Subscription.objects.filter(provider=snapshot.provider, provider_subscription_id=snapshot.replaces)
                .select_related("subscriber").first())
            if old is not None and old.subscriber_id is not None:
                return old.subscriber
        return None

    def _record_transactions(self, sub: Subscription, snapshot: Snapshot) -> int:
        added = 0
        for t in snapshot.transactions:
            if (sub.provider, t.provider_transaction_id) in self.recorded:
                continue
            self.recorded.add((sub.provider, t.provider_transaction_id))
            self.transactions.append(Transaction(
                provider=sub.provider, provider_transaction_id=t.provider_transaction_id, subscription=sub,
                kind=t.kind, amount_minor=ledger_amount(sub.provider, t),
                currency=(t.currency or "").upper(), occurred_at=t.occurred_at, environment=snapshot.environment,
                raw=t.raw, **ledger_details(t)))
            added += 1
        return added

    def _supersede(self, sub: Subscription, snapshot: Snapshot, cause: Cause) -> None:
        """The subscription this one replaces (Google linkedPurchaseToken) ends: it names its successor
        and takes a terminal status (EXPIRED, or the REVOKED it had), published like any status change,
        so that no list shows two live subscriptions for one purchase."""
        old = self.subs.get((snapshot.provider, snapshot.replaces))
        if old is None or old is sub or old.replaced_by_id is not None:
            return
        old.replaced_by = sub
        old_status = old.status
        if old.status not in _TERMINAL:
            old.status = Status.EXPIRED
            old.ended_at = old.ended_at or snapshot.observed_at
            old.auto_renew = False  # its successor renews, not it
        note = _join(f"replaced by {sub} (subscription {sub.pk})", cause.note)
        if old.status != old_status:
            self.status_change(old, old_status, snapshot.observed_at, cause, note)
        else:
            self._history(old, old_status, old.status, snapshot.observed_at, cause, note=note)
        self.refresh.add(old.subscriber_id)

    def _claim_recorded(self, sub: Subscription, claim_note: str) -> bool:
        return (any(h.subscription is sub and claim_note in h.note for h in self.history)
                or sub.status_changes.filter(note__contains=claim_note).exists())

    def write(self) -> None:
        """Store what changed: the subscriptions (only their changed fields), then the rows that refer
        to them, then the stream events (completed from the database as now written)."""
        changed: set[str] = set()
        dirty = []
        paying_changed: set[int | None] = set()  # users whose subscriptions started or stopped paying
        for key, sub in self.subs.items():
            original = self.original[key]
            fields = {name for name, value in _state(sub).items() if value != original[name]}
            if fields:
                changed |= fields
                sub.updated_at = self.now
                dirty.append(sub)
                if double_payments.may_start_or_end(sub.provider, fields, original["status"], sub.status):
                    paying_changed.update((sub.subscriber_id, original["subscriber_id"]))
        # One statement for all; a field that changed in another row is written with this row's own value.
        update_rows(Subscription, dirty, [*sorted(changed), "updated_at"])
        # ignore_conflicts: a concurrent writer recording the same store transaction is not an error
        Transaction.objects.bulk_create(self.transactions, ignore_conflicts=True)
        StatusChange.objects.bulk_create(self.history)
        Drift.objects.bulk_create(self.drifts)
        if self.events:
            payloads = outbox.payloads_complete([(draft, user.pk, sub.product_id) for draft, sub, user in self.events])
            rows = Outbox.objects.bulk_create([
                Outbox(event_id=payload["eventId"], subscription=sub, payload=payload)
                for payload, (_, sub, _) in zip(payloads, self.events, strict=True)])
            after_commit.publish(*(row.pk for row in rows))  # coalesced: one relay call per transaction
        after_commit.refresh(*self.refresh)  # coalesced: one batched cache refresh per transaction
        after_commit.check_double_payments(*paying_changed)  # after commit, one query per transaction


def _key(snapshot: Snapshot) -> Key:
    return snapshot.provider, snapshot.provider_subscription_id


def _key_of(sub: Subscription) -> Key:
    return sub.provider, sub.provider_subscription_id


def _state(sub: Subscription) -> dict:
    return {name: getattr(sub, name) for name in _STATE_FIELDS}


def _history_state(sub: Subscription) -> dict:
    return {name: getattr(sub, name) for name in HISTORY_STATE_FIELDS}


def _lock_or_create(keys: set[Key], *, also: set[Key] = frozenset()) -> tuple[dict[Key, Subscription], set[Key]]:
    """Every subscription of `keys`, locked, and which of them this transaction created. Missing ones
    are inserted bare (INACTIVE) with one statement; the unique constraint decides a race with a
    concurrent creator, whose row is then locked like any other. Those of `also` that exist are
    locked in the same query, never created."""
    if not keys:
        return {}, set()
    subs = _locked(keys | set(also))
    missing = sorted(keys - subs.keys())  # one order for every writer: no deadlock between inserts
    if not missing:
        return subs, set()
    now = timezone.now()
    rows = [{"provider": p, "provider_subscription_id": i, "status": Status.INACTIVE, "store_product_id": "",
             "period_unit": "", "currency": "", "environment": Subscription._meta.get_field("environment").default,
             "created_at": now, "updated_at": now, "raw_snapshot": {}} for p, i in missing]
    created = set(insert_rows_ignoring_conflict(Subscription, rows, conflict=("provider", "provider_subscription_id"),
                                                returning=("provider", "provider_subscription_id")))
    subs.update(_locked(set(missing)))
    return subs, created


def _locked(keys: set[Key]) -> dict[Key, Subscription]:
    """The subscriptions of `keys` that exist, locked in id order (their users and products read along)."""
    by_provider: dict[str, list[str]] = {}
    for provider, provider_id in keys:
        by_provider.setdefault(provider, []).append(provider_id)
    match = Q()
    for provider, ids in by_provider.items():
        match |= Q(provider=provider, provider_subscription_id__in=ids)
    rows = (Subscription.objects.select_for_update(of=("self",)).select_related("subscriber", "product")
            .filter(match).order_by("pk"))
    return {_key_of(sub): sub for sub in rows}


def _not_stale(snapshots: list[Snapshot], subs: dict[Key, Subscription]) -> list[Snapshot]:
    """The snapshots that will be applied (not stale), by the write path's own rule, replayed in order."""
    newest = {key: sub.last_event_at for key, sub in subs.items()}
    applied = []
    for s in snapshots:
        last = newest[_key(s)]
        if last is not None and s.observed_at < last:
            continue
        applied.append(s)
        if not s.derived:
            newest[_key(s)] = s.observed_at
    return applied


def _products_for(snapshots: list[Snapshot], subs: dict[Key, Subscription]) -> dict[Key, Product]:
    """The catalogue entries of the snapshots' store products, by (provider, store product id)."""
    products = {(sub.provider, sub.store_product_id): sub.product for sub in subs.values() if sub.product_id}
    wanted = {(s.provider, s.store_product_id) for s in snapshots if s.store_product_id} - products.keys()
    if wanted:
        match = Q()
        for provider, store_product_id in wanted:
            match |= Q(provider=provider, store_product_id=store_product_id)
        products.update(((p.provider, p.store_product_id), p) for p in Product.objects.filter(match))
    return products


def _product_create(snapshot: Snapshot) -> Product:
    """An unknown store product is added unmapped (it grants nothing until staff map it) so that it
    shows up in the admin."""
    key = {"provider": snapshot.provider, "store_product_id": snapshot.store_product_id}
    try:
        with transaction.atomic():
            return Product.objects.create(**key, period_unit=snapshot.period_unit or "",
                                          period_value=snapshot.period_value,
                                          currency=(snapshot.currency or "").upper(),
                                          label=snapshot.product_label[:255])
    except IntegrityError:  # a concurrent writer added it first
        return Product.objects.get(**key)


def _label_product(product: Product, snapshot: Snapshot) -> None:
    if snapshot.product_label and not product.label:  # a label staff chose is never overwritten
        Product.objects.filter(pk=product.pk, label="").update(label=snapshot.product_label[:255])
        product.label = snapshot.product_label[:255]


def _recorded_transactions(snapshots: list[Snapshot]) -> set[tuple[str, str]]:
    """(provider, store transaction id) of the snapshots' transactions already recorded."""
    by_provider: dict[str, set[str]] = {}
    for s in snapshots:
        by_provider.setdefault(s.provider, set()).update(t.provider_transaction_id for t in s.transactions)
    match = Q()
    for provider, ids in by_provider.items():
        if ids:
            match |= Q(provider=provider, provider_transaction_id__in=list(ids))
    if not match:
        return set()
    return set(Transaction.objects.filter(match).values_list("provider", "provider_transaction_id"))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
