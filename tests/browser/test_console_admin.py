"""The admin as a support agent and a finance person use it, in Chromium at 1280 px: the index (our
sections first, the "Needs attention" box whose links land on the right filtered lists), finding a
customer by an Apple transaction id, a Google order id and an e-mail, and the finance dashboard."""

from datetime import timedelta

from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.billing.test_admin_layout import APPLE_TRANSACTION, GOOGLE_ORDER, console_customers
from tests.browser.base import BrowserTestCase
from tests.finance.test_dashboard import metric_days


class ConsoleIndexTests(BrowserTestCase):
    def test_index_reads_well_and_needs_attention_links_land_on_the_filtered_lists(self):
        data = console_customers()
        self.login(self.staff_user("agent"))
        self.visit("/admin/")
        box = self.wait_for("#needs-attention")
        self.screenshot("console-index")
        sections = [c.text for c in self.browser.find_elements(By.CSS_SELECTOR, "#content-main .module caption")]
        assert sections.index("BILLING") < sections.index("ACCOUNTS") < sections.index("STRIPE MIRROR")
        # The webhook table's headings stay on one line (they were squeezed to a letter per line).
        heading = self.browser.find_element(By.CSS_SELECTOR, "#webhook-counts thead th:nth-child(4)")
        assert heading.size["height"] < 2 * heading.size["width"]

        rows = {link.text: link.get_attribute("href")
                for link in box.find_elements(By.CSS_SELECTOR, "th[scope=row] > a")}
        expected = {
            "Dead webhook events": [str(data["dead"].pk)],
            "Google acknowledgements due within a day": ["google:google-token-orphan"],
            "Subscriptions without a user (orphans)": ["google:google-token-orphan"],
            "Products that grant nothing (unmapped)": ["google:gp_unmapped"],
        }
        for label, shown in expected.items():
            self.browser.get(rows[label])
            self.wait_for("#result_list")
            cells = [c.text for c in self.browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr th")]
            assert cells == shown, (label, cells)


class ConsoleSearchTests(BrowserTestCase):
    def search(self, path: str, term: str) -> list[str]:
        self.visit(path)
        box = self.wait_for("#searchbar")
        box.clear()
        box.send_keys(term, Keys.ENTER)
        # The results page loaded: its address carries the search (Chromium may fail a staleness check
        # of the old box with an inspector error rather than a stale-element one).
        WebDriverWait(self.browser, 10).until(lambda browser: "q=" in browser.current_url)
        self.wait_for("#changelist-search")
        return [row.text for row in self.browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]

    def test_an_agent_finds_a_customer_by_apple_transaction_google_order_and_email(self):
        console_customers()
        self.login(self.staff_user("agent", superuser=False, permissions=(
            "accounts.view_subscriber", "billing.view_subscription")))
        for term, user in ((APPLE_TRANSACTION, "1001"), (GOOGLE_ORDER, "1002"), ("cyd@example.com", "1003")):
            rows = self.search("/admin/accounts/subscriber/", term)
            assert len(rows) == 1 and rows[0].startswith(user), (term, rows)
        rows = self.search("/admin/billing/subscription/", GOOGLE_ORDER)
        assert len(rows) == 1 and "google-token-bob" in rows[0] and "1002" in rows[0]
        self.screenshot("console-search-google-order")
        rows = self.search("/admin/billing/subscription/", APPLE_TRANSACTION)
        assert len(rows) == 1 and "On hold" in rows[0]


class FinanceDashboardTests(BrowserTestCase):
    def test_the_dashboard_renders_with_data_at_1280px(self):
        metric_days(start=timezone.now().date() - timedelta(days=30), days=30)
        self.login(self.staff_user("finance", superuser=False, permissions=("finance.view_metricday",)))
        self.visit("/admin/")
        self.browser.find_element(By.LINK_TEXT, "Finance dashboard").click()
        self.wait_for("#chart-subscribers svg")
        charts = self.browser.find_elements(By.CSS_SELECTOR, "svg.finance-chart")
        assert len(charts) == 7
        for chart in charts:
            assert 600 < chart.size["width"] <= 1000 and chart.size["height"] > 150
        assert self.browser.execute_script("return document.documentElement.scrollWidth") <= 1280
        table = self.browser.find_element(By.CSS_SELECTOR, "#chart-subscribers table")
        assert "APPLE" in table.text.upper() and "TOTAL" in table.text.upper()
        self.screenshot("finance-dashboard")
        self.browser.execute_script("document.getElementById('chart-new-churned').scrollIntoView()")
        self.screenshot("finance-dashboard-new-churned")


class TransactionsListTests(BrowserTestCase):
    def test_a_date_range_typed_in_the_filter_column_gives_totals_per_currency(self):
        console_customers()
        self.login(self.staff_user("finance"))
        self.visit("/admin/billing/transaction/")
        start = self.wait_for("input[name=occurred_at__from]")
        day = (timezone.now() - timedelta(days=2)).date()
        # Chromium's date input takes the digits in the page's locale order (en-US: month, day, year).
        start.send_keys(f"{day:%m%d%Y}")
        self.browser.find_element(By.NAME, "occurred_at__to").send_keys(f"{day:%m%d%Y}")
        self.browser.find_element(By.CSS_SELECTOR, ".date-range-filter input[type=submit]").click()
        WebDriverWait(self.browser, 10).until(expected_conditions.url_contains("occurred_at__to="))
        totals = self.wait_for("#ledger-totals").text
        assert "EUR" in totals and "4.50 EUR" in totals and "14.98 USD" in totals
        self.screenshot("console-transactions-totals")
        self.visit("/admin/finance/dashboard/?start=2020-01-01&end=2020-01-31")
        assert "metrics_rebuild --from 2020-01-01 --to 2020-01-31" in self.wait_for("#finance-empty").text
        self.screenshot("finance-dashboard-empty")
