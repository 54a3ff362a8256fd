"""A customer's access request: everything we hold about them as one JSON document (`manage.py
export_subscriber`). Every column of every row that names them (privacy/holdings.py), raw webhook
bodies and headers included; a body is text when it is UTF-8, else base64."""

import base64
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from accounts.models import Subscriber

from .holdings import holdings_of

FORMAT = "billing-service subscriber export v1"


def _row(obj, *, exclude: tuple[str, ...] = ()) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname not in exclude}


def _body(raw) -> dict:
    data = bytes(raw or b"")
    try:
        return {"encoding": "utf-8", "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "text": base64.b64encode(data).decode()}


def subscriber_export(subscriber: Subscriber) -> dict:
    h = holdings_of(subscriber)
    history, ledger = {}, {}
    for change in h.status_changes:
        history.setdefault(change.subscription_id, []).append(_row(change))
    for txn in h.transactions:
        ledger.setdefault(txn.subscription_id, []).append(_row(txn))
    return {
        "format": FORMAT,
        "exported_at": timezone.now(),
        "subscriber": _row(subscriber),  # the app's user id, e-mail and every store identity
        "subscriptions": [{**_row(sub), "status_history": history.get(sub.pk, []),
                           "transactions": ledger.get(sub.pk, [])} for sub in h.subscriptions],
        "double_payments": [_row(d) for d in h.double_payments],
        "notes": [_row(n) for n in h.notes],
        "audit_entries": [_row(e) for e in h.audit_entries],
        "stream_events": [_row(o) for o in h.outbox],
        "outgoing_webhook_events": [_row(e) for e in h.outgoing_events],
        "webhook_events": [{**_row(e, exclude=("body",)), "body": _body(e.body)} for e in h.webhook_events],
        "admin_log": [_row(e) for e in h.admin_log],
    }


def export_json(subscriber: Subscriber) -> str:
    return json.dumps(subscriber_export(subscriber), cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
