"""The App Store's own staff actions (billing/providers/apple/admin.py) and the automatic answer to a
CONSUMPTION_REQUEST. Each goes through the App Store Server API (client.py); what changes a subscription
is re-read from Apple and applied through billing.apply with the staff member and reason, and every
action is recorded in the audit log.

- extend the renewal date (Apple's "Extend a Subscription Renewal Date": 1 to 90 days, a reason code,
  a request identifier; at most two extensions per subscription a year);
- answer a CONSUMPTION_REQUEST (a user asked Apple for a refund; Apple gives 12 hours) with consumption
  information: by staff on a form, or automatically (settings APPLE_CONSUMPTION_*);
- look up an order id from an App Store receipt e-mail: the transactions of that order and the
  subscriptions we hold for them (a read, nothing changes)."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from appstoreserverlibrary.models.ConsumptionRequest import ConsumptionRequest
from appstoreserverlibrary.models.DeliveryStatus import DeliveryStatus
from appstoreserverlibrary.models.RefundPreference import RefundPreference
from django.conf import settings
from django.utils import timezone

from audit.records import record
from billing.apply import ApplyResult
from billing.models import Subscription
from billing.providers import registry
from billing.providers.base import ProviderError
from billing.providers.common import datetime_from_millis
from billing.providers.staff_changes import (
    FIX_PERMISSION,
    StoreActionError,
    apply_after_store_action,
    ensure_allowed,
    ensure_provider,
    staff_cause,
)
from billing.snapshots import Provider
from billing.statuses import Status

from . import auth, client

logger = logging.getLogger(__name__)

MAX_EXTEND_DAYS = 90
# Apple's extendReasonCode values (the library's ExtendReasonCode).
EXTEND_REASONS = {0: "Undeclared", 1: "Customer satisfaction", 2: "Other", 3: "Service issue or outage"}
DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
REFUND_PREFERENCES = tuple(p.value for p in RefundPreference)


def _apple(subscription: Subscription) -> None:
    ensure_provider(subscription, Provider.APPLE, "App Store")


def _apple_environment(subscription: Subscription) -> str:
    return auth.apple_environment_of(subscription.environment)


def _reread(subscription: Subscription):
    return lambda: registry.get_adapter(Provider.APPLE).fetch(subscription)


# --- Extend the renewal date ----------------------------------------------------------------------

def subscription_extend_at_apple(*, subscription: Subscription, days: int, reason_code: int, reason: str,
                                 staff_user) -> ApplyResult:
    """The current period ends `days` later, free for the user; Apple's state re-read and applied (the
    new expiry). Each request carries a new request identifier (kept in the audit entry)."""
    _apple(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    if not isinstance(days, int) or not 1 <= days <= MAX_EXTEND_DAYS:
        raise StoreActionError(f"Apple extends by 1 to {MAX_EXTEND_DAYS} days.")
    if reason_code not in EXTEND_REASONS:
        raise StoreActionError(f"The reason code must be one of {', '.join(map(str, EXTEND_REASONS))}.")
    cause = staff_cause(reason, staff_user, f"renewal date extended by {days} days at Apple")
    request_identifier = str(uuid.uuid4())
    answer = client.subscription_extend_renewal_date(
        subscription.provider_subscription_id, days=days, reason_code=reason_code,
        request_identifier=request_identifier, apple_environment=_apple_environment(subscription))
    if answer.success is False:
        raise StoreActionError(f"Apple did not extend the renewal date (request {request_identifier}).")
    details = {"provider": "apple", "days": days, "reason_code": reason_code,
               "request_identifier": request_identifier, "expires_before": _iso(subscription.expires_at),
               "effective_date": _iso(datetime_from_millis(answer.effectiveDate))}
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_extend",
                                    reason=reason, cause=cause, details=details, reread=_reread(subscription))


# --- Answer a CONSUMPTION_REQUEST -----------------------------------------------------------------

@dataclass(frozen=True)
class ConsumptionAnswer:
    """What Apple's ConsumptionRequest (v2) carries: consent (must be true, or Apple answers 400),
    whether a sample or trial was offered, whether the purchase was delivered and works, how much of it
    was used (milliunits, 0 to 100000; optional) and the outcome we prefer (optional)."""

    customer_consented: bool
    sample_content_provided: bool
    delivery_status: str
    consumption_percentage: int | None = None
    refund_preference: str = ""

    def request(self) -> ConsumptionRequest:
        if self.customer_consented is not True:
            raise StoreActionError("Apple takes consumption information only with the customer's consent.")
        if self.delivery_status not in DELIVERY_STATUSES:
            raise StoreActionError(f"The delivery status must be one of {', '.join(DELIVERY_STATUSES)}.")
        if self.consumption_percentage is not None and not 0 <= self.consumption_percentage <= 100_000:
            raise StoreActionError("The consumption percentage is in milliunits: 0 to 100000.")
        if self.refund_preference and self.refund_preference not in REFUND_PREFERENCES:
            raise StoreActionError(f"The refund preference must be one of {', '.join(REFUND_PREFERENCES)}.")
        return ConsumptionRequest(
            customerConsented=True, sampleContentProvided=self.sample_content_provided,
            deliveryStatus=DeliveryStatus(self.delivery_status), consumptionPercentage=self.consumption_percentage,
            refundPreference=RefundPreference(self.refund_preference) if self.refund_preference else None)

    def as_details(self) -> dict:
        return {"customer_consented": self.customer_consented, "sample_content_provided": self.sample_content_provided,
                "delivery_status": self.delivery_status, "consumption_percentage": self.consumption_percentage,
                "refund_preference": self.refund_preference}


def consumption_answer_at_apple(*, subscription: Subscription, transaction_id: str, answer: ConsumptionAnswer,
                                reason: str, staff_user) -> ApplyResult:
    """Staff answer the CONSUMPTION_REQUEST about `transaction_id` (one of this subscription's). Nothing
    changes until Apple decides (REFUND or REFUND_DECLINED); the state is re-read all the same."""
    _apple(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    transaction_id = (transaction_id or "").strip()
    if not transaction_id.isdigit():
        raise StoreActionError("The transaction id is the number the CONSUMPTION_REQUEST names.")
    request = answer.request()
    cause = staff_cause(reason, staff_user, f"consumption information sent to Apple for transaction {transaction_id}")
    client.consumption_send(transaction_id, request=request, apple_environment=_apple_environment(subscription))
    details = {"provider": "apple", "transaction_id": transaction_id, **answer.as_details()}
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_consumption_answer",
                                    reason=reason, cause=cause, details=details, reread=_reread(subscription))


def consumption_answer_from_what_we_know(subscription: Subscription | None, transaction: dict) -> ConsumptionAnswer:
    """The automatic answer. Delivered when the purchase reached a user here (linked: its access was
    granted), UNDELIVERED_OTHER for an orphan (nobody got access). Sampled when the app offers samples
    (setting) or this subscription had a free trial. Consumed: the share of the transaction's period
    elapsed by now. The refund preference from the setting (empty: none)."""
    delivered = subscription is not None and subscription.subscriber_id is not None
    had_trial = subscription is not None and subscription.status_changes.filter(new_status=Status.TRIAL).exists()
    start, end = datetime_from_millis(transaction.get("purchaseDate")), datetime_from_millis(
        transaction.get("expiresDate"))
    percentage = None
    if delivered and start and end and end > start:
        share = (min(timezone.now(), end) - start) / (end - start)
        percentage = max(0, min(100_000, round(share * 100_000)))
    return ConsumptionAnswer(
        customer_consented=bool(settings.APPLE_CONSUMPTION_CUSTOMER_CONSENTED),
        sample_content_provided=bool(settings.APPLE_CONSUMPTION_SAMPLE_CONTENT_PROVIDED) or had_trial,
        delivery_status="DELIVERED" if delivered else "UNDELIVERED_OTHER", consumption_percentage=percentage,
        refund_preference=settings.APPLE_CONSUMPTION_REFUND_PREFERENCE or "")


def consumption_auto_answer(payload: dict, _results=None) -> str:
    """A CONSUMPTION_REQUEST's follow-up (the webhook handler queues it after the empty apply): the
    automatic answer when APPLE_CONSUMPTION_AUTO_ANSWER is on. Never fails the notification: what did not
    go out is logged, and staff can still answer from the form. Returns what was done."""
    if not settings.APPLE_CONSUMPTION_AUTO_ANSWER:
        return ""
    transaction = payload.get("transaction") or {}
    transaction_id, original_id = transaction.get("transactionId"), transaction.get("originalTransactionId")
    if not transaction_id:
        return ""
    if not settings.APPLE_CONSUMPTION_CUSTOMER_CONSENTED:
        logger.warning("CONSUMPTION_REQUEST for apple transaction %s not answered automatically: "
                       "APPLE_CONSUMPTION_CUSTOMER_CONSENTED is off (Apple takes no answer without consent)",
                       transaction_id)
        return ""
    subscription = Subscription.objects.filter(provider=Provider.APPLE,
                                               provider_subscription_id=str(original_id or "")).first()
    answer = consumption_answer_from_what_we_know(subscription, transaction)
    apple_environment = transaction.get("environment") or settings.APPLE_ENVIRONMENT
    try:
        client.consumption_send(str(transaction_id), request=answer.request(), apple_environment=apple_environment)
    except (ProviderError, StoreActionError) as exc:
        logger.warning("automatic answer to the CONSUMPTION_REQUEST for apple transaction %s failed: %s",
                       transaction_id, exc)
        return ""
    record(actor=None, action="store_consumption_answer", reason="automatic answer (APPLE_CONSUMPTION_AUTO_ANSWER)",
           subscriber=subscription.subscriber if subscription else None,
           subscription_id=subscription.pk if subscription else None, target=f"apple.transaction:{transaction_id}",
           details={"provider": "apple", "transaction_id": str(transaction_id), "automatic": True,
                    **answer.as_details()})
    logger.info("CONSUMPTION_REQUEST for apple transaction %s answered automatically (%s)", transaction_id,
                answer.delivery_status)
    return f"answered automatically ({answer.delivery_status})"


# --- Look up an order id ----------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderTransaction:
    transaction_id: str
    original_transaction_id: str
    product_id: str
    purchased_at: datetime | None
    expires_at: datetime | None
    environment: str
    subscription: Subscription | None  # the one we hold for it


def order_look_up(*, order_id: str) -> list[OrderTransaction]:
    """The transactions of the order a receipt e-mail names (its "Order ID", e.g. MK5TTTVWJH), each
    verified and paired with the subscription we hold. Production first, then the sandbox when it is
    allowed; empty when Apple knows no such order for this app."""
    order_id = (order_id or "").strip().upper()
    if not order_id.isalnum() or len(order_id) > 64:
        raise StoreActionError("An order id is the letters and digits after 'Order ID' on the receipt e-mail.")
    environments = [settings.APPLE_ENVIRONMENT]
    if settings.APPLE_ENVIRONMENT == "Production" and settings.APPLE_ALLOW_SANDBOX:
        environments.append("Sandbox")
    for apple_environment in environments:
        response = client.order_look_up(order_id, apple_environment=apple_environment)
        if response.rawStatus != 0 or not response.signedTransactions:
            continue
        found = []
        for signed in response.signedTransactions:
            claims = auth.verify_transaction(signed, apple_environment=apple_environment)
            original = str(claims.get("originalTransactionId") or "")
            found.append(OrderTransaction(
                transaction_id=str(claims.get("transactionId") or ""), original_transaction_id=original,
                product_id=claims.get("productId") or "", purchased_at=datetime_from_millis(claims.get("purchaseDate")),
                expires_at=datetime_from_millis(claims.get("expiresDate")), environment=apple_environment,
                subscription=Subscription.objects.filter(provider=Provider.APPLE, provider_subscription_id=original)
                .select_related("subscriber").first()))
        return found
    return []


def _iso(value) -> str | None:
    return value.isoformat() if value else None
