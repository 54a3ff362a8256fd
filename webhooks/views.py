"""POST /webhooks/<provider>: a plain Django view (no DRF: the stores send their own formats and the
answer path is hot) over ingest.py, which does the work and returns the answer as data."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing.providers.base import Answer

from . import ingest


@csrf_exempt
def webhook_receive(request, provider: str):
    answer = ingest.delivery_answer(provider, method=request.method, content_length=request.META.get("CONTENT_LENGTH"),
                                    read=request.read, headers=request.headers, query=request.GET,
                                    remote_addr=request.META.get("REMOTE_ADDR"))
    response = _render(answer)
    if request.method != "POST":
        response["Allow"] = "POST"  # with the 405: the one method this endpoint takes
    return response


def _render(answer: Answer) -> HttpResponse:
    if answer.body is None:
        return HttpResponse(status=answer.status)
    return JsonResponse(answer.body, status=answer.status)
