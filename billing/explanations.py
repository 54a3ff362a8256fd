"""Statuses in plain language: a label and one line that says why and until when (docs/support.md
"Statuses in plain language"), for the admin, the support timeline and `GET /api/subscriptions/<id>`.

`explain()` is pure: it reads a Subscription and the latest history and money rows it is handed.
`explain_subscription()` does the two small queries that fetch them (the latest applied status change
and the latest refund or chargeback). Times are absolute UTC with a relative hint ("in 2 days")."""

from dataclasses import dataclass
from datetime import UTC, datetime

from .models import StatusChange, Subscription, Transaction
from .snapshots import CauseKind, Provider, TransactionKind
from .statuses import Status, grants_access, is_entitled, lapsed_status

LABELS = {
    Status.INACTIVE: "Inactive",
    Status.TRIAL: "Free trial",
    Status.ACTIVE: "Active",
    Status.CANCELED: "Canceled (access until the period ends)",
    Status.ON_GRACE: "In grace period",
    Status.ON_HOLD: "On hold",
    Status.PAUSED: "Paused",
    Status.EXPIRED: "Expired",
    Status.REVOKED: "Revoked",
}

# Who keeps or ends access, in a sentence ("Google keeps access until …").
STORE_NAMES = {Provider.STRIPE: "Stripe", Provider.APPLE: "Apple", Provider.GOOGLE: "Google",
               Provider.XSOLLA: "Xsolla", Provider.MANUAL: "staff"}
# Where a user fixes a payment or resumes, named as the user knows it.
STORE_PLACES = {Provider.STRIPE: "on the web (Stripe)", Provider.APPLE: "in the App Store",
                Provider.GOOGLE: "in Google Play", Provider.XSOLLA: "in the Xsolla web shop",
                Provider.MANUAL: "by staff"}


@dataclass(frozen=True)
class Explanation:
    status: str  # as it stands now: an entitled status past its end reads EXPIRED
    label: str
    line: str  # the label, then why and until when

    def __str__(self):
        return self.line


# --- times -------------------------------------------------------------------------------------

def absolute(when: datetime) -> str:
    """3 Dec 2026 10:00 UTC."""
    return f"{when.astimezone(UTC):%-d %b %Y %H:%M} UTC"


def relative(when: datetime, now: datetime) -> str:
    """"in 2 days", "3 hours ago", "just now": the largest whole unit, rounded down."""
    seconds = (when - now).total_seconds()
    future, seconds = seconds > 0, abs(seconds)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"  # not reached


def when(moment: datetime | None, now: datetime) -> str:
    """Both: "10 Dec 2026 10:00 UTC (in 2 days)"; "an unknown time" when we do not hold it."""
    if moment is None:
        return "an unknown time"
    return f"{absolute(moment)} ({relative(moment, now)})"


# --- the line ----------------------------------------------------------------------------------

def explain(sub: Subscription, *, now: datetime, change: StatusChange | None = None,
            refund: Transaction | None = None, staff_name: str = "") -> Explanation:
    """Why `sub` is in its status, and until when. `change`: the latest applied StatusChange (how it got
    there; None when unknown); `refund`: its latest refund or chargeback; `staff_name`: who, when the
    change was a staff member's."""
    status = sub.status
    if grants_access(status) and not is_entitled(status, sub.expires_at, sub.grace_until, now):
        status = lapsed_status(status)  # what the check API answers: past its end is no access
        lapsed = True
    else:
        lapsed = False
    store = STORE_NAMES.get(sub.provider, sub.provider)
    since = change.occurred_at if change is not None and change.new_status == sub.status else None
    why = _LINES[status](sub, now=now, store=store, since=since, change=change, refund=refund,
                         staff_name=staff_name, lapsed=lapsed)
    label = LABELS[status]
    if status == Status.REVOKED and refund is not None and not _by_staff(sub, change):
        label = "Charged back" if refund.kind == TransactionKind.CHARGEBACK else "Refunded"
    line = f"{label}: {why}"
    if sub.replaced_by_id is not None:
        line += " Superseded by another subscription (an upgrade, downgrade or resubscription): it grants nothing."
    return Explanation(status=str(status), label=label, line=line)


def _inactive(sub, *, now, store, since, **_):
    return (f"the purchase at {store} has not started a paid or trial period yet (e.g. the first payment is "
            f"pending); no access. Created {when(sub.created_at, now)}.") if sub.created_at else \
        f"the purchase at {store} has not started a paid or trial period yet; no access."


