"""The app's URLs plus the baseline of bench/export.py: the plain Django way to stream a CSV
(`.values_list().iterator()` + `csv.writer`, one yield per row, Django's documented pattern) over the
same rows and fields as GET /api/finance/transactions. Bench only: no authentication."""

import csv
from datetime import UTC, datetime, time, timedelta
from itertools import chain

from django.http import StreamingHttpResponse
from django.urls import path
from django.utils.dateparse import parse_date

from billing.models import Transaction
from config.urls import urlpatterns as app_urlpatterns
from finance.transactions import COLUMNS, HEADER


class _Echo:
    def write(self, value):
        return value


def baseline_export(request):
    start = datetime.combine(parse_date(request.GET["from"]), time.min, tzinfo=UTC)
    end = datetime.combine(parse_date(request.GET["to"]) + timedelta(days=1), time.min, tzinfo=UTC)
    fields = [p for column in COLUMNS for p in column.paths]
    rows = (Transaction.objects.filter(occurred_at__gte=start, occurred_at__lt=end, environment="production")
            .order_by("occurred_at", "id").values_list(*fields).iterator(chunk_size=2000))
    writer = csv.writer(_Echo())
    return StreamingHttpResponse(chain([writer.writerow(HEADER)], (writer.writerow(row) for row in rows)),
                                 content_type="text/csv")


urlpatterns = [path("bench/baseline-export", baseline_export), *app_urlpatterns]
