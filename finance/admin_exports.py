"""The admin's "Export CSV" of the Transactions list: every row the list's current filters, search and
date drill-down select (not one page), streamed in ledger order with the export's columns (finance/
transactions.py). Staff with `billing.export_finance` only: others see no link and get 403.

The list is billing's (billing/admin/ledgers.py); finance sits on top and billing never imports it, so
the export is one of the list's tools (billing/admin/changelist_tools.py), added from FinanceConfig.ready,
at /admin/billing/transaction/export/."""

import logging

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest
from django.utils import timezone

from billing.admin.changelist_tools import ChangelistTool

from .api import streamed_export
from .streaming import moment, queryset_chunks
from .transactions import COLUMNS, ORDER

logger = logging.getLogger(__name__)

PERMISSION = "billing.export_finance"


def export_transactions_csv(model_admin, request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("Exporting finance data needs the 'Can export finance data' permission.")
    try:
        queryset = model_admin.get_changelist_instance(request).get_queryset(request)
    except IncorrectLookupParameters:
        return HttpResponseBadRequest("These filters are not valid for the transactions list.")
    # Rows recorded after the export started are left out, as in the command and the API.
    now = timezone.now()
    queryset = queryset.filter(recorded_at__lt=now).order_by(*ORDER)
    logger.info("finance export of transactions by %s: %s", request.user, request.GET.urlencode() or "all rows")
    return streamed_export(queryset_chunks("csv", COLUMNS, queryset), fmt="csv",
                           filename=f"transactions_{now:%Y%m%dT%H%M%SZ}.csv",
                           headers={"X-Recorded-Before": moment(now)})


TOOL = ChangelistTool(slug="export", label="Export CSV", view=export_transactions_csv, permission=PERMISSION)


def install() -> None:
    from billing.admin.ledgers import TransactionAdmin  # the admin's modules load after the apps

    if TOOL not in TransactionAdmin.changelist_tools:
        TransactionAdmin.changelist_tools.append(TOOL)
