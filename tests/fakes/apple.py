"""The App Store, faked at the network edge: a certificate chain of our own that signs JWS the way
Apple does (root → intermediate → leaf, with the key identifiers, key usages and Apple OIDs the
library's X509_STRICT check requires), and a local App Store Server API (ThreadingHTTPServer) that the
library's real client talks to through APPLE_API_BASE_URL. Beside them, what the real App Store sent
(genuine sandbox notifications, tests/fixtures/apple/SOURCES.md)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asn1
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

LEAF_OID = "1.2.840.113635.100.6.11.1"
INTERMEDIATE_OID = "1.2.840.113635.100.6.2.1"
BUNDLE_ID = "com.example.billing"
APP_APPLE_ID = 1234


# The real sandbox captures: Apple-signed, for this app and subscription.
REAL_CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apple" / "signed_real_sandbox"
REAL_BUNDLE_ID = "com.loki-project.loki-messenger"
REAL_APP_APPLE_ID = 1470168868
REAL_ORIGINAL_TRANSACTION_ID = "2000001024993299"


def real_body(name: str) -> bytes:
    """One captured notification body, as Apple POSTed it."""
    return (REAL_CAPTURES / name).read_bytes()


def real_sequence(prefix: str) -> list[bytes]:
    """A captured lifecycle ("seq1", "seq2"), in the order Apple sent it."""
    return [p.read_bytes() for p in sorted(REAL_CAPTURES.glob(f"{prefix}_*.json"))]


def now_ms() -> int:
    return int(time.time() * 1000)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                      "Billing Tests")])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, oid: str | None = None, issuer_public=None,
          not_before: datetime | None = None, ocsp_url: str | None = None) -> x509.Certificate:
    start = not_before or datetime.now(UTC) - timedelta(days=30)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + timedelta(days=400))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer_public is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                                        critical=False)
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    if oid:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), b"\x05\x00"),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class AppleChain:
    """A root → intermediate → leaf chain that signs like the App Store."""

    def __init__(self, *, name: str = "Test", not_before: datetime | None = None, ocsp_url: str | None = None):
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
        self.root_key, self.intermediate_key, self.leaf_key = keys
        self.root = _cert(f"{name} Root", self.root_key, f"{name} Root", self.root_key, ca=True, not_before=not_before)
        self.intermediate = _cert(f"{name} Intermediate", self.intermediate_key, f"{name} Root", self.root_key, ca=True,
                                  oid=INTERMEDIATE_OID, issuer_public=self.root_key.public_key(), not_before=not_before,
                                  ocsp_url=ocsp_url)
        self.leaf = _cert(f"{name} Leaf", self.leaf_key, f"{name} Intermediate", self.intermediate_key, ca=False,
                          oid=LEAF_OID, issuer_public=self.intermediate_key.public_key(), not_before=not_before,
                          ocsp_url=ocsp_url)

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(Encoding.DER)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(Encoding.PEM)

    def x5c(self) -> list[str]:
        return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in (self.leaf, self.intermediate,
                                                                                   self.root)]

    def sign(self, claims: dict, *, x5c: list[str] | None = None) -> str:
        return jwt.encode(claims, self.leaf_key, algorithm="ES256", headers={"x5c": x5c or self.x5c()})


# --- Claims builders (shapes as in Apple's library test data) ---------------------------------

def transaction_claims(*, original_transaction_id: str = "2000000000000001", transaction_id: str | None = None,
                       product_id: str = "com.example.premium.monthly", environment: str = "Sandbox",
                       bundle_id: str = BUNDLE_ID, price: int = 9990, currency: str = "USD",
                       reason: str = "PURCHASE", purchase_ms: int | None = None, expires_ms: int | None = None,
                       app_account_token: str | None = None, **extra) -> dict:
    purchase_ms = purchase_ms if purchase_ms is not None else now_ms() - 60_000
    claims = {
        "transactionId": transaction_id or original_transaction_id,
        "originalTransactionId": original_transaction_id,
        "webOrderLineItemId": str(int(original_transaction_id) + 7),
        "bundleId": bundle_id,
        "productId": product_id,
        "subscriptionGroupIdentifier": "21000001",
        "purchaseDate": purchase_ms,
        "originalPurchaseDate": purchase_ms,
        "expiresDate": expires_ms if expires_ms is not None else purchase_ms + 30 * 86_400_000,
        "quantity": 1,
        "type": "Auto-Renewable Subscription",
        "inAppOwnershipType": "PURCHASED",
        "signedDate": now_ms(),
        "environment": environment,
        "transactionReason": reason,
        "storefront": "USA",
        "storefrontId": "143441",
        "price": price,
        "currency": currency,
    }
    if app_account_token:
        claims["appAccountToken"] = app_account_token
    claims.update(extra)
    return claims


def renewal_claims(transaction: dict, **extra) -> dict:
    claims = {
        "originalTransactionId": transaction["originalTransactionId"],
        "autoRenewProductId": transaction["productId"],
        "productId": transaction["productId"],
        "autoRenewStatus": 1,
        "signedDate": now_ms(),
        "environment": transaction["environment"],
        "recentSubscriptionStartDate": transaction["purchaseDate"],
        "renewalDate": transaction["expiresDate"],
        "renewalPrice": transaction.get("price"),
        "currency": transaction.get("currency"),
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def notification_claims(kind: str, subtype: str | None = None, *, chain: AppleChain | None = None,
                        transaction: dict | None = None, renewal: dict | None = None, status: int | None = 1,
                        environment: str = "Sandbox", bundle_id: str = BUNDLE_ID, app_apple_id: int = APP_APPLE_ID,
                        signed_ms: int | None = None, **data_extra) -> dict:
    """A decoded notification; with `chain`, the nested transaction and renewal are signed by it."""
    data = {"environment": environment, "bundleId": bundle_id, "appAppleId": app_apple_id, "bundleVersion": "1.0"}
    if transaction is not None:
        data["signedTransactionInfo"] = chain.sign(transaction)
    if renewal is not None:
        data["signedRenewalInfo"] = chain.sign(renewal)
    if status is not None:
        data["status"] = status
    data.update(data_extra)
    claims = {"notificationType": kind, "notificationUUID": str(uuid.uuid4()), "version": "2.0",
              "signedDate": signed_ms if signed_ms is not None else now_ms(), "data": data}
    if subtype:
        claims["subtype"] = subtype
    return claims


def signed_body(chain: AppleChain, claims: dict) -> bytes:
    return json.dumps({"signedPayload": chain.sign(claims)}).encode()


# --- A legacy app receipt (PKCS#7 SignedData around the ASN.1 receipt set) ---------------------

def _der(write) -> bytes:
    encoder = asn1.Encoder()
    encoder.start()
    write(encoder)
    return encoder.output()


def _attribute_set(attributes: list[tuple[int, bytes]]) -> bytes:
    def write(e):
        e.enter(asn1.Numbers.Set)
        for kind, value in attributes:
            e.enter(asn1.Numbers.Sequence)
            e.write(kind, asn1.Numbers.Integer)
            e.write(1, asn1.Numbers.Integer)
            e.write(value, asn1.Numbers.OctetString)
            e.leave()
        e.leave()
    return _der(write)


def app_receipt(chain: AppleChain, *, transaction_id: str | None, bundle_id: str = BUNDLE_ID) -> str:
    """A base64 app receipt as StoreKit 1 apps send it: attribute 17 (an in-app purchase) holding
    1703 (transaction id); signed PKCS#7 like Apple's (by our test leaf, which nobody trusts)."""
    utf8 = lambda text: _der(lambda e: e.write(text, asn1.Numbers.UTF8String))  # noqa: E731
    attributes = [(2, utf8(bundle_id)), (3, utf8("1.0"))]
    if transaction_id is not None:
        attributes.append((17, _attribute_set([(1701, _der(lambda e: e.write(1, asn1.Numbers.Integer))),
                                               (1702, utf8("com.example.premium.monthly")),
                                               (1703, utf8(transaction_id)), (1705, utf8(transaction_id))])))
    signed = (pkcs7.PKCS7SignatureBuilder().set_data(_attribute_set(attributes))
              .add_signer(chain.leaf, chain.leaf_key, hashes.SHA256()).sign(Encoding.DER, []))
    return base64.b64encode(signed).decode()


