"""The Subscriptions admin's "Export CSV": the list as filtered and searched, each subscription as it
stands now (the columns of manage.py export_subscriptions), streamed. Staff with billing.export_finance
only. Added to billing's admin from FinanceConfig.ready (billing never imports finance)."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.utils import timezone

from billing.admin.changelist_tools import ChangelistTool
from billing.history import state_of_subscription

from .streaming import CONTENT_TYPES, chunks
from .subscription_exports import HEADER, subscription_rows

logger = logging.getLogger(__name__)

PERMISSION = "billing.export_finance"


def export_subscriptions_csv(model_admin, request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    listed = model_admin.get_changelist_instance(request).get_queryset(request)
    subscriptions = listed.select_related("subscriber", "product").order_by("pk").iterator(chunk_size=2000)
    logger.info("subscriptions export by %s: %s", request.user.get_username(), request.GET.urlencode() or "all")
    response = StreamingHttpResponse(
        chunks("csv", HEADER, subscription_rows((state_of_subscription(s) for s in subscriptions), now)),
        content_type=CONTENT_TYPES["csv"])
    response["Content-Disposition"] = f'attachment; filename="subscriptions-{now:%Y%m%dT%H%M%SZ}.csv"'
    return response


TOOL = ChangelistTool(slug="export", label="Export CSV", view=export_subscriptions_csv, permission=PERMISSION)


def install() -> None:
    from billing.admin.subscriptions import SubscriptionAdmin  # the admin's modules load after the apps

    if TOOL not in SubscriptionAdmin.changelist_tools:
        SubscriptionAdmin.changelist_tools.append(TOOL)
