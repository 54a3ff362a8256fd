"""A local fake of Stripe's HTTP API, for the real stripe library and dj-stripe to talk to.

Objects are built from Stripe's own current-API example objects (tests/fixtures/stripe/openapi_objects)
with the fields that matter filled in; state is in memory. The fake also plays Stripe's side of the
lifecycle (renewals, failed payments, refunds, disputes, Checkout completion) and records the Events
Stripe would send, for the tests to sign and POST to /webhooks/stripe.

Requests are form-encoded with bracket keys (`items[0][price]=...`), as the library sends them."""

import copy
import hmac
import json
import re
import secrets
import string
import threading
import time
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
API_VERSION = "2026-08-26.dahlia"
DAY = 86400
INTERVAL_SECONDS = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}
# Magic payment method ids (as Stripe's test mode has them).
DECLINED_AT_ATTACH = {"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"}
FAILS_ON_CHARGE = {"pm_card_chargeCustomerFail"}
NEEDS_AUTHENTICATION = {"pm_card_authenticationRequired"}


def template(name: str) -> dict:
    return json.loads((FIXTURES / "openapi_objects" / f"{name}.json").read_text())


def new_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"{prefix}_{''.join(secrets.choice(alphabet) for _ in range(24))}"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value for these exact bytes."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse_form(pairs: list[tuple[str, str]]) -> dict:
    """`a[b][0][c]=v` pairs → nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", key.replace("[]", "[[]]"))
        parts = [p for p in parts if p]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "[]":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


class StripeFakeError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None,
                 decline_code: str | None = None):
        self.status = status
        self.body = {"error": {k: v for k, v in {"type": type_, "message": message, "code": code, "param": param,
                                                 "decline_code": decline_code}.items() if v is not None}}
        super().__init__(message)


def missing(kind: str, id_: str, param: str | None = None) -> StripeFakeError:
    return StripeFakeError(404 if param is None else 400, "invalid_request_error", f"No such {kind}: '{id_}'",
                           "resource_missing", param)


class FakeStripe:
    def __init__(self, *, livemode: bool = False):
        self.livemode = livemode
        self.objects: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.failures: list[dict] = []  # injected: {"pattern", "status", "times"}
        self.clock = int(time.time())
        self.lock = threading.RLock()
        self.account = {"id": "acct_" + "1" * 16, "object": "account", "type": "standard", "country": "US",
                        "default_currency": "usd", "email": "owner@example.com", "charges_enabled": True,
                        "payouts_enabled": True, "details_submitted": True, "livemode": livemode,
                        "business_profile": {"name": "Billing test"}, "settings": {"dashboard": {"display_name": "T"}},
                        "metadata": {}, "created": self.clock - 100 * DAY, "capabilities": {}}
        self.server: ThreadingHTTPServer | None = None

    # --- server ---------------------------------------------------------------------------------

    def start(self, port: int = 0) -> "FakeStripe":
        """Serve on `port` (0: any free port)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Stripe's API: a client's session reuses its connection
            disable_nagle_algorithm = True  # the body is written after the headers: no 40 ms wait for an ACK

            def log_message(self, *args):
                pass

            def _run(self, method):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = parse_form(parse_qsl(url.query, keep_blank_values=True)
                                    + parse_qsl(body, keep_blank_values=True))
                status, payload, headers = fake.handle(method, url.path, params, self.headers.get("Authorization", ""))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Request-Id", new_id("req"))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._run("GET")

            def do_POST(self):
                self._run("POST")

            def do_DELETE(self):
                self._run("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, pattern: str, *, status: int = 500, times: int = 1) -> None:
        """The next `times` requests whose 'METHOD /path' matches `pattern` get `status`."""
        self.failures.append({"pattern": re.compile(pattern), "status": status, "times": times})

    def handle(self, method: str, path: str, params: dict, authorization: str):
        with self.lock:
            self.requests.append((method, path, copy.deepcopy(params)))  # as sent (expand is popped below)
            for failure in self.failures:
                if failure["times"] > 0 and failure["pattern"].search(f"{method} {path}"):
                    failure["times"] -= 1
                    # Stripe-Should-Retry: false keeps the library from retrying (tests stay fast).
                    return failure["status"], {"error": {"type": "api_error", "message": "Injected failure"}}, {
                        "Stripe-Should-Retry": "false"}
            if not re.fullmatch(r"Bearer (sk|rk)_(test|live)_\w{24,}", authorization):
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}, {}
            expand = params.pop("expand", [])
            expand = list(expand.values()) if isinstance(expand, dict) else list(expand)
            try:
                for route_method, pattern, func in self.routes():
                    match = re.fullmatch(pattern, path)
                    if match and route_method == method:
                        result = func(params, *match.groups())
                        result = self.expand(copy.deepcopy(result), expand)
                        return 200, result, {}
                self.unhandled.append((method, path))
                raise StripeFakeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")
            except StripeFakeError as exc:
                return exc.status, exc.body, {}

    def routes(self):
        return [
            ("GET", r"/v1/account", lambda p: self.account),
            ("GET", r"/v1/accounts/([^/]+)", lambda p, i: self.account),
            ("POST", r"/v1/customers", self.customer_create),
            ("GET", r"/v1/customers", lambda p: self.listing("customer", p)),
            ("GET", r"/v1/customers/([^/]+)", lambda p, i: self.get(i, "customer")),
            ("POST", r"/v1/customers/([^/]+)", self.customer_update),
            ("GET", r"/v1/customers/([^/]+)/payment_methods", lambda p, i: self.listing(
                "payment_method", p, customer=i)),
            ("POST", r"/v1/setup_intents", self.setup_intent_create),
            ("GET", r"/v1/setup_intents/([^/]+)", lambda p, i: self.get(i, "setup_intent")),
            ("POST", r"/v1/setup_intents/([^/]+)/confirm", self.setup_intent_confirm),
            ("GET", r"/v1/payment_methods/([^/]+)", lambda p, i: self.payment_method(i)),
            ("POST", r"/v1/payment_methods/([^/]+)/attach", self.payment_method_attach),
            ("GET", r"/v1/products", lambda p: self.listing("product", p)),
            ("GET", r"/v1/products/([^/]+)", lambda p, i: self.get(i, "product")),
            ("GET", r"/v1/products/([^/]+)/features", lambda p, i: self.list_of([], p, f"/v1/products/{i}/features")),
            ("GET", r"/v1/prices", lambda p: self.listing("price", p)),
            ("GET", r"/v1/prices/([^/]+)", lambda p, i: self.get(i, "price")),
            ("GET", r"/v1/plans/([^/]+)", lambda p, i: self.plan(i)),
            ("POST", r"/v1/subscriptions", self.subscription_create),
            ("GET", r"/v1/subscriptions", self.subscription_list),
            ("GET", r"/v1/subscriptions/([^/]+)", lambda p, i: self.get(i, "subscription")),
            ("POST", r"/v1/subscriptions/([^/]+)", self.subscription_update),
            ("DELETE", r"/v1/subscriptions/([^/]+)", lambda p, i: self.subscription_cancel(i)),
            ("GET", r"/v1/subscription_items", lambda p: self.listing("subscription_item", p)),
            ("GET", r"/v1/subscription_items/([^/]+)", lambda p, i: self.get(i, "subscription_item")),
            ("GET", r"/v1/invoices", self.invoice_list),
            ("GET", r"/v1/invoices/([^/]+)", lambda p, i: self.get(i, "invoice")),
            ("GET", r"/v1/invoices/([^/]+)/lines", lambda p, i: self.get(i, "invoice")["lines"]),
            ("GET", r"/v1/invoice_payments", self.invoice_payment_list),
            ("GET", r"/v1/charges", lambda p: self.listing("charge", p)),
            ("GET", r"/v1/charges/([^/]+)", lambda p, i: self.get(i, "charge")),
            ("GET", r"/v1/payment_intents/([^/]+)", lambda p, i: self.get(i, "payment_intent")),
            ("GET", r"/v1/refunds", lambda p: self.listing("refund", p)),
            ("POST", r"/v1/refunds", self.refund_create),
            ("GET", r"/v1/refunds/([^/]+)", lambda p, i: self.get(i, "refund")),
            ("GET", r"/v1/disputes/([^/]+)", lambda p, i: self.get(i, "dispute")),
            ("GET", r"/v1/balance_transactions/([^/]+)", lambda p, i: self.get(i, "balance_transaction")),
            ("POST", r"/v1/checkout/sessions", self.checkout_session_create),
            ("GET", r"/v1/checkout/sessions/([^/]+)", lambda p, i: self.get(i, "checkout.session")),
            ("POST", r"/v1/billing_portal/sessions", self.portal_session_create),
            ("GET", r"/v1/events", lambda p: self.list_of(list(reversed(self.events)), p, "/v1/events")),
            ("GET", r"/v1/events/([^/]+)", lambda p, i: self.event_get(i)),
        ]

    # --- generic ----------------------------------------------------------------------------------

    def put(self, obj: dict) -> dict:
        self.objects[obj["id"]] = obj
        return obj

    def get(self, id_: str, kind: str | None = None, *, param: str | None = None) -> dict:
        obj = self.objects.get(id_)
        if obj is None or (kind and obj.get("object") != kind):
            raise missing(kind or "object", id_, param)
        return obj

    def listing(self, kind: str, params: dict, **filters) -> dict:
        items = [o for o in self.objects.values() if o.get("object") == kind]
        for key in ("customer", "subscription", "product", "charge", "price", "email"):
            value = filters.get(key) or params.get(key)
            if value:
                items = [o for o in items if _ref(o.get(key)) == value]
        if "active" in params:
            items = [o for o in items if str(o.get("active")).lower() == params["active"]]
        items.sort(key=lambda o: (o.get("created") or 0, o["id"]), reverse=True)
        return self.list_of(items, params, f"/v1/{kind}s")

    @staticmethod
    def list_of(items: list, params: dict, url: str) -> dict:
        if params.get("starting_after"):
            ids = [o["id"] for o in items]
            start = ids.index(params["starting_after"]) + 1 if params["starting_after"] in ids else len(ids)
            items = items[start:]
        limit = int(params.get("limit") or 10)
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def expand(self, obj, paths: list[str]):
        for path in paths:
            obj = self._expand(obj, path.split("."))
        return obj

    def _expand(self, node, parts):
        if not parts or node is None:
            return node
        if isinstance(node, list):
            return [self._expand(n, parts) for n in node]
        if not isinstance(node, dict):
            return node
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if value is None and head == "payments" and node.get("object") == "invoice":
            # An includable field: Stripe sends an invoice's payments only when they are expanded.
            value = copy.deepcopy(self.invoice_payment_list({"invoice": node["id"]}))
            value["url"] = f"/v1/invoices/{node['id']}/payments"
        if isinstance(value, str) and value in self.objects:
            value = copy.deepcopy(self.objects[value])
        node[head] = self._expand(value, rest)
        return node

    def emit(self, type_: str, obj: dict, previous: dict | None = None) -> dict:
        """Record the Event Stripe would send (built from Stripe's example Event envelope)."""
        event = template("event")
        self.clock = max(self.clock + 1, int(time.time()))
        event.update(id=new_id("evt"), type=type_, created=self.clock, api_version=API_VERSION,
                     livemode=self.livemode, pending_webhooks=1,
                     request={"id": new_id("req"), "idempotency_key": None})
        event["data"] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            event["data"]["previous_attributes"] = previous
        self.events.append(event)
        return event

    def event_get(self, id_: str) -> dict:
        for event in self.events:
            if event["id"] == id_:
                return event
        raise missing("event", id_)

    def take_events(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def now(self) -> int:
        self.clock = max(self.clock, int(time.time()))
        return self.clock

    # --- catalogue ----------------------------------------------------------------------------------

    def add_product(self, name: str) -> dict:
        product = template("product")
        product.update(id=new_id("prod"), name=name, description=None, default_price=None, images=[],
                       marketing_features=[], package_dimensions=None, type="service", created=self.now(),
                       updated=self.now(), livemode=self.livemode, metadata={})
        return self.put(product)

    def add_price(self, product: dict, *, unit_amount: int, currency: str = "usd", interval: str = "month",
                  interval_count: int = 1) -> dict:
        price = template("price")
        price.update(id=new_id("price"), product=product["id"], unit_amount=unit_amount,
                     unit_amount_decimal=str(unit_amount), currency=currency, created=self.now(),
                     livemode=self.livemode, transform_quantity=None, custom_unit_amount=None)
        price["recurring"].update(interval=interval, interval_count=interval_count)
        return self.put(price)

    def plan(self, price_id: str) -> dict:
        price = self.get(price_id, "price")
        return {"id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
                "amount_decimal": str(price["unit_amount"]), "billing_scheme": "per_unit",
                "created": price["created"], "currency": price["currency"],
                "interval": price["recurring"]["interval"], "interval_count": price["recurring"]["interval_count"],
                "livemode": self.livemode, "metadata": {}, "meter": None, "nickname": None,
                "product": price["product"], "tiers_mode": None, "transform_usage": None,
                "trial_period_days": None, "usage_type": "licensed"}

    # --- customers and payment methods --------------------------------------------------------------

    def customer_create(self, params: dict) -> dict:
        customer = template("customer")
        customer.update(id=new_id("cus"), email=params.get("email"), name=params.get("name"),
                        metadata=params.get("metadata") or {}, created=self.now(), livemode=self.livemode,
                        discount=None, shipping=None, address=None, currency=None)
        customer["invoice_settings"] = {"custom_fields": None, "default_payment_method": None, "footer": None,
                                        "rendering_options": None}
        self.put(customer)
        self.emit("customer.created", customer)
        return customer

    def customer_update(self, params: dict, id_: str) -> dict:
        customer = self.get(id_, "customer")
        if "invoice_settings" in params:
            pm = params["invoice_settings"].get("default_payment_method")
            if pm:
                self.payment_method(pm)
            customer["invoice_settings"]["default_payment_method"] = pm or None
        for key in ("email", "name"):
            if key in params:
                customer[key] = params[key]
        if "metadata" in params:
            customer["metadata"].update(params["metadata"])
        self.emit("customer.updated", customer, {})
        return customer

    def payment_method(self, id_: str) -> dict:
        if id_ in self.objects:
            return self.objects[id_]
        if not id_.startswith("pm_"):
            raise missing("PaymentMethod", id_)
        return self.put({"id": id_, "object": "payment_method", "type": "card", "customer": None,
                         "created": self.now(), "livemode": self.livemode, "metadata": {},
                         "allow_redisplay": "unspecified",
                         "billing_details": {"address": None, "email": None, "name": None, "phone": None},
                         "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034,
                                  "country": "US", "funding": "credit", "fingerprint": "fakefingerprint",
                                  "checks": None, "wallet": None, "networks": None,
                                  "three_d_secure_usage": {"supported": True}}})

    def payment_method_attach(self, params: dict, id_: str) -> dict:
        customer = self.get(params.get("customer", ""), "customer", param="customer")
        if id_ in DECLINED_AT_ATTACH:
            raise StripeFakeError(402, "card_error", "Your card was declined.", "card_declined",
                                  decline_code="generic_decline")
        pm = self.payment_method(id_)
        if pm.get("customer") not in (None, customer["id"]):
            raise StripeFakeError(400, "invalid_request_error",
                                  "The payment method you provided has already been attached to a customer.")
        pm["customer"] = customer["id"]
        return pm

    def setup_intent_create(self, params: dict) -> dict:
        customer = self.get(params.get("customer", ""), "customer", param="customer")
        id_ = new_id("seti")
        intent = {"id": id_, "object": "setup_intent", "client_secret": f"{id_}_secret_{secrets.token_hex(12)}",
                  "customer": customer["id"], "status": "requires_payment_method", "usage": params.get("usage"),
                  "payment_method": None, "payment_method_types": params.get("payment_method_types") or ["card"],
                  "next_action": None, "created": self.now(), "livemode": self.livemode,
                  "metadata": params.get("metadata") or {}, "automatic_payment_methods": None}
        return self.put(intent)

    def setup_intent_confirm(self, params: dict, id_: str) -> dict:
        """What Stripe.js does with the card the user typed: a new PaymentMethod (or a given one), attached
        to the intent's customer. Magic ids behave as at attach (declined) and at charge time."""
        intent = self.get(id_, "setup_intent")
        if intent["status"] == "succeeded":
            raise StripeFakeError(400, "invalid_request_error", "This SetupIntent has already succeeded.",
                                  "setup_intent_unexpected_state")
        pm_id = params.get("payment_method")
        if not pm_id:
            if (params.get("payment_method_data") or {}).get("type") != "card":
                raise StripeFakeError(400, "invalid_request_error", "Missing required param: payment_method.",
                                      "parameter_missing", "payment_method")
            pm_id = new_id("pm")
        self.payment_method_attach({"customer": intent["customer"]}, pm_id)
        intent.update(status="succeeded", payment_method=pm_id)
        return intent

    # --- subscriptions --------------------------------------------------------------------------------

    def _item(self, sub_id: str, price: dict, quantity: int, start: int, end: int) -> dict:
        item = template("subscription_item")
        item.update(id=new_id("si"), created=start, price=copy.deepcopy(price), plan=self.plan(price["id"]),
                    quantity=quantity, subscription=sub_id, current_period_start=start, current_period_end=end,
                    billing_thresholds=None, metadata={}, discounts=[], tax_rates=[])
        return item

    def subscription_create(self, params: dict) -> dict:
        customer = self.get(params.get("customer", ""), "customer", param="customer")
        items = params.get("items") or []
        if not items or not items[0].get("price"):
            raise StripeFakeError(400, "invalid_request_error", "Missing required param: items.", "parameter_missing",
                                  "items")
        price = self.get(items[0]["price"], "price", param="items[0][price]")
        trial_days = int(params.get("trial_period_days") or 0)
        pm = params.get("default_payment_method") or customer["invoice_settings"]["default_payment_method"]
        if not pm and not trial_days:
            raise StripeFakeError(400, "invalid_request_error",
                                  "This customer has no attached payment source or default payment method.",
                                  "resource_missing")
        return self.start_subscription(customer, price, payment_method=pm, trial_days=trial_days,
                                       metadata=params.get("metadata") or {},
                                       quantity=int(items[0].get("quantity") or 1))

    def start_subscription(self, customer: dict, price: dict, *, payment_method: str | None, trial_days: int = 0,
                           metadata: dict | None = None, quantity: int = 1) -> dict:
        """Create a subscription and play its first invoice, emitting the events Stripe sends."""
        sub = template("subscription")
        now = self.now()
        sub_id = new_id("sub")
        end = now + (trial_days * DAY if trial_days else INTERVAL_SECONDS[price["recurring"]["interval"]]
                     * price["recurring"]["interval_count"])
        sub.update(
            id=sub_id, customer=customer["id"], created=now, start_date=now, billing_cycle_anchor=end if trial_days
            else now, cancel_at=None, canceled_at=None, cancel_at_period_end=False, ended_at=None,
            trial_start=now if trial_days else None, trial_end=end if trial_days else None,
            currency=price["currency"], default_payment_method=payment_method, metadata=dict(metadata or {}),
            livemode=self.livemode, pause_collection=None, pending_update=None, pending_setup_intent=None,
            pending_invoice_item_interval=None, next_pending_invoice_item_invoice=None, schedule=None,
            transfer_data=None, billing_schedules=[], managed_payments=None, billing_thresholds=None,
            billing_cycle_anchor_config=None, discounts=[], status="incomplete", latest_invoice=None)
        sub["items"] = {"object": "list", "data": [self._item(sub_id, price, quantity, now, end)], "has_more": False,
                        "url": f"/v1/subscription_items?subscription={sub_id}", "total_count": 1}
        self.put(sub)
        amount = 0 if trial_days else price["unit_amount"] * quantity
        invoice = self._invoice(sub, amount, "subscription_create", now, end)
        outcome = self._collect(invoice, payment_method)
        sub["status"] = "trialing" if trial_days else ("active" if outcome == "paid" else "incomplete")
        self.emit("customer.subscription.created", sub)
        self._emit_invoice_outcome(invoice, outcome)
        return sub

    def _invoice(self, sub: dict, amount: int, reason: str, start: int, end: int) -> dict:
        invoice = template("invoice")
        inv_id = new_id("in")
        price = sub["items"]["data"][0]["price"]
        invoice.update(
            id=inv_id, customer=sub["customer"], subscription=None, amount_due=amount, amount_paid=0,
            amount_remaining=amount, subtotal=amount, subtotal_excluding_tax=amount, total=amount,
            total_excluding_tax=amount, amount_overpaid=0, currency=price["currency"], billing_reason=reason,
            status="draft", created=self.now(), period_start=start, period_end=end, livemode=self.livemode,
            from_invoice=None, last_finalization_error=None, shipping_cost=None, attempt_count=0, attempted=False,
            due_date=None, webhooks_delivered_at=None, number=f"FAKE-{len(self.objects):05d}", confirmation_secret=None)
        invoice["parent"] = {"type": "subscription_details", "quote_details": None,
                             "subscription_details": {"metadata": sub["metadata"], "subscription": sub["id"]}}
        line = invoice["lines"]["data"][0]
        line.update(id=new_id("il"), amount=amount, currency=price["currency"], invoice=inv_id,
                    description=f"1 x {price['id']}", period={"start": start, "end": end}, subtotal=amount)
        line["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                          "subscription_item_details": {"invoice_item": None, "proration": False,
                                                        "proration_details": {"credited_items": None},
                                                        "subscription": sub["id"],
                                                        "subscription_item": sub["items"]["data"][0]["id"]}}
        invoice["lines"]["url"] = f"/v1/invoices/{inv_id}/lines"
        sub["latest_invoice"] = inv_id
        return self.put(invoice)

    def _collect(self, invoice: dict, payment_method: str | None) -> str:
        """Pay an invoice with a payment method: 'paid', 'failed' or 'requires_action'."""
        invoice["status"] = "open"
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        if invoice["amount_due"] == 0:
            invoice.update(status="paid", amount_remaining=0)
            invoice["status_transitions"]["paid_at"] = self.now()
            return "paid"
        intent = template("payment_intent")
        pi_id = new_id("pi")
        intent.update(id=pi_id, amount=invoice["amount_due"], currency=invoice["currency"],
                      customer=invoice["customer"], payment_method=payment_method, created=self.now(),
                      client_secret=f"{pi_id}_secret_{secrets.token_hex(12)}", livemode=self.livemode,
                      canceled_at=None, last_payment_error=None, next_action=None, latest_charge=None,
                      metadata={}, processing=None, shipping=None, transfer_data=None)
        self.put(intent)
        payment = template("invoice_payment")
        payment.update(id=new_id("inpay"), invoice=invoice["id"], amount_requested=invoice["amount_due"],
                       amount_paid=None, currency=invoice["currency"], created=self.now(), livemode=self.livemode,
                       status="open", payment={"type": "payment_intent", "payment_intent": pi_id})
        self.put(payment)
        if payment_method in NEEDS_AUTHENTICATION:
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            invoice["confirmation_secret"] = {"client_secret": intent["client_secret"], "type": "payment_intent"}
            return "requires_action"
        charge = template("charge")
        charge.update(id=new_id("ch"), amount=invoice["amount_due"], amount_captured=invoice["amount_due"],
                      amount_refunded=0, refunded=False, captured=True, currency=invoice["currency"],
                      customer=invoice["customer"], payment_intent=pi_id, payment_method=payment_method,
                      created=self.now(), livemode=self.livemode, balance_transaction=None, disputed=False,
                      description="Subscription payment")
        charge["refunds"] = {"object": "list", "data": [], "has_more": False,
                             "url": f"/v1/charges/{charge['id']}/refunds"}
        self.put(charge)
        intent["latest_charge"] = charge["id"]
        if payment_method in FAILS_ON_CHARGE or not payment_method:
            charge.update(status="failed", paid=False, captured=False, amount_captured=0,
                          failure_code="card_declined", failure_message="Your card was declined.")
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"type": "card_error", "code": "card_declined",
                                            "message": "Your card was declined."}
            invoice["confirmation_secret"] = {"client_secret": intent["client_secret"], "type": "payment_intent"}
            return "failed"
        charge.update(status="succeeded", paid=True,
                      balance_transaction=self.balance_transaction(charge["id"], charge["amount"], charge["currency"],
                                                                   "charge")["id"])
        intent.update(status="succeeded", amount_received=invoice["amount_due"])
        payment.update(status="paid", amount_paid=invoice["amount_due"])
        payment["status_transitions"]["paid_at"] = self.now()
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = self.now()
        return "paid"

    def _emit_invoice_outcome(self, invoice: dict, outcome: str) -> None:
        if outcome == "paid":
            self.emit("invoice.paid", invoice)
            self.emit("invoice.payment_succeeded", invoice)
        elif outcome == "requires_action":
            self.emit("invoice.payment_action_required", invoice)
        else:
            self.emit("invoice.payment_failed", invoice)

    def subscription_list(self, params: dict) -> dict:
        items = [o for o in self.objects.values() if o.get("object") == "subscription"]
        status = params.get("status")
        if status != "all":
            items = [o for o in items if o["status"] == status] if status else [
                o for o in items if o["status"] not in ("canceled", "incomplete_expired")]
        if params.get("customer"):
            items = [o for o in items if o["customer"] == params["customer"]]
        items.sort(key=lambda o: (o["created"], o["id"]), reverse=True)
        return self.list_of(items, params, "/v1/subscriptions")

    def subscription_update(self, params: dict, id_: str) -> dict:
        sub = self.get(id_, "subscription")
        previous = {}
        if "cancel_at_period_end" in params:
            previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
            sub["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
            sub["canceled_at"] = self.now() if sub["cancel_at_period_end"] else None
            sub["cancellation_details"] = {"comment": None, "feedback": None,
                                           "reason": "cancellation_requested" if sub["cancel_at_period_end"] else None}
        if "metadata" in params:
            previous["metadata"] = dict(sub["metadata"])
            sub["metadata"].update(params["metadata"])
        if params.get("items"):
            change = params["items"][0]
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                raise missing("subscription item", change.get("id", ""), "items[0][id]")
            price = self.get(change.get("price", ""), "price", param="items[0][price]")
            previous["items"] = copy.deepcopy(sub["items"])
            old_interval = item["price"]["recurring"]["interval"]
            item["price"] = copy.deepcopy(price)
            item["plan"] = self.plan(price["id"])
            if price["recurring"]["interval"] != old_interval:
                # A new interval resets the billing cycle: the new period is invoiced now (prorated credit
                # for the unused time is left out of this fake).
                now = self.now()
                end = now + INTERVAL_SECONDS[price["recurring"]["interval"]] * price["recurring"]["interval_count"]
                item.update(current_period_start=now, current_period_end=end)
                invoice = self._invoice(sub, price["unit_amount"] * item["quantity"], "subscription_update", now, end)
                outcome = self._collect(invoice, sub["default_payment_method"])
                self.emit("customer.subscription.updated", sub, previous)
                self._emit_invoice_outcome(invoice, outcome)
                return sub
        self.emit("customer.subscription.updated", sub, previous)
        return sub

    def subscription_cancel(self, id_: str) -> dict:
        sub = self.get(id_, "subscription")
        now = self.now()
        sub.update(status="canceled", canceled_at=sub["canceled_at"] or now, ended_at=now)
        self.emit("customer.subscription.deleted", sub)
        return sub

    # --- Stripe's side of the lifecycle (what happens without our asking) -----------------------------

    def set_status(self, sub_id: str, status: str, **fields) -> dict:
        sub = self.get(sub_id, "subscription")
        previous = {"status": sub["status"]}
        sub["status"] = status
        sub.update(fields)
        if status in ("canceled", "incomplete_expired"):
            sub["ended_at"] = sub.get("ended_at") or self.now()
            self.emit("customer.subscription.deleted", sub)
        elif status == "paused":
            self.emit("customer.subscription.paused", sub)
        else:
            self.emit("customer.subscription.updated", sub, previous)
        return sub

    def resume(self, sub_id: str) -> dict:
        sub = self.set_status(sub_id, "active")
        self.events[-1]["type"] = "customer.subscription.resumed"
        return sub

    def renew(self, sub_id: str, *, payment_method: str | None = None) -> dict:
        """The period ends: the period moves on and its invoice is charged (paid, or past_due)."""
        sub = self.get(sub_id, "subscription")
        item = sub["items"]["data"][0]
        start = item["current_period_end"]
        interval = item["price"]["recurring"]
        end = start + INTERVAL_SECONDS[interval["interval"]] * interval["interval_count"]
        item.update(current_period_start=start, current_period_end=end)
        reason = "subscription_cycle"
        if sub["status"] == "trialing":
            sub["trial_end"] = start
        invoice = self._invoice(sub, item["price"]["unit_amount"] * item["quantity"], reason, start, end)
        outcome = self._collect(invoice, payment_method or sub["default_payment_method"])
        previous = {"status": sub["status"], "latest_invoice": None}
        sub["status"] = "active" if outcome == "paid" else "past_due"
        self.emit("customer.subscription.updated", sub, previous)
        self._emit_invoice_outcome(invoice, outcome)
        return invoice

    def balance_transaction(self, source: str, amount: int, currency: str, type_: str, *,
                            fee: int | None = None) -> dict:
        """Stripe's record of money moving on the balance: a charge's fee is 2.9 % + 30 (US cards);
        refunds give no fee back; a dispute costs 1500 (Stripe's published prices)."""
        if fee is None:
            fee = round(amount * 0.029) + 30 if type_ == "charge" else 0
        txn = {"id": new_id("txn"), "object": "balance_transaction", "amount": amount,
               "available_on": self.now() + 2 * DAY,
               "balance_type": "payments", "created": self.now(), "currency": currency, "description": None,
               "exchange_rate": None, "fee": fee,
               "fee_details": [{"amount": fee, "application": None, "currency": currency,
                                "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [],
               "net": amount - fee, "reporting_category": type_, "source": source, "status": "pending",
               "type": type_}
        return self.put(txn)

    def latest_charge(self, sub_id: str) -> dict:
        invoice = self.get(self.get(sub_id, "subscription")["latest_invoice"], "invoice")
        payment = next(o for o in self.objects.values() if o.get("object") == "invoice_payment"
                       and o["invoice"] == invoice["id"])
        intent = self.get(payment["payment"]["payment_intent"], "payment_intent")
        return self.get(intent["latest_charge"], "charge")

    def refund_create(self, params: dict) -> dict:
        """POST /v1/refunds (by charge or payment intent): refused past what is left of the charge."""
        if params.get("charge"):
            charge = self.get(params["charge"], "charge", param="charge")
        elif params.get("payment_intent"):
            intent = self.get(params["payment_intent"], "payment_intent", param="payment_intent")
            charge = self.get(intent["latest_charge"], "charge")
        else:
            raise StripeFakeError(400, "invalid_request_error", "One of `charge` or `payment_intent` is required.",
                                  "parameter_missing", "charge")
        left = charge["amount"] - charge["amount_refunded"]
        if left <= 0:
            raise StripeFakeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.",
                                  "charge_already_refunded", "charge")
        amount = int(params["amount"]) if params.get("amount") else left
        if amount > left:
            raise StripeFakeError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than "
                                  f"unrefunded amount on charge ({left})", "amount_too_large", "amount")
        return self.refund(charge["id"], amount, reason=params.get("reason"), metadata=params.get("metadata") or {})

    def refund(self, charge_id: str, amount: int | None = None, *, reason: str | None = None,
               metadata: dict | None = None) -> dict:
        charge = self.get(charge_id, "charge")
        refund = template("refund")
        amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
        refund.update(id=new_id("re"), amount=amount, charge=charge_id, currency=charge["currency"],
                      payment_intent=charge["payment_intent"], created=self.now(), status="succeeded",
                      customer=charge["customer"], destination_details=None, reason=reason,
                      metadata=metadata or {})
        refund["balance_transaction"] = self.balance_transaction(refund["id"], -amount, charge["currency"],
                                                                 "refund")["id"]
        self.put(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        event_charge = copy.deepcopy(charge)
        # Current API versions send the charge without its refunds list (it must be listed).
        event_charge.pop("refunds", None)
        self.emit("charge.refunded", event_charge, previous)
        return refund

    def dispute(self, charge_id: str) -> dict:
        charge = self.get(charge_id, "charge")
        source = json.loads((FIXTURES / "webhook_events" / "charge.dispute.created.json").read_text())
        dispute = source["data"]["object"]
        dispute.update(id=new_id("dp"), charge=charge_id, amount=charge["amount"], currency=charge["currency"],
                       payment_intent=charge["payment_intent"], created=self.now(), livemode=self.livemode,
                       balance_transaction=None, status="needs_response", reason="fraudulent")
        # The dispute carries its balance transactions expanded: the amount withdrawn and the dispute fee.
        dispute["balance_transactions"] = [
            self.balance_transaction(dispute["id"], -charge["amount"], charge["currency"], "dispute", fee=1500)]
        self.put(dispute)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict:
        """The bank decides: won reinstates the amount (the fee stays with Stripe)."""
        dispute = self.get(dispute_id, "dispute")
        previous = {"status": dispute["status"]}
        dispute["status"] = "won" if won else "lost"
        if won:
            dispute["balance_transactions"].append(
                self.balance_transaction(dispute["id"], dispute["amount"], dispute["currency"], "dispute", fee=0))
        self.emit("charge.dispute.closed", dispute, previous)
        return dispute

    # --- Checkout and the customer portal -------------------------------------------------------------

    def checkout_session_create(self, params: dict) -> dict:
        if params.get("mode") != "subscription":
            raise StripeFakeError(400, "invalid_request_error", "This fake supports mode=subscription only.")
        line_items = params.get("line_items") or []
        if not line_items:
            raise StripeFakeError(400, "invalid_request_error", "Missing required param: line_items.",
                                  "parameter_missing", "line_items")
        self.get(line_items[0].get("price", ""), "price", param="line_items[0][price]")
        if params.get("customer"):
            self.get(params["customer"], "customer", param="customer")
        session = template("checkout.session")
        cs_id = new_id("cs_test")
        session.update(id=cs_id, mode="subscription", customer=params.get("customer"),
                       client_reference_id=params.get("client_reference_id"), metadata=params.get("metadata") or {},
                       success_url=params.get("success_url"), cancel_url=params.get("cancel_url"),
                       url=f"https://checkout.stripe.com/c/pay/{cs_id}", status="open", payment_status="unpaid",
                       payment_intent=None, created=self.now(), expires_at=self.now() + DAY, livemode=self.livemode,
                       subscription=None, currency=None)
        session["_params"] = params  # what was asked (line items, subscription_data) for completion
        return self.put(session)

    def complete_checkout(self, session_id: str, *, payment_method: str = "pm_card_visa") -> dict:
        """The customer pays on Stripe's page: a customer (if none), the subscription, its events."""
        session = self.get(session_id, "checkout.session")
        params = session["_params"]
        customer = self.get(session["customer"]) if session["customer"] else self.customer_create(
            {"email": "buyer@example.com"})
        self.payment_method(payment_method)["customer"] = customer["id"]
        price = self.get(params["line_items"][0]["price"], "price")
        metadata = (params.get("subscription_data") or {}).get("metadata") or {}
        sub = self.start_subscription(customer, price, payment_method=payment_method, metadata=metadata)
        session.update(status="complete", payment_status="paid", customer=customer["id"], subscription=sub["id"])
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        self.emit("checkout.session.completed", public)
        return public

    def portal_session_create(self, params: dict) -> dict:
        customer = self.get(params.get("customer", ""), "customer", param="customer")
        id_ = new_id("bps")
        return {"id": id_, "object": "billing_portal.session", "customer": customer["id"],
                "return_url": params.get("return_url"), "url": f"https://billing.stripe.com/p/session/{id_}",
                "created": self.now(), "livemode": self.livemode, "configuration": "bpc_fake", "flow": None,
                "locale": None, "on_behalf_of": None}

    def invoice_list(self, params: dict) -> dict:
        """GET /v1/invoices: by customer, by subscription (named in the invoice's parent since 2025-03-31)
        and by status, newest first."""
        items = [o for o in self.objects.values() if o.get("object") == "invoice"]
        if params.get("customer"):
            items = [o for o in items if _ref(o.get("customer")) == params["customer"]]
        if params.get("subscription"):
            items = [o for o in items if ((o.get("parent") or {}).get("subscription_details") or {}).get(
                "subscription") == params["subscription"]]
        if params.get("status"):
            items = [o for o in items if o.get("status") == params["status"]]
        order = {id_: n for n, id_ in enumerate(self.objects)}  # within one second: the later one first
        items.sort(key=lambda o: (o.get("created") or 0, order[o["id"]]), reverse=True)
        return self.list_of(items, params, "/v1/invoices")

    def invoice_payment_list(self, params: dict) -> dict:
        items = [o for o in self.objects.values() if o.get("object") == "invoice_payment"]
        payment = params.get("payment") or {}
        if payment.get("payment_intent"):
            items = [o for o in items if o["payment"].get("payment_intent") == payment["payment_intent"]]
        if params.get("invoice"):
            items = [o for o in items if o["invoice"] == params["invoice"]]
        return self.list_of(items, params, "/v1/invoice_payments")


def _ref(value):
    return value.get("id") if isinstance(value, dict) else value
