"""Google Play, faked at the network edge, reached through the real google-auth and
google-api-python-client code paths:

- an OAuth token endpoint (`/token`) that checks the service account's JWT-bearer grant (signed with
  the key in the service-account file the tests write) and issues an access token;
- the Play Developer API (`/androidpublisher/v3/...`): subscriptionsv2 get/cancel/revoke/defer,
  subscriptions.acknowledge and voidedpurchases.list, each requiring `Authorization: Bearer <that token>`;
- Google's certificate endpoints serving the key that signs Pub/Sub OIDC tokens: `/certs` as x509
  certificates by key id (oauth2/v1/certs), `/jwks` as a JWK Set (oauth2/v3/certs).

The fake holds one SubscriptionPurchaseV2 per token (tests set them, usually from captured
fixtures); acknowledge/cancel/revoke/defer change it as Google does. Orders a test voids (`void`) are
listed by voidedpurchases.list as Google lists them (subscriptions only with `type=1`, the last 30
days, pages of `maxResults`). Each API call is recorded with
the purchase's state when it arrived; answers can be made to fail or to come late."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import secrets
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt
from jwt.algorithms import RSAAlgorithm

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
API_PREFIX = "/androidpublisher/v3/applications/"
# google-auth always addresses the grant to Google's token endpoint, whatever token_uri it posts to.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class SigningKey:
    """An RSA key with a self-signed cert: signs OIDC tokens the way Google's push service does."""

    def __init__(self, kid: str | None = None):
        self.kid = kid or uuid.uuid4().hex
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
        now = datetime.now(UTC)
        self.cert_pem = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                         .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                         .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                         .sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
        self.private_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode()

        self._signer = None

    def jwk(self) -> dict:
        """The public key as Google's oauth2/v3/certs lists it."""
        key = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**key, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def token(self, claims: dict) -> str:
        if self._signer is None:  # loading the PEM is slow (~0.1 s): once per key
            self._signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)
        return google_jwt.encode(self._signer, claims).decode()


@functools.cache
def shared_key(name: str) -> SigningKey:
    """Keys generated once per test session (RSA generation is slow on a busy machine)."""
    return SigningKey(name)


