"""The double payments queue as staff see it: the admin index's "Needs attention" row leads to it, and
a row shows both subscriptions and the link to their store actions."""

from selenium.webdriver.common.by import By

from billing import double_payments
from tests.browser.base import BrowserTestCase
from tests.factories import ProductFactory, SubscriberFactory, SubscriptionFactory


class DoublePaymentQueueTests(BrowserTestCase):
    def test_the_needs_attention_row_leads_to_the_pair_and_its_store_actions(self):
        user = SubscriberFactory(external_id="4242")
        web = SubscriptionFactory(subscriber=user, provider="stripe", provider_subscription_id="sub_web4242",
                                  product=ProductFactory(provider="stripe", store_product_id="price_p"))
        ios = SubscriptionFactory(subscriber=user, provider="apple", provider_subscription_id="2000004242",
                                  product=ProductFactory(provider="apple", store_product_id="com.example.p"))
        double_payments.sweep()
        self.login(self.staff_user("dora"))
        self.visit("/admin/")
        self.browser.find_element(By.PARTIAL_LINK_TEXT, "Customers paying twice").click()
        self.wait_for("#result_list")
        page = self.browser.find_element(By.ID, "result_list").text
        assert "stripe:sub_web4242" in page and "apple:2000004242" in page and "premium" in page
        self.screenshot("double-payments-queue")
        self.browser.find_element(By.PARTIAL_LINK_TEXT, "refund or cancel one at its store").click()
        self.wait_for("#result_list")
        listed = self.browser.find_element(By.ID, "result_list").text
        assert "sub_web4242" in listed and "2000004242" in listed
        assert f"id__in={web.pk},{ios.pk}" in self.browser.current_url
