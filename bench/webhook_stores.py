"""The stores' webhook requests for bench/webhook_ingest.py: realistic signed bodies of each store, sent to
its real adapter, and the settings (plus the fake served beside) under which the app accepts them.

`Stores(port)` makes what the run needs once: a certificate chain for Apple (its root written to a file,
the only root the app trusts), the Google fake running as a server (it serves the certificates that sign
Pub/Sub's OIDC tokens), and the Stripe events the Stripe fake emits for a few subscriptions (templates:
each request gets its own event id). `requests(store)` is a generator of (headers, body) for
webhook_ingest.write_bodies; `settings` the environment of the served app."""

import json
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

STRIPE_WEBHOOK_SECRET = "whsec_bench"
XSOLLA_SECRET = "bench-xsolla-secret"
GOOGLE_PACKAGE = "network.loki.messenger"  # the captured RTDNs' package (tests/fixtures/google)
GOOGLE_AUDIENCE = "https://billing.example.com/webhooks/google"
GOOGLE_PUSH_ACCOUNT = "pubsub-push@bench-project.iam.gserviceaccount.com"
# Pub/Sub signs a token per push endpoint and reuses it while it is valid (an hour): a new one every this
# many pushes keeps the bench from measuring one token only.
GOOGLE_PUSHES_PER_TOKEN = 100
APPLE_SIGNED_TEMPLATES = 200  # distinct signed transactions; each notification is signed on its own


class Stores:
    def __init__(self, fake_port: int):
        from tests.fakes.apple import BUNDLE_ID, AppleChain
        from tests.fakes.google import FakeGooglePlay

        self.apple_chain = AppleChain(name="Bench")
        fd, self.apple_root = tempfile.mkstemp(suffix=".pem", prefix="bench-apple-root-")
        with open(fd, "wb") as f:
            f.write(self.apple_chain.root_pem)
        self.google = FakeGooglePlay(package=GOOGLE_PACKAGE, port=fake_port).start()
        self.settings = {
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET, "STRIPE_ALLOW_TEST_MODE": "1",
            "APPLE_BUNDLE_ID": BUNDLE_ID, "APPLE_ENVIRONMENT": "Sandbox", "APPLE_ROOT_CERTIFICATES": self.apple_root,
            "APPLE_ONLINE_CHECKS": "0", "APPLE_ALLOW_SANDBOX": "1",
            "GOOGLE_PLAY_PACKAGE_NAME": GOOGLE_PACKAGE, "GOOGLE_PUBSUB_AUDIENCE": GOOGLE_AUDIENCE,
            "GOOGLE_PUBSUB_SERVICE_ACCOUNT": GOOGLE_PUSH_ACCOUNT,
            "GOOGLE_PUBSUB_CERTS_URL": f"{self.google.base_url}/certs", "GOOGLE_ALLOW_TEST_PURCHASES": "1",
            "XSOLLA_WEBHOOK_SECRET": XSOLLA_SECRET, "XSOLLA_ALLOW_DRY_RUN": "1",
        }
        self._stripe_templates: list[dict] | None = None
        self._apple_templates: list[tuple[str, str]] | None = None

    def stop(self) -> None:
        self.google.stop()
        Path(self.apple_root).unlink(missing_ok=True)

    def requests(self, store: str):
        return {"stripe": self.stripe_requests, "apple": self.apple_requests, "google": self.google_requests,
                "xsolla": self.xsolla_requests}[store]

    # --- Stripe -------------------------------------------------------------------------------------
    def stripe_requests(self, run: str, count: int):
        from tests.fakes.stripe import sign

        templates = self._stripe_events()
        for i in range(count):
            event = {**templates[i % len(templates)], "id": f"evt_{run}_{i}", "created": int(time.time())}
            body = json.dumps(event, separators=(",", ":")).encode()
            yield {"Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET)}, body

    def _stripe_events(self) -> list[dict]:
        """What the Stripe fake emits for a few subscriptions started and renewed (customer, subscription,
        invoice and payment events)."""
        if self._stripe_templates is None:
            from tests.fakes.stripe import FakeStripe

            fake = FakeStripe()
            price = fake.add_price(fake.add_product("Premium"), unit_amount=999)
            for i in range(20):
                customer = fake.customer_create({"email": f"bench{i}@example.com"})
                sub = fake.start_subscription(customer, price, payment_method="pm_card_visa",
                                              metadata={"user_id": f"bench-{i}"})
                fake.renew(sub["id"])
            self._stripe_templates = fake.take_events()
        return self._stripe_templates

    # --- Apple --------------------------------------------------------------------------------------
    def apple_requests(self, run: str, count: int):
        from tests.fakes.apple import notification_claims, signed_body

        templates = self._apple_signed()
        for i in range(count):
            transaction, renewal = templates[i % len(templates)]
            claims = notification_claims("DID_RENEW", chain=self.apple_chain, transaction=None, renewal=None,
                                         signedTransactionInfo=transaction, signedRenewalInfo=renewal)
            yield {}, signed_body(self.apple_chain, claims).replace(b" ", b"")

    def _apple_signed(self) -> list[tuple[str, str]]:
        if self._apple_templates is None:
            from tests.fakes.apple import renewal_claims, transaction_claims

            self._apple_templates = []
            for i in range(APPLE_SIGNED_TEMPLATES):
                transaction = transaction_claims(original_transaction_id=str(2_000_000_100_000_000 + i),
                                                 transaction_id=str(2_000_000_200_000_000 + i), reason="RENEWAL")
                self._apple_templates.append((self.apple_chain.sign(transaction),
                                              self.apple_chain.sign(renewal_claims(transaction))))
        return self._apple_templates

    # --- Google -------------------------------------------------------------------------------------
    def google_requests(self, run: str, count: int):
        from tests.fakes.google import pubsub_body

        captured = sorted((FIXTURES / "google" / "play_sequences").glob("*.json"))
        steps = [step["developerNotification"] for path in captured for step in json.loads(path.read_text())["steps"]]
        token = ""
        for i in range(count):
            if i % GOOGLE_PUSHES_PER_TOKEN == 0:
                token = self.google.push_token(audience=GOOGLE_AUDIENCE, email=GOOGLE_PUSH_ACCOUNT)
            notification = steps[i % len(steps)]
            body = pubsub_body(notification, message_id=f"{int(uuid.uuid4().int % 10**16)}{i}")
            yield {"Authorization": f"Bearer {token}"}, body.replace(b": ", b":").replace(b", ", b",")

    # --- Xsolla -------------------------------------------------------------------------------------
    def xsolla_requests(self, run: str, count: int):
        from billing.providers.xsolla.auth import authorization_header

        payment = json.loads((FIXTURES / "xsolla" / "sdk_php_tests" / "payment.json").read_text())
        update = json.loads((FIXTURES / "xsolla" / "sdk_php_tests" / "update_subscription.json").read_text())
        for i in range(count):
            if i % 2:
                notification = {**payment, "transaction": {**payment["transaction"], "id": int(f"9{i}")}}
            else:
                notification = {**update, "subscription": {**update["subscription"], "subscription_id": f"{run}{i}"}}
            body = json.dumps(notification, separators=(",", ":")).encode()
            yield {"Authorization": authorization_header(body, XSOLLA_SECRET)}, body
