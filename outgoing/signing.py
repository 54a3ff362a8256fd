"""The signature header, Stripe's scheme: `X-Billing-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with the endpoint's secret>`. The timestamp lets a receiver refuse replays; the
verification a receiver runs is the snippet in docs/events.md ("Outgoing webhooks")."""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Billing-Signature"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"
