from selenium.webdriver.common.by import By

from billing.statuses import Status
from tests.browser.base import BrowserTestCase
from tests.factories import SubscriptionFactory


class SubscriptionExportLinkTests(BrowserTestCase):
    def test_the_export_link_carries_the_lists_filters(self):
        SubscriptionFactory(provider_subscription_id="sub_browser", status=Status.ACTIVE)
        self.login(self.staff_user("finance", superuser=False, permissions=(
            "billing.view_subscription", "billing.export_finance")))
        self.visit("/admin/billing/subscription/?status__exact=ACTIVE")
        link = self.wait_for(".object-tools a[href*='/export/']")
        assert link.text.upper() == "EXPORT CSV"
        assert link.get_attribute("href").endswith("/admin/billing/subscription/export/?status__exact=ACTIVE")
        assert "sub_browser" in self.browser.find_element(By.ID, "result_list").text
        self.screenshot("finance-subscriptions-export-link")