class FakeGooglePlay:
    def __init__(self, *, package: str, port: int = 0):
        self.package = package
        self.purchases: dict[str, dict] = {}
        self.voided: list[dict] = []  # VoidedPurchase resources, oldest first
        self.calls: list[dict] = []
        self.failures: dict[str, deque] = {}
        self.delays: dict[str, deque] = {}
        self.issued_tokens: set[str] = set()
        self.token_requests = 0
        self.certs_fetches = 0
        self.certs_max_age = 3600
        self.certs_override: bytes | None = None  # served by both certificate endpoints instead, when set
        self.service_account_key = shared_key("sa-key")
        self.client_email = "billing@test-project.iam.gserviceaccount.com"
        self.push_key = shared_key("google-push-key")  # Google's: its cert is served at /certs
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())  # 0: any free port
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeGooglePlay:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def service_account_info(self) -> dict:
        return {"type": "service_account", "project_id": "test-project", "private_key_id": self.service_account_key.kid,
                "private_key": self.service_account_key.private_pem, "client_email": self.client_email,
                "client_id": "1234567890", "token_uri": f"{self.base_url}/token"}

    # --- test controls ---------------------------------------------------------------------------
    def set_purchase(self, token: str, purchase: dict) -> None:
        purchase = json.loads(json.dumps(purchase))
        purchase.setdefault("etag", uuid.uuid4().hex)
        with self._lock:
            self.purchases[token] = purchase

    def void(self, token: str, order_id: str, *, voided_at: datetime | None = None, reason: int = 1,
             source: int = 0, subscription: bool = True) -> dict:
        """Google voids an order (a refund with revocation, a chargeback): voidedpurchases.list lists it."""
        when = int((voided_at or datetime.now(UTC)).timestamp() * 1000)
        entry = {"kind": "androidpublisher#voidedPurchase", "purchaseToken": token, "orderId": order_id,
                 "purchaseTimeMillis": str(when - 86_400_000), "voidedTimeMillis": str(when),
                 "voidedReason": reason, "voidedSource": source, "_subscription": subscription}
        with self._lock:
            self.voided.append(entry)
        return {k: v for k, v in entry.items() if not k.startswith("_")}

    def fail_next(self, method: str, *statuses: int) -> None:
        """The next calls of `method` (get, acknowledge, cancel, revoke, defer, token) answer these statuses."""
        with self._lock:
            self.failures.setdefault(method, deque()).extend(statuses)

    def stop_failing(self, method: str) -> None:
        """Drop the failures still queued for `method` (Google recovered)."""
        with self._lock:
            self.failures.pop(method, None)

    def delay_next(self, method: str, *seconds: float) -> None:
        """The next calls of `method` answer only after these many seconds (a slow Google)."""
        with self._lock:
            self.delays.setdefault(method, deque()).extend(seconds)

    def calls_of(self, method: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method]

    def push_token(self, *, audience: str, email: str, email_verified=True, issuer="https://accounts.google.com",
                   expires_in: int = 3600, key: SigningKey | None = None) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "azp": "1234", "sub": "1234", "email": email,
                  "email_verified": email_verified, "iat": now - 5, "exp": now + expires_in}
        return (key or self.push_key).token(claims)

    # --- the server ------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle(self):
                # the client may give up (its timeout) before a delayed answer
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, reason: str = "error"):
                self._send(status, {"error": {"code": status, "message": message,
                                              "errors": [{"message": message, "reason": reason}]}})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                path = urlparse(self.path).path
                if path in ("/certs", "/jwks") and fake.certs_override is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(fake.certs_override)))
                    self.end_headers()
                    self.wfile.write(fake.certs_override)
                    return None
                if path == "/certs":
                    with fake._lock:
                        fake.certs_fetches += 1
                    return self._send(200, {fake.push_key.kid: fake.push_key.cert_pem},
                                      {"Cache-Control": f"public, max-age={fake.certs_max_age}"})
                if path == "/jwks":
                    with fake._lock:
                        fake.certs_fetches += 1
                    return self._send(200, {"keys": [fake.push_key.jwk()]},
                                      {"Cache-Control": f"public, max-age={fake.certs_max_age}"})
                if path.endswith("/purchases/voidedpurchases"):
                    return self._voided_list(path, parse_qs(urlparse(self.path).query))
                return self._api("GET", path, b"")

            def _voided_list(self, path: str, query: dict):
                package = unquote(path[len(API_PREFIX):].split("/")[0])
                params = {k: v[0] for k, v in query.items()}
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    fake.calls.append({"method": "voidedpurchases.list", "verb": "GET", "token": None,
                                       "package": package, "authorization": auth, "query": params,
                                       "body": None, "state": None})
                if not auth.startswith("Bearer ") or auth[7:] not in fake.issued_tokens:
                    return self._error(401, "Request had invalid authentication credentials.", "unauthorized")
                if fake._fail("voidedpurchases.list", self):
                    return None
                if package != fake.package:
                    return self._error(403, "The caller does not have permission", "permissionDenied")
                now = int(time.time() * 1000)
                start = int(params.get("startTime") or now - 30 * 86_400_000)
                if start < now - 30 * 86_400_000 - 60_000:
                    return self._error(400, "startTime cannot be older than 30 days.", "invalid")
                with fake._lock:
                    listed = [{k: v for k, v in e.items() if not k.startswith("_")} for e in fake.voided
                              if int(e["voidedTimeMillis"]) >= start
                              and (params.get("type") == "1" or not e["_subscription"])]
                offset = int(params.get("token") or 0)
                size = int(params.get("maxResults") or 1000)
                answer = {"voidedPurchases": listed[offset:offset + size]}
                if offset + size < len(listed):
                    answer["tokenPagination"] = {"nextPageToken": str(offset + size)}
                return self._send(200, answer)

            def do_POST(self):
                path = urlparse(self.path).path
                body = self._body()
                if path == "/token":
                    return self._token(body)
                return self._api("POST", path, body)

            def _token(self, body: bytes):
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                if fake._fail("token", self):
                    return
                if form.get("grant_type") != JWT_BEARER:
                    return self._send(400, {"error": "unsupported_grant_type"})
                try:
                    claims = jwt.decode(form.get("assertion", ""), fake.service_account_key.key.public_key(),
                                        algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE)
                except jwt.PyJWTError as exc:
                    return self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
                if claims.get("iss") != fake.client_email or \
                        "androidpublisher" not in claims.get("scope", ""):
                    return self._send(400, {"error": "invalid_scope"})
                access = "ya29.fake-" + secrets.token_urlsafe(16)
                with fake._lock:
                    fake.issued_tokens.add(access)
                    fake.token_requests += 1
                self._send(200, {"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

            def _api(self, verb: str, path: str, body: bytes):
                if not path.startswith(API_PREFIX):
                    return self._error(404, f"no such path {path}")
                parts = path[len(API_PREFIX):].split("/")
                package = unquote(parts[0])
                rest = "/".join(parts[1:])
                method, token, product = None, None, None
                if rest.startswith("purchases/subscriptionsv2/tokens/"):
                    tail = unquote(rest[len("purchases/subscriptionsv2/tokens/"):])
                    token, _, action = tail.partition(":")
                    method = action or "get"
                elif rest.startswith("purchases/subscriptions/"):
                    product, _, tail = rest[len("purchases/subscriptions/"):].partition("/tokens/")
                    token, _, action = unquote(tail).partition(":")
                    method = action
                auth = self.headers.get("Authorization", "")
                record = {"method": method, "verb": verb, "token": token, "product": unquote(product or ""),
                          "package": package, "authorization": auth,
                          "body": json.loads(body) if body else None}
                with fake._lock:
                    # what Google held when the call came (e.g. never acknowledge a PENDING purchase)
                    record["state"] = (fake.purchases.get(token) or {}).get("subscriptionState")
                    fake.calls.append(record)
                    delays = fake.delays.get(method)
                    delay = delays.popleft() if delays else 0
                if delay:
                    time.sleep(delay)
                if not auth.startswith("Bearer ") or auth[7:] not in fake.issued_tokens:
                    return self._error(401, "Request had invalid authentication credentials.", "unauthorized")
                if fake._fail(method, self):
                    return
                if package != fake.package:
                    return self._error(403, "The caller does not have permission", "permissionDenied")
                with fake._lock:
                    purchase = fake.purchases.get(token)
                    if purchase is None:
                        return self._error(410, "The subscription purchase is no longer available.",
                                           "subscriptionPurchaseNoLongerAvailable")
                    handler = getattr(fake, f"_do_{method}", None)
                    if handler is None:
                        return self._error(404, f"unknown method {method}")
                    status, answer = handler(purchase, record["body"] or {}, product)
                if status == 200:
                    return self._send(status, answer)
                return self._error(status, answer["message"])

        return Handler

    def _fail(self, method: str, handler=None) -> bool:
        with self._lock:
            queue = self.failures.get(method)
            status = queue.popleft() if queue else None
        if status is None:
            return False
        if handler is not None:
            handler._error(status, f"injected failure {status}", "backendError")
        return True

    # --- what Google does (called with the lock held) ---------------------------------------------
    def _do_get(self, purchase, body, product):
        return 200, purchase

    def _do_acknowledge(self, purchase, body, product):
        if not product:
            return 400, {"message": "subscriptionId is required"}
        if purchase.get("subscriptionState") == "SUBSCRIPTION_STATE_PENDING":
            return 400, {"message": "A pending purchase cannot be acknowledged."}
        purchase["acknowledgementState"] = "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"
        purchase.pop("outOfAppPurchaseContext", None)  # Google clears it once acknowledged
        return 200, {}

    def _do_cancel(self, purchase, body, product):
        purchase["subscriptionState"] = "SUBSCRIPTION_STATE_CANCELED"
        purchase["canceledStateContext"] = {"developerInitiatedCancellation": {}}
        for item in purchase.get("lineItems", []):
            item.get("autoRenewingPlan", {}).pop("autoRenewEnabled", None)
        purchase["etag"] = uuid.uuid4().hex
        return 200, {}

    def _do_revoke(self, purchase, body, product):
        now = rfc3339(datetime.now(UTC))
        purchase["subscriptionState"] = "SUBSCRIPTION_STATE_EXPIRED"
        purchase["canceledStateContext"] = {"developerInitiatedCancellation": {}}
        for item in purchase.get("lineItems", []):
            item["expiryTime"] = now
            item.get("autoRenewingPlan", {}).pop("autoRenewEnabled", None)
        purchase["etag"] = uuid.uuid4().hex
        return 200, {}

    def _do_defer(self, purchase, body, product):
        context = body.get("deferralContext") or {}
        if context.get("etag") != purchase.get("etag"):
            return 409, {"message": "The etag does not match: the purchase changed."}
        seconds = int(str(context.get("deferDuration", "0s")).rstrip("s"))
        details = []
        for item in purchase.get("lineItems", []):
            item["expiryTime"] = rfc3339(_parse_time(item["expiryTime"]) + timedelta(seconds=seconds))
            details.append({"productId": item["productId"], "expiryTime": item["expiryTime"]})
        purchase["etag"] = uuid.uuid4().hex
        return 200, {"itemExpiryTimeDetails": details}


def pubsub_body(notification: dict | None = None, *, message_id: str | None = None, data: str | None = None,
                snake_case: bool = False) -> bytes:
    """A Pub/Sub push body carrying `notification` base64-encoded in message.data."""
    if data is None:
        data = base64.b64encode(json.dumps(notification).encode()).decode()
    message_id = message_id or str(uuid.uuid4().int)[:16]
    message = {"data": data, "publishTime": rfc3339(datetime.now(UTC)), "attributes": {}}
    message["message_id" if snake_case else "messageId"] = message_id
    return json.dumps({"message": message, "subscription": "projects/test-project/subscriptions/play-rtdn"}).encode()
