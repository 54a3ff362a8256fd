"""GET /api/finance/metrics: the daily metrics per day, week or month for a BI tool, streamed as CSV or
JSON lines (the columns of manage.py export_metrics). API keys with the `finance` scope only."""

from datetime import timedelta

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from accounts.permissions import CanExportFinance
from billing.api.serializers import ErrorSerializer
from config.api_errors import ApiError

from .metric_exports import HEADER, INTERVALS, metric_rows
from .streaming import CONTENT_TYPES, FORMATS, chunks

MAX_DAYS = 3700  # ten years and some: one request, one range


class MetricsQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword: declared below under its query name
    to = serializers.DateField(help_text="Last UTC day, included (YYYY-MM-DD)")
    interval = serializers.ChoiceField(INTERVALS, default="day", help_text="day, week (ISO, Monday first) or month")
    format = serializers.ChoiceField(FORMATS, default="csv")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(help_text="First UTC day (YYYY-MM-DD)")
        return {"from": fields.pop("from"), **fields}



class _FormatIsOurs(DefaultContentNegotiation):
    """`?format=` names the export's format here, not one of DRF's renderers (errors are JSON)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class FinanceMetricsApi(APIView):
    permission_classes = [CanExportFinance]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        operation_id="finance_metrics", summary="Daily metrics per day, week or month (CSV or JSON lines)",
        description="Entitled subscriptions, trials, grace, new, reactivated, churned, trial conversions, payments, "
                    "revenue, refunds and MRR per provider, product, environment and currency (docs/finance.md "
                    "\"Metrics\"). Over a week or month, stocks are the interval's last day's and flows are summed. "
                    "Streamed; the first row (CSV) names the columns: " + ", ".join(HEADER) + ".",
        parameters=[MetricsQuerySerializer],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, a header row first"),
                   (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="JSON lines"),
                   **{code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403)}},
        tags=["finance"])
    def get(self, request):
        query = MetricsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        # Well-formed, but not a range we answer: its own code (the schema cannot say "to >= from").
        if params["to"] < params["from"]:
            raise ApiError("`to` is before `from`.", code="invalid_range", status_code=400)
        if params["to"] - params["from"] > timedelta(days=MAX_DAYS):
            raise ApiError(f"The range is longer than {MAX_DAYS} days: ask in parts.", code="invalid_range",
                           status_code=400)
        fmt = params["format"]
        rows = metric_rows(params["from"], params["to"], params["interval"])
        response = StreamingHttpResponse(chunks(fmt, HEADER, rows), content_type=CONTENT_TYPES[fmt])
        name = f"metrics-{params['from']}-{params['to']}-{params['interval']}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