def _trial(sub, *, now, store, since, **_):
    start = f"started {when(since or sub.started_at, now)}; " if (since or sub.started_at) else ""
    if sub.expires_at is None:
        return f"{start}no end date known."
    if sub.auto_renew is False:
        return f"{start}ends {when(sub.expires_at, now)} and will not convert (auto-renew is off)."
    return f"{start}the first payment is due {when(sub.expires_at, now)}; access until then."


def _active(sub, *, now, store, since, staff_name, **_):
    if sub.provider == Provider.MANUAL:
        who = f" by {staff_name}" if staff_name else ""
        if sub.expires_at is None:
            return f"a staff grant{who}, open-ended (until revoked)."
        return f"a staff grant{who}, access until {when(sub.expires_at, now)}."
    if sub.expires_at is None:
        return f"paid at {store}; no end date known."
    if sub.auto_renew is False:
        return f"paid at {store} until {when(sub.expires_at, now)}; auto-renew is off, so it ends then."
    return f"paid at {store} until {when(sub.expires_at, now)}; it renews automatically then."


def _canceled(sub, *, now, store, since, **_):
    on = sub.canceled_at or since
    canceled = f"canceled {when(on, now)}" if on else "canceled"
    return f"{canceled}, it will not renew; {store} keeps access until {when(sub.access_ends_at, now)}."


def _on_grace(sub, *, now, store, since, **_):
    failed = f"the renewal payment failed {when(since, now)}" if since else "the renewal payment failed"
    return f"{failed}; {store} keeps access until {when(sub.access_ends_at, now)} while it retries."


def _on_hold(sub, *, now, store, since, **_):
    failed = f"since {when(since, now)}" if since else "now"
    return (f"the renewal payment failed and the grace period is over: no access {failed}, until the user "
            f"fixes the payment method {STORE_PLACES.get(sub.provider, 'at the store')}.")


def _paused(sub, *, now, store, since, **_):
    paused = f"since {when(since, now)}" if since else "for now"
    resume = (f"; it resumes {when(sub.current_period_end, now)} unless the user resumes it sooner"
              if sub.current_period_end and sub.current_period_end > now else "")
    return f"the user paused it at {store}: no access {paused}{resume}."


def _expired(sub, *, now, store, since, change, staff_name, lapsed, **_):
    ended = sub.access_ends_at if lapsed else (sub.ended_at or since or sub.access_ends_at)
    before = change.old_status if change is not None and change.new_status == sub.status else ""
    if lapsed:
        why = (" The stored status still says it is entitled; the expiry sweep will mark it EXPIRED "
               "(check the store if a renewal is missing).")
    elif before in (Status.ON_HOLD, Status.ON_GRACE):
        why = " The renewal payment was never recovered."
    elif before == Status.CANCELED:
        why = " It had been canceled and did not renew."
    elif sub.provider == Provider.MANUAL:
        why = " The staff grant ran out."
    else:
        why = ""
    return f"access ended {when(ended, now)}; no access.{why}"


def _by_staff(sub, change) -> bool:
    return change is not None and change.cause == CauseKind.STAFF and change.new_status == sub.status


def _revoked(sub, *, now, store, since, change, refund, staff_name, **_):
    if _by_staff(sub, change):
        who = staff_name or "a staff member"
        why = f" ({change.note})" if change.note else ""
        return f"revoked by {who} {when(change.occurred_at, now)}{why}: access ended at once."
    if refund is not None:
        what = "charged back at" if refund.kind == TransactionKind.CHARGEBACK else "refunded by"
        return f"{what} {store} {when(refund.occurred_at, now)}: access revoked."
    return f"revoked by {store} {when(since, now)}: access ended at once."


_LINES = {Status.INACTIVE: _inactive, Status.TRIAL: _trial, Status.ACTIVE: _active, Status.CANCELED: _canceled,
          Status.ON_GRACE: _on_grace, Status.ON_HOLD: _on_hold, Status.PAUSED: _paused, Status.EXPIRED: _expired,
          Status.REVOKED: _revoked}


# --- with its rows -----------------------------------------------------------------------------

def explain_subscription(sub: Subscription, *, now: datetime) -> Explanation:
    """`explain` with the rows it reads: two indexed queries (the latest applied change, the latest
    refund or chargeback)."""
    change = (StatusChange.objects.filter(subscription=sub, ignored=False).select_related("staff_user")
              .order_by("-recorded_at", "-id").first())
    refund = None
    if sub.status == Status.REVOKED:
        refund = (Transaction.objects.filter(subscription=sub, kind__in=TransactionKind.OUTGOING)
                  .order_by("-occurred_at", "-id").first())
    staff_name = change.staff_user.get_username() if change is not None and change.staff_user else ""
    return explain(sub, now=now, change=change, refund=refund, staff_name=staff_name)
