"""The Transactions list's "Export CSV" button as finance staff see it: beside the list's tools, carrying
the list's current filters; absent for staff without the permission."""

from selenium.webdriver.common.by import By

from tests.finance.ledger import at, ledger_row

from .base import BrowserTestCase


class TransactionExportButtonTest(BrowserTestCase):
    def test_button_carries_the_filters_and_only_finance_staff_see_it(self):
        ledger_row(provider_transaction_id="in_1", occurred_at=at("2026-11-05T10:00:00"))
        self.login(self.staff_user("finance", superuser=False,
                                   permissions=("billing.view_transaction", "billing.export_finance")))
        self.visit("/admin/billing/transaction/?provider__exact=stripe")
        button = self.wait_for(".object-tools a[href*='/export/']")
        assert button.text.lower() == "export csv"  # the admin styles object tools in capitals
        assert button.get_attribute("href").endswith("/admin/billing/transaction/export/?provider__exact=stripe")
        self.screenshot("finance-transactions-export-button")

        self.browser.delete_all_cookies()
        self.login(self.staff_user("support", superuser=False, permissions=("billing.view_transaction",)))
        self.visit("/admin/billing/transaction/")
        self.wait_for("#result_list")
        assert not self.browser.find_elements(By.CSS_SELECTOR, ".object-tools a[href*='/export/']")
