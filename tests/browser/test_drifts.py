from datetime import timedelta

from django.utils import timezone
from selenium.webdriver.common.by import By

from billing.models import Drift
from tests.browser.base import BrowserTestCase
from tests.factories import SubscriptionFactory


class DriftListTests(BrowserTestCase):
    def test_staff_see_drifts_per_day_and_store_the_budgets_and_dismiss_one_with_a_reason(self):
        for provider, days_ago in (("google", 0), ("google", 0), ("apple", 1), ("stripe", 3)):
            Drift.objects.create(subscription=SubscriptionFactory(provider=provider), provider=provider,
                                 found_by="reconciliation", found_at=timezone.now() - timedelta(days=days_ago),
                                 observed_at=timezone.now(),
                                 differences={"status": {"ours": "ACTIVE", "store": "CANCELED"},
                                              "auto_renew": {"ours": "true", "store": "false"}})
        self.login(self.staff_user())
        self.visit("/admin/billing/drift/")
        table = self.wait_for("#drifts-per-day")
        assert "GOOGLE" in table.text.upper() and "APPLE" in table.text.upper()  # headers are upper-cased by CSS
        assert "XSOLLA" in self.browser.find_element(By.ID, "store-budgets").text.upper()
        self.screenshot("drifts-list")

        self.browser.find_element(By.CSS_SELECTOR, "input.action-select").click()  # the newest row
        self.browser.find_element(By.CSS_SELECTOR, "select[name=action] option[value=dismiss]").click()
        self.browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
        self.wait_for("textarea[name=reason]").send_keys("Known Google Pub/Sub outage")
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit].default").click()
        self.wait_for(".messagelist")
        dismissed = Drift.objects.filter(dismissed_at__isnull=False, dismiss_reason="Known Google Pub/Sub outage")
        assert dismissed.count() == 1