# --- The App Store Server API -----------------------------------------------------------------

class ApiKey:
    """An In-App Purchase key as App Store Connect hands it out (.p8, PKCS#8 PEM)."""

    def __init__(self, key_id: str = "TESTKEY123", issuer_id: str = "57246542-96fe-1a63-e053-0824d011072a"):
        self.key_id, self.issuer_id = key_id, issuer_id
        self.private_key = ec.generate_private_key(ec.SECP256R1())

    def p8(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())


class FakeAppStoreServer:
    """`statuses[any transaction id]` → the lastTransactions items to answer for it (signed JWS);
    `history` → the signedPayloads of the notification history, served `page_size` at a time;
    `script` → canned (status, json) answers served first, one per request."""

    def __init__(self, *, api_key: ApiKey, bundle_id: str = BUNDLE_ID, environment: str = "Sandbox"):
        self.api_key, self.bundle_id, self.environment = api_key, bundle_id, environment
        self.statuses: dict[str, list[dict]] = {}
        self.history: list[str] = []
        self.page_size = 20
        self.script: list[tuple[int, dict | None]] = []
        self.requests: list[dict] = []
        # What the staff actions reach: each subscription's claims (re-signed when Apple changes them),
        # the orders a receipt e-mail names, and the consumption answers received.
        self.subscriptions: dict[str, dict] = {}
        self.orders: dict[str, list[str]] = {}
        self.consumption: dict[str, list[dict]] = {}
        self.extensions: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAppStoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_subscription(self, chain: AppleChain, transaction: dict, renewal: dict | None = None, *,
                         status: int = 1, also_for: tuple[str, ...] = ()) -> None:
        item = {"status": status, "originalTransactionId": transaction["originalTransactionId"],
                "signedTransactionInfo": chain.sign(transaction)}
        if renewal is not None:
            item["signedRenewalInfo"] = chain.sign(renewal)
        keys = {str(k) for k in (transaction["originalTransactionId"], transaction["transactionId"], *also_for)}
        for key in keys:
            self.statuses[key] = [item]
        self.subscriptions[str(transaction["originalTransactionId"])] = {
            "chain": chain, "transaction": dict(transaction), "renewal": dict(renewal) if renewal else None,
            "status": status, "keys": keys}

    def add_order(self, order_id: str, chain: AppleChain, transactions: list[dict]) -> None:
        """The order id of an App Store receipt e-mail, naming these transactions."""
        self.orders[order_id] = [chain.sign(t) for t in transactions]

    def _extend(self, original_transaction_id: str, body: dict) -> tuple[int, dict]:
        """Extend a Subscription Renewal Date: 1 to 90 days, a reason code 0 to 3, a request identifier; at most
        two extensions a year per subscription; the latest transaction's expiresDate (and the renewal
        date) move by the days given, as Apple's next read and its RENEWAL_EXTENDED show them."""
        days, code, request_id = body.get("extendByDays"), body.get("extendReasonCode"), body.get("requestIdentifier")
        if not isinstance(days, int) or not 1 <= days <= 90:
            return 400, {"errorCode": 4000009, "errorMessage": "Invalid extend by days value."}
        if code not in (0, 1, 2, 3):
            return 400, {"errorCode": 4000010, "errorMessage": "Invalid extend reason code."}
        if not request_id or len(request_id) > 128:
            return 400, {"errorCode": 4000011, "errorMessage": "Invalid request identifier."}
        sub = self.subscriptions.get(original_transaction_id)
        if sub is None:
            return 404, {"errorCode": 4040005, "errorMessage": "Original transaction id not found."}
        if sub["status"] not in (1, 4) or self.extensions.get(original_transaction_id, 0) >= 2:
            error = (4030004, "Subscription extensions are not allowed for this subscription.") if sub["status"] \
                not in (1, 4) else (4030005, "The subscription reached the maximum number of extensions.")
            return 403, {"errorCode": error[0], "errorMessage": error[1]}
        self.extensions[original_transaction_id] = self.extensions.get(original_transaction_id, 0) + 1
        transaction = sub["transaction"]
        transaction["expiresDate"] += days * 86_400_000
        transaction["signedDate"] = now_ms()
        renewal = sub["renewal"]
        if renewal is not None:
            renewal["renewalDate"] = transaction["expiresDate"]
            renewal["signedDate"] = now_ms()
        self.add_subscription(sub["chain"], transaction, renewal, status=sub["status"],
                              also_for=tuple(sub["keys"]))
        return 200, {"originalTransactionId": original_transaction_id,
                     "webOrderLineItemId": transaction.get("webOrderLineItemId"), "success": True,
                     "effectiveDate": transaction["expiresDate"]}

    # The checks Apple makes on the bearer token (ES256, our key id, issuer, audience, bundle id).
    def _authorized(self, header: str) -> dict | None:
        if not header.startswith("Bearer "):
            return None
        token = header.removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, self.api_key.private_key.public_key(), algorithms=["ES256"],
                                audience="appstoreconnect-v1", options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError:
            return None
        if jwt.get_unverified_header(token).get("kid") != self.api_key.key_id:
            return None
        if claims.get("iss") != self.api_key.issuer_id or claims.get("bid") != self.bundle_id:
            return None
        return claims

    def _answer(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict | None]:
        if self.script:
            return self.script.pop(0)
        if method == "GET" and path.startswith("/inApps/v1/subscriptions/"):
            tid = path.rsplit("/", 1)[1]
            items = self.statuses.get(tid)
            if items is None:
                return 404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}
            return 200, {"environment": self.environment, "bundleId": self.bundle_id, "appAppleId": APP_APPLE_ID,
                         "data": [{"subscriptionGroupIdentifier": "21000001", "lastTransactions": items}]}
        if method == "PUT" and path.startswith("/inApps/v1/subscriptions/extend/") and not path.endswith("/mass"):
            return self._extend(path.rsplit("/", 1)[1], body or {})
        if method == "PUT" and path.startswith("/inApps/v2/transactions/consumption/"):
            body = body or {}
            if body.get("customerConsented") is not True:
                return 400, {"errorCode": 4000035, "errorMessage": "Invalid customer consented value."}
            if body.get("deliveryStatus") not in ("DELIVERED", "UNDELIVERED_QUALITY_ISSUE", "UNDELIVERED_WRONG_ITEM",
                                                  "UNDELIVERED_SERVER_OUTAGE", "UNDELIVERED_OTHER"):
                return 400, {"errorCode": 4000036, "errorMessage": "Invalid delivery status."}
            tid = path.rsplit("/", 1)[1]
            if tid not in self.statuses:
                return 404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}
            self.consumption.setdefault(tid, []).append(body)
            return 202, None
        if method == "GET" and path.startswith("/inApps/v1/lookup/"):
            signed = self.orders.get(path.rsplit("/", 1)[1])
            return 200, ({"status": 0, "signedTransactions": signed} if signed else {"status": 1})
        if method == "POST" and path == "/inApps/v1/notifications/history":
            start = int(query.get("paginationToken", ["0"])[0])
            page = self.history[start:start + self.page_size]
            more = start + self.page_size < len(self.history)
            answer = {"hasMore": more, "notificationHistory": [
                {"signedPayload": p, "sendAttempts": [{"attemptDate": now_ms(), "sendAttemptResult": "SUCCESS"}]}
                for p in page]}
            if more:
                answer["paginationToken"] = str(start + self.page_size)
            return 200, answer
        return 404, {"errorCode": 4040000, "errorMessage": f"no route {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str):
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                claims = fake._authorized(self.headers.get("Authorization", ""))
                fake.requests.append({"method": method, "path": parsed.path, "query": parse_qs(parsed.query),
                                      "body": body, "token": claims})
                if claims is None:
                    status, answer = 401, None
                else:
                    status, answer = fake._answer(method, parsed.path, parse_qs(parsed.query), body)
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

            def log_message(self, *args):
                pass

        return Handler
