"""The finance API for BI tools: GET /api/finance/transactions, streamed CSV or JSON lines (docs/finance.md
"Exports"). API keys with the `finance` scope only; end users never."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from accounts.permissions import CanExportFinance
from billing.api.serializers import ErrorSerializer
from billing.snapshots import Provider
from config.api_errors import ApiError

from .streaming import CONTENT_TYPES, FORMATS, queryset_chunks
from .transactions import COLUMNS, ENVIRONMENTS, BadExportRequest, export_parse


class _FormatIsOurs(BaseContentNegotiation):
    """`?format=` picks the export's format here, not one of DRF's renderers (DRF would answer 404 for
    `format=csv`); errors are always JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


def streamed_export(chunks, *, fmt: str, filename: str, headers: dict | None = None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403)}
_COLUMNS_TEXT = ", ".join(f"`{column.name}`" for column in COLUMNS)


class TransactionExportApi(APIView):
    permission_classes = [CanExportFinance]
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        operation_id="finance_transactions_export", tags=["finance"],
        summary="The ledger of a period, streamed as CSV or JSON lines",
        description=(
            "One row per ledger row (purchase, renewal, refund, chargeback, refund_reversed) that occurred on the "
            "UTC days `from`..`to` (both included), ordered by (`occurred_at`, `id`); CSV has a header row first. "
            f"Columns: {_COLUMNS_TEXT} (docs/finance.md \"Columns\"). Amounts are decimal strings in the "
            "currency's own decimals and integer minor units; times are UTC ISO 8601. The response header "
            "`X-Recorded-Before` gives the moment the export stands for: pass it as `recorded_before` to get the "
            "same bytes again later. API keys with the `finance` scope only."),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True, description="First UTC day (occurred_at)"),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True, description="Last UTC day, included"),
            OpenApiParameter("format", str, enum=list(FORMATS), default="csv"),
            OpenApiParameter("provider", str, enum=list(Provider.ALL), description="Only this store (default: all)"),
            OpenApiParameter("environment", str, enum=list(ENVIRONMENTS), default="production"),
            OpenApiParameter("recorded_before", OpenApiTypes.DATETIME,
                             description="Only rows recorded before this moment (default: now); reproduces a past "
                                         "export byte for byte"),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, header row first"),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object a line"),
            **_ERRORS,
        },
    )
    def get(self, request):
        query = request.query_params
        fmt = query.get("format") or "csv"
        if fmt not in FORMATS:
            raise ApiError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.", code="invalid",
                           details={"param": "format"})
        try:
            export = export_parse(first=query.get("from"), last=query.get("to"), provider=query.get("provider"),
                                  environment=query.get("environment"), recorded_before=query.get("recorded_before"))
        except BadExportRequest as exc:
            raise ApiError(str(exc), code="invalid", details={"param": exc.param}) from None
        return streamed_export(queryset_chunks(fmt, COLUMNS, export.queryset()), fmt=fmt,
                               filename=export.filename(fmt),
                               headers={"X-Recorded-Before": export.recorded_before_text})
