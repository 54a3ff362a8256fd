"""The admin's "Export CSV" of the Transactions list: every row the list's current filters, search and
date drill-down select (not one page), streamed in ledger order with the export's columns (finance/
transactions.py). Staff with `billing.export_finance` only: others see no button
(templates/admin/billing/transaction/change_list_object_tools.html) and get 403 here.

The list is billing's (billing/admin/ledgers.py); finance sits on top and billing never imports it, so
the route lives in finance/urls.py (under admin/, before the admin's catch-all) and asks the admin site
for the registered TransactionAdmin to rebuild the list's queryset exactly as the list does."""

import logging

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest
from django.utils import timezone

from billing.models import Transaction

from .api import streamed_export
from .streaming import moment, queryset_chunks
from .transactions import COLUMNS, ORDER

logger = logging.getLogger(__name__)

PERMISSION = "billing.export_finance"


def filtered_transactions(request):
    """The Transactions changelist's rows for this request's query string (filters, search, drill-down)."""
    model_admin = admin.site.get_model_admin(Transaction)
    changelist = model_admin.get_changelist_instance(request)
    return changelist.get_queryset(request)


def _export(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("Exporting finance data needs the 'Can export finance data' permission.")
    try:
        queryset = filtered_transactions(request)
    except IncorrectLookupParameters:
        return HttpResponseBadRequest("These filters are not valid for the transactions list.")
    # Rows recorded after the export started are left out, as in the command and the API.
    now = timezone.now()
    queryset = queryset.filter(recorded_at__lt=now).order_by(*ORDER)
    logger.info("finance export of transactions by %s: %s", request.user, request.GET.urlencode() or "all rows")
    return streamed_export(queryset_chunks("csv", COLUMNS, queryset), fmt="csv",
                           filename=f"transactions_{now:%Y%m%dT%H%M%SZ}.csv",
                           headers={"X-Recorded-Before": moment(now)})


# The admin's own wrapper: signed-in active staff (others go to the admin's login page), never cached.
transactions_export = admin.site.admin_view(_export)
