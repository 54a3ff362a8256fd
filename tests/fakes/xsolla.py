"""A local fake of Xsolla's subscriptions API (merchant v2), reached over real HTTP by the project's
client (requests). It checks HTTP Basic auth (merchant id : API key) like Xsolla does and keeps
subscriptions in memory, shaped as `GET /projects/{project_id}/subscriptions/{id}` answers them.

    fake = FakeXsolla(project_id="18404", merchant_id="2340", api_key="key").start()
    fake.put_subscription(fake.subscription("10", user_id="1234567", status="active", ...))
    fake.fail_next(503)   # the next request answers 503 (or "timeout" to hold the answer)
"""

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_GET = re.compile(r"^/projects/(?P<project>[^/]+)/subscriptions/(?P<sub>[^/?]+)$")
_PUT = re.compile(r"^/projects/(?P<project>[^/]+)/users/(?P<user>[^/]+)/subscriptions/(?P<sub>[^/?]+)$")


class FakeXsolla:
    def __init__(self, *, project_id: str, merchant_id: str, api_key: str):
        self.project_id = str(project_id)
        self.merchant_id = str(merchant_id)
        self.api_key = api_key
        self.subscriptions: dict[str, dict] = {}
        self.requests: list[dict] = []
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
        match = (_GET if method == "GET" else _PUT).match(path)
        if match is None or match["project"] != self.project_id:
            return self._answer(handler, 404, {"http_status_code": 404, "message": "Not found"})
        with self._lock:
            sub = self.subscriptions.get(match["sub"])
            if sub is None or (method == "PUT" and str(sub["user"]["id"]) != match["user"]):
                return self._answer(handler, 404, {"http_status_code": 404, "message": "Subscription not found"})
            if method == "PUT":
                status = (body or {}).get("status")
                if status not in ("active", "canceled", "non_renewing"):
                    return self._answer(handler, 422, {"http_status_code": 422, "message": "Invalid status"})
                sub["status"] = status
            answer = json.loads(json.dumps(sub))
        return self._answer(handler, 200, answer)

    @staticmethod
    def _answer(handler, status: int, data: dict, headers: dict | None = None) -> None:
        payload = json.dumps(data).encode()
        try:
            handler.send_response(status)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
