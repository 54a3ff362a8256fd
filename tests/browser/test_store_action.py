"""A store action in a real browser: a support lead opens a Stripe subscription, presses its "Stripe:
cancel" button, picks "now", gives a reason on the confirmation page, and sees the store's new state
on the subscription's page. Stripe is the local fake (tests/fakes/stripe.py), reached through the
stripe library as in production."""

from django.test import override_settings
from selenium.webdriver.common.by import By

from audit.models import AuditEntry
from billing.models import Subscription
from tests.browser.base import BrowserTestCase
from tests.fakes.stripe import FakeStripe
from tests.providers.stripe.conftest import SECRET_KEY, WEBHOOK_SECRET, deliver_events


class StoreActionTests(BrowserTestCase):
    def setUp(self):
        super().setUp()
        self.fake = FakeStripe().start()
        self.addCleanup(self.fake.stop)
        overrides = override_settings(STRIPE_API_BASE=self.fake.url, STRIPE_SECRET_KEY=SECRET_KEY,
                                      STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
        overrides.enable()
        self.addCleanup(overrides.disable)
        price = self.fake.add_price(self.fake.add_product("Premium"), unit_amount=999, interval="month")
        customer = self.fake.customer_create({"email": "u1003@example.com", "metadata": {"user_id": "1003"}})
        sub = self.fake.start_subscription(customer, price, payment_method="pm_card_visa", metadata={"user_id": "1003"})
        deliver_events(self.fake.take_events())
        self.subscription = Subscription.objects.get(provider="stripe", provider_subscription_id=sub["id"])

    def test_cancel_now_at_stripe_with_a_reason_shows_the_new_state(self):
        self.login(self.staff_user("lead"))
        self.visit(f"/admin/billing/subscription/{self.subscription.pk}/change/")
        assert self.wait_for(".field-status_label").text.endswith("Active")

        self.browser.find_element(By.LINK_TEXT, "Stripe: cancel (now or at period end)").click()
        self.wait_for("input[name=when][value=now]").click()
        self.browser.find_element(By.NAME, "reason").send_keys("Customer asked by e-mail to stop at once (#4411)")
        self.screenshot("store-action-confirm")
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Cancel at Stripe']").click()

        message = self.wait_for(".messagelist .success")
        assert "canceled now at Stripe, and re-read (ACTIVE → EXPIRED)" in message.text
        assert f"/admin/billing/subscription/{self.subscription.pk}/change/" in self.browser.current_url
        assert self.browser.find_element(By.CSS_SELECTOR, ".field-status_label").text.endswith("Expired")
        self.screenshot("store-action-done")

        assert self.fake.objects[self.subscription.provider_subscription_id]["status"] == "canceled"
        entry = AuditEntry.objects.get(action="store_cancel_now")
        assert entry.reason == "Customer asked by e-mail to stop at once (#4411)" and entry.actor_label == "lead"
