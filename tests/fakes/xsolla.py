"""A local fake of Xsolla's subscriptions API (merchant v2) and of Pay Station's refund requests, reached
over real HTTP by the project's client (requests). It checks HTTP Basic auth (merchant id : API key)
like Xsolla does and keeps subscriptions in memory, shaped as `GET /projects/{project_id}/subscriptions/{id}`
answers them.

    fake = FakeXsolla(project_id="18404", merchant_id="2340", api_key="key").start()
    fake.put_subscription(fake.subscription("10", user_id="1234567", status="active", ...))
    fake.fail_next(503)   # the next request answers 503 (or "timeout" to hold the answer)
"""

import base64
import json
import re
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_GET = re.compile(r"^/projects/(?P<project>[^/]+)/subscriptions/(?P<sub>[^/?]+)$")
_PUT = re.compile(r"^/projects/(?P<project>[^/]+)/users/(?P<user>[^/]+)/subscriptions/(?P<sub>[^/?]+)$")
_REFUND = re.compile(
    r"^/merchants/(?P<merchant>[^/]+)/reports/transactions/(?P<tx>[^/]+)/(?P<kind>refund|partial_refund)$")


class FakeXsolla:
    def __init__(self, *, project_id: str, merchant_id: str, api_key: str):
        self.project_id = str(project_id)
        self.merchant_id = str(merchant_id)
        self.api_key = api_key
        self.subscriptions: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.refunded: list[str] = []  # subscriptions whose last payment was refunded (cancel_subscription_payment)
        # Pay Station's payments by transaction id ({"amount", "currency", "status"}) and refund requests.
        self.payments: dict[str, dict] = {}
        self.refund_requests: list[dict] = []
        self.postponed: list[tuple[str, str, int]] = []
        self._failures: list = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # --- control ---
    def start(self, port: int = 0) -> "FakeXsolla":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self, "GET")

            def do_PUT(self):
                fake._handle(self, "PUT")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # 0: any free port
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, failure, *, retry_after: str | None = None) -> None:
        """The next request answers with this HTTP status (with a Retry-After header when given), or hangs
        past the client's timeout ("timeout")."""
        with self._lock:
            self._failures.append((failure, retry_after))

    @staticmethod
    def subscription(subscription_id, *, user_id: str, status: str = "active", plan: str = "b5dac9c8",
                     amount: float = 9.99, currency: str = "USD", date_create: str = "2026-01-01T10:00:00+03:00",
                     date_next_charge: str | None = "2026-02-01T10:00:00+03:00",
                     date_last_charge: str | None = "2026-01-01T10:00:05+03:00", date_end: str | None = None,
                     period: tuple[int, str] | None = (1, "month")) -> dict:
        """A subscription object in the shape of Xsolla's documented GET answer (numeric id)."""
        charge = {"amount": amount, "currency": currency}
        if period is not None:
            charge["period"] = {"value": period[0], "type": period[1]}
        return {
            "id": int(subscription_id), "plan": {"id": 601, "external_id": plan, "name": {"en": "Premium"},
                                                 "charge": charge},
            "user": {"id": user_id, "name": "John Smith"}, "product": None, "charge_amount": amount,
            "currency": currency, "date_create": date_create, "date_end": date_end,
            "date_last_charge": date_last_charge, "date_next_charge": date_next_charge, "status": status,
            "comment": None,
        }

    def add_payment(self, transaction_id: str, *, amount: float, currency: str = "USD") -> None:
        """A completed payment Pay Station can refund (its transaction id as the payment webhook names it)."""
        with self._lock:
            self.payments[str(transaction_id)] = {"amount": amount, "currency": currency, "status": "completed",
                                                  "refunded": 0}

    def put_subscription(self, data: dict) -> None:
        with self._lock:
            self.subscriptions[str(data["id"])] = data

    # --- the HTTP side ---
    def _authorized(self, handler) -> bool:
        header = handler.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.merchant_id}:{self.api_key}".encode()).decode()
        return header == f"Basic {expected}"

    def _handle(self, handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append({"method": method, "path": handler.path, "body": body,
                                  "authorization": handler.headers.get("Authorization")})
            failure, retry_after = self._failures.pop(0) if self._failures else (None, None)
        if failure == "timeout":
            time.sleep(1.0)
            return self._answer(handler, 504, {"error": {"code": 504, "message": "too late"}})
        if failure is not None:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._answer(handler, int(failure), {"error": {"code": failure, "message": "injected failure"}},
                                headers)
        if not self._authorized(handler):
            return self._answer(handler, 401, {"http_status_code": 401, "message": "Invalid credentials"})
        path = handler.path.split("?", 1)[0]
        refund = _REFUND.match(path) if method == "PUT" else None
        if refund is not None:
            return self._refund(handler, refund, body or {})
        match = (_GET if method == "GET" else _PUT).match(path)
        if match is None or match["project"] != self.project_id:
            return self._answer(handler, 404, {"http_status_code": 404, "message": "Not found"})
        with self._lock:
            sub = self.subscriptions.get(match["sub"])
            if sub is None or (method == "PUT" and str(sub["user"]["id"]) != match["user"]):
                return self._answer(handler, 404, {"http_status_code": 404, "message": "Subscription not found"})
            if method == "PUT" and "timeshift" in (body or {}) and "status" not in body:
                return self._postpone(handler, sub, body["timeshift"])
            if method == "PUT":
                status = (body or {}).get("status")
                if status not in ("active", "canceled", "non_renewing"):
                    return self._answer(handler, 422, {"http_status_code": 422, "message": "Invalid status"})
                refund = (body or {}).get("cancel_subscription_payment") is True
                if refund and status != "canceled":
                    # Xsolla: refunding the last payment "only works together with setting the status to canceled".
                    return self._answer(handler, 422, {"http_status_code": 422,
                                                       "message": "cancel_subscription_payment needs status canceled"})
                sub["status"] = status
                if status == "canceled":  # ended now: no next charge
                    sub["date_end"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
                    sub["date_next_charge"] = None
                if refund:
                    self.refunded.append(match["sub"])
            answer = json.loads(json.dumps(sub))
        return self._answer(handler, 200, answer)

    def _postpone(self, handler, sub: dict, timeshift: dict) -> None:
        """Billing postponement (`timeshift`: day 1 to 366 or month 1 to 12, the value a string): the next
        charge moves later. Called with the lock held."""
        unit, value = (timeshift or {}).get("type"), str((timeshift or {}).get("value") or "")
        limit = {"day": 366, "month": 12}.get(unit)
        if limit is None or not value.isdigit() or not 1 <= int(value) <= limit:
            return self._answer(handler, 422, {"http_status_code": 422, "message": "Invalid timeshift"})
        if sub["status"] != "active" or not sub["date_next_charge"]:
            return self._answer(handler, 422, {"http_status_code": 422, "message": "Subscription is not active"})
        days = int(value) * (30 if unit == "month" else 1)
        moved = datetime.fromisoformat(sub["date_next_charge"]) + timedelta(days=days)
        sub["date_next_charge"] = moved.isoformat()
        self.postponed.append((str(sub["id"]), unit, int(value)))
        return self._answer(handler, 200, json.loads(json.dumps(sub)))

    def _refund(self, handler, match, body: dict) -> None:
        """Request refund / Request partial refund, as Pay Station answers them: a full refund 200 with a
        message, a partial one 204; 404 for an unknown transaction, 422 for one not refundable (any more)."""
        if match["merchant"] != self.merchant_id:
            return self._answer(handler, 404, {"message": "Not found"})
        with self._lock:
            payment = self.payments.get(match["tx"])
            if payment is None:
                return self._answer(handler, 404, {"message": "Transaction ID not valid. Please check payment "
                                                              "credentials."})
            if not body.get("description"):
                return self._answer(handler, 422, {"message": "description is required"})
            if payment["status"] not in ("completed", "error") or payment["refunded"] >= payment["amount"]:
                return self._answer(handler, 422, {"message": "Incorrect payment status. Refund is possible only "
                                                              "for payments with \"completed\" or \"error\" status."})
            if match["kind"] == "partial_refund":
                amount = body.get("refund_amount")
                if not isinstance(amount, int | float) or not 0 < amount <= payment["amount"] - payment["refunded"]:
                    return self._answer(handler, 422, {"message": "Invalid refund amount."})
            else:
                if payment["refunded"]:
                    return self._answer(handler, 422, {"message": "Full refund is unavailable because there are "
                                                                  "successful partial refunds for this transaction."})
                amount = payment["amount"]
            payment["refunded"] += amount
            if payment["refunded"] >= payment["amount"]:
                payment["status"] = "refunded"
            self.refund_requests.append({"transaction": match["tx"], "kind": match["kind"], **body})
        if match["kind"] == "partial_refund":
            return self._answer(handler, 204, None)
        return self._answer(handler, 200, {"message": "The request for a refund has been accepted. Xsolla CS will "
                                                      "manually complete the refund. It may take up to two business "
                                                      "days."})

    @staticmethod
    def _answer(handler, status: int, data: dict | None, headers: dict | None = None) -> None:
        payload = json.dumps(data).encode() if data is not None else b""
        try:
            handler.send_response(status)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            if payload:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
