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

def on(moment: datetime | None, now: datetime) -> str:
    """"on 3 Dec 2026 10:00 UTC (5 days ago)"."""
    return f"on {when(moment, now)}" if moment is not None else "at a time we do not hold"


def explain(sub: Subscription, *, now: datetime, change: StatusChange | None = None,
            refund: Transaction | None = None, staff_name: str = "") -> Explanation:
    """Why `sub` is in its status, and until when. `change`: the latest applied StatusChange (how it got
    there; None when unknown); `refund`: its latest refund or chargeback; `staff_name`: who, when the
    change was a staff member's."""
    status = sub.status
    lapsed = grants_access(status) and not is_entitled(status, sub.expires_at, sub.grace_until, now)
    if lapsed:
        status = lapsed_status(status)  # what the check API answers: past its end is no access
    store = STORE_NAMES.get(sub.provider, sub.provider)
    since = change.occurred_at if change is not None and change.new_status == sub.status else None
    label, line = _LINES[status](sub, now=now, store=store, since=since, change=change, refund=refund,
                                 staff_name=staff_name, lapsed=lapsed)
    if sub.replaced_by_id is not None:
        line += " Superseded by another subscription (an upgrade, downgrade or resubscription): it grants nothing."
    return Explanation(status=str(status), label=label, line=line)


def _says(status: str, why: str) -> tuple[str, str]:
    return LABELS[status], f"{LABELS[status]}: {why}"


def _inactive(sub, *, now, store, **_):
    created = f" Created {on(sub.created_at, now)}." if sub.created_at else ""
    return _says(Status.INACTIVE, f"the purchase at {store} has not started a paid or trial period (e.g. the "
                                  f"first payment is pending or was declined); no access.{created}")


def _trial(sub, *, now, store, since, **_):
    started = since or sub.started_at
    start = f"started {on(started, now)}; " if started else ""
    if sub.expires_at is None:
        why = f"{start}no end date known."
    elif sub.auto_renew is False:
        why = f"{start}ends {on(sub.expires_at, now)} and will not convert to a paid period (auto-renew is off)."
    else:
        why = f"{start}{store} takes the first payment {on(sub.expires_at, now)}; access until then."
    return _says(Status.TRIAL, why)


def _active(sub, *, now, store, staff_name, **_):
    if sub.provider == Provider.MANUAL:
        who = f" by {staff_name}" if staff_name else ""
        if sub.expires_at is None:
            return _says(Status.ACTIVE, f"a staff grant{who}, open-ended (until revoked).")
        return _says(Status.ACTIVE, f"a staff grant{who}; access until {when(sub.expires_at, now)}.")
    if sub.expires_at is None:
        return _says(Status.ACTIVE, f"paid at {store}; no end date known.")
    if sub.auto_renew is False:
        return _says(Status.ACTIVE, f"paid at {store} until {when(sub.expires_at, now)}; auto-renew is off, "
                                    f"so it ends then.")
    return _says(Status.ACTIVE, f"paid at {store} until {when(sub.expires_at, now)}; {store} renews it then.")


def _canceled(sub, *, now, store, since, **_):
    canceled_on = sub.canceled_at or since
    canceled = f"canceled {on(canceled_on, now)}" if canceled_on else "canceled"
    return _says(Status.CANCELED, f"{canceled}, it will not renew; {store} keeps access until "
                                  f"{when(sub.access_ends_at, now)}.")


def _on_grace(sub, *, now, store, since, **_):
    failed = f"the renewal payment failed {on(since, now)}" if since else "the renewal payment failed"
    return _says(Status.ON_GRACE, f"{failed}; {store} keeps access until {when(sub.access_ends_at, now)} "
                                  f"while it retries.")


def _on_hold(sub, *, now, store, since, **_):
    held = f"since {when(since, now)}" if since else "now"
    return _says(Status.ON_HOLD, f"the renewal payment failed and no grace period is left: no access {held}, "
                                 f"until the user fixes the payment method "
                                 f"{STORE_PLACES.get(sub.provider, 'at the store')}.")


def _paused(sub, *, now, store, since, **_):
    paused = f"since {when(since, now)}" if since else "for now"
    resume = (f"; it resumes {on(sub.current_period_end, now)} unless the user resumes it sooner"
              if sub.current_period_end and sub.current_period_end > now else "")
    return _says(Status.PAUSED, f"the user paused it at {store}: no access {paused}{resume}.")


def _expired(sub, *, now, store, since, change, lapsed, **_):
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
    return _says(Status.EXPIRED, f"access ended {on(ended, now)}; no access.{why}")


def _by_staff(sub, change) -> bool:
    return change is not None and change.cause == CauseKind.STAFF and change.new_status == sub.status


def _revoked(sub, *, now, store, since, change, refund, staff_name, **_):
    if _by_staff(sub, change):
        who = staff_name or "a staff member"
        why = f" ({change.note})" if change.note else ""
        return _says(Status.REVOKED, f"revoked by {who} {on(change.occurred_at, now)}{why}: access ended at once.")
    if refund is not None:
        if refund.kind == TransactionKind.CHARGEBACK:
            return "Charged back", f"Charged back at {store} {on(refund.occurred_at, now)}: access revoked."
        return "Refunded", f"Refunded by {store} {on(refund.occurred_at, now)}: access revoked."
    return _says(Status.REVOKED, f"revoked by {store} {on(since, now)}: access ended at once.")


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
