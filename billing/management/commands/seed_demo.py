"""A small demo data set for `make run`: users across the four stores and several statuses, written
through the one write path. Idempotent: re-running applies the same states again (nothing doubles)."""

import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Entitlement, Product
from billing.snapshots import Cause, CauseKind, Environment, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

PRODUCTS = [  # provider, store product id, label, price (minor units), currency
    ("stripe", "price_demo_premium_monthly", "Premium monthly (web)", 999, "USD"),
    ("apple", "com.example.app.premium.monthly", "Premium monthly (iOS)", 999, "USD"),
    ("google", "premium_monthly", "Premium monthly (Android)", 999, "USD"),
    ("xsolla", "premium_monthly", "Premium monthly (web shop)", 899, "EUR"),
    ("manual", "entitlement:premium", "premium (granted by staff)", None, ""),
]
ADMIN_USERNAME = "admin"
PASSWORD_FILE = Path(settings.BASE_DIR) / "var" / "demo-admin-password.txt"


def apple_token(user_id: int) -> str:
    # The form apps in the field build from an integer user id (ARCHITECTURE.md).
    return f"{user_id:08x}-0000-0000-0000-000000000000"


class Command(BaseCommand):
    help = "Create a small demo data set (idempotent) and, with DEBUG on, a local admin login."

    def add_arguments(self, parser):
        parser.add_argument("--admin-password-file", type=Path, default=PASSWORD_FILE,
                            help="where the generated admin password is kept (DEBUG only)")

    def handle(self, *args, admin_password_file, **options):
        with transaction.atomic():
            premium, _ = Entitlement.objects.get_or_create(name="premium",
                                                           defaults={"description": "All paid features"})
            for provider, store_id, label, price, currency in PRODUCTS:
                product, _ = Product.objects.get_or_create(
                    provider=provider, store_product_id=store_id,
                    defaults={"label": label, "price_minor": price, "currency": currency,
                              "period_unit": "month" if price else "", "period_value": 1 if price else None})
                product.entitlements.add(premium)
                if provider == "stripe" and not product.offered:  # on sale, so the web API demo can buy it
                    product.offered, product.offered_changed_at = True, timezone.now()
                    product.save(update_fields=["offered", "offered_changed_at", "updated_at"])
        results = [apply_snapshot(s, Cause(CauseKind.BACKFILL, ref="seed_demo", note="demo data"))
                   for s in self.snapshots()]
        created = sum(1 for r in results if r.outcome == "created")
        self.stdout.write(f"Demo data: {len(results)} subscriptions ({created} new) for users 1001 to 1007 and one "
                          "orphan.")
        self.admin_login(admin_password_file)
        port = "8088"
        self.stdout.write(
            "\nTry it:\n"
            f"  curl http://127.0.0.1:{port}/api/subscriptions/check/1001\n"
            f"  curl http://127.0.0.1:{port}/api/subscriptions/check/1005   # expired: not subscribed\n"
            f"  admin: http://127.0.0.1:{port}/admin/\n")

    def snapshots(self):
        now = timezone.now()
        day = timedelta(days=1)
        started = now - 20 * day

        def snap(provider, pid, status, product, **kw):
            kw.setdefault("started_at", started)
            kw.setdefault("observed_at", now - timedelta(hours=1))
            return Snapshot(provider=provider, provider_subscription_id=pid, status=status, store_product_id=product,
                            raw={"demo": True, "provider": provider, "id": pid}, **kw)

        def paid(tid, at, amount=999, currency="USD", kind=TransactionKind.PURCHASE, refers_to="", country="US"):
            return (TransactionRecord(tid, kind, at, amount, currency, order_id=refers_to or tid, refers_to=refers_to,
                                      country=country, period_start=None if refers_to else at,
                                      period_end=None if refers_to else at + 30 * day),)

        return [
            snap("stripe", "sub_demo1001", Status.ACTIVE, "price_demo_premium_monthly", user_id="1001",
                 email="ann@example.com", identity_field="stripe_customer_id", identity_value="cus_demo1001",
                 expires_at=now + 10 * day, current_period_start=now - 20 * day, current_period_end=now + 10 * day,
                 period_unit="month", period_value=1, amount_minor=999, currency="USD", auto_renew=True,
                 transactions=paid("in_demo1001_1", started)),
            snap("apple", "2000000000001002", Status.TRIAL, "com.example.app.premium.monthly", user_id="1002",
                 identity_field="apple_app_account_token", identity_value=apple_token(1002),
                 started_at=now - 2 * day, expires_at=now + 5 * day, period_unit="month", period_value=1,
                 auto_renew=True, environment=Environment.SANDBOX),
            snap("google", "demo-purchase-token-1003", Status.ON_GRACE, "premium_monthly", user_id="1003",
                 identity_field="google_obfuscated_account_id", identity_value="1003",
                 expires_at=now - 1 * day, grace_until=now + 2 * day, period_unit="month", period_value=1,
                 amount_minor=999, currency="USD", auto_renew=True, transactions=paid("GPA.demo-1003-0", started)),
            snap("xsolla", "demo-xsolla-1004", Status.CANCELED, "premium_monthly", user_id="1004",
                 identity_field="xsolla_user_id", identity_value="1004", expires_at=now + 8 * day,
                 canceled_at=now - 3 * day, auto_renew=False, amount_minor=899, currency="EUR",
                 transactions=paid("xsolla-demo-1004-1", started, 899, "EUR", country="DE")),
            snap("stripe", "sub_demo1005", Status.EXPIRED, "price_demo_premium_monthly", user_id="1005",
                 started_at=now - 70 * day, expires_at=now - 10 * day, ended_at=now - 10 * day, auto_renew=False,
                 transactions=paid("in_demo1005_1", now - 70 * day) + paid("in_demo1005_2", now - 40 * day)),
            snap("apple", "2000000000001006", Status.REVOKED, "com.example.app.premium.monthly", user_id="1006",
                 identity_field="apple_app_account_token", identity_value=apple_token(1006),
                 expires_at=now + 15 * day, ended_at=now - 2 * day,
                 transactions=paid("2000000000001006", started)
                 + paid("2000000000001006:refund", now - 2 * day, kind=TransactionKind.REFUND,
                        refers_to="2000000000001006")),
            snap("manual", "manual-demo-1007", Status.ACTIVE, "entitlement:premium", user_id="1007",
                 expires_at=None, auto_renew=False),
            # A Google purchase whose user is unknown: support links it in the admin.
            snap("google", "demo-purchase-token-orphan", Status.ACTIVE, "premium_monthly",
                 identity_field="google_obfuscated_account_id", identity_value="unknown-9999",
                 expires_at=now + 25 * day, auto_renew=True),
        ]

    def admin_login(self, password_file: Path):
        User = get_user_model()
        if not settings.DEBUG:
            self.stdout.write("No admin login made (DEBUG is off): create one with `python manage.py "
                              "createsuperuser`.")
            return
        existing = User.objects.filter(username=ADMIN_USERNAME).first()
        if existing is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        elif password_file.exists() and existing.check_password(password_file.read_text().strip()):
            password = password_file.read_text().strip()
        else:
            self.stdout.write(f"Admin login: user '{ADMIN_USERNAME}' exists with a password set by you.")
            return
        self.stdout.write(f"Admin login (local, DEBUG only): user '{ADMIN_USERNAME}', password '{password}' "
                          f"(kept in {password_file}).")

