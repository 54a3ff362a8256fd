"""A support agent grants access with a reason in the admin, undoes it from the customer's timeline,
and finds both on the timeline and in the audit log."""

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from audit.models import AuditEntry
from billing.models import Subscription
from billing.statuses import Status
from tests.browser.base import BrowserTestCase
from tests.factories import EntitlementFactory, SubscriberFactory


class UndoTests(BrowserTestCase):
    port = 9301  # this suite's port range (a fixed one: several suites run side by side here)

    def test_grant_with_a_reason_then_undo_it_and_see_both_on_the_timeline_and_in_the_audit_log(self):
        customer = SubscriberFactory(external_id="1003", email="dana@example.com")
        EntitlementFactory(name="premium")
        self.login(self.staff_user("agent.kim"))

        # Grant from the user's row: the action's confirmation page asks for the reason.
        self.visit("/admin/accounts/subscriber/?q=1003")
        self.wait_for("input.action-select").click()
        Select(self.browser.find_element(By.NAME, "action")).select_by_value("grant_access")
        self.browser.find_element(By.CSS_SELECTOR, "button[name=index], input[name=index]").click()
        Select(self.wait_for("select[name=entitlement]")).select_by_visible_text("premium")
        self.browser.find_element(By.NAME, "reason").send_keys("goodwill after the outage, ticket 4711")
        self.browser.find_element(By.CSS_SELECTOR, ".submit-row input[type=submit]").click()
        assert "granted to user 1003" in self.wait_for("ul.messagelist").text
        grant = Subscription.objects.get(provider="manual")
        assert grant.status == Status.ACTIVE

        # The customer's timeline shows the grant with an Undo button; the undo page says what it will do
        # and asks why.
        self.visit(f"/admin/accounts/subscriber/{customer.pk}/change/")
        self.wait_for("tr.tl-staff a.tl-undo").click()
        assert "Revoke the grant" in self.wait_for("#undo-plan").text
        self.browser.find_element(By.NAME, "reason").send_keys("granted to the wrong account")
        self.screenshot("undo-page")
        self.browser.find_element(By.CSS_SELECTOR, ".submit-row input[type=submit]").click()
        assert "Undone: Revoke the grant" in self.wait_for("ul.messagelist").text
        grant.refresh_from_db()
        assert grant.status == Status.REVOKED

        # Both stay on the timeline, newest first, with who and why; the grant shows as undone, no more Undo.
        self.visit(f"/admin/accounts/subscriber/{customer.pk}/change/")
        staff = [row.text for row in self.browser.find_elements(By.CSS_SELECTOR, "tr.tl-staff")]
        assert len(staff) == 2, staff
        assert "undo grant" in staff[0] and "granted to the wrong account" in staff[0] and "agent.kim" in staff[0]
        assert "goodwill after the outage, ticket 4711" in staff[1] and "undone" in staff[1]
        assert not self.browser.find_elements(By.CSS_SELECTOR, "a.tl-undo")
        self.screenshot("timeline-grant-and-undo")

        # And in the audit log.
        self.visit("/admin/audit/auditentry/")
        rows = [row.text for row in self.browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
        assert len(rows) == 2, rows
        assert "undo_grant" in rows[0] and "granted to the wrong account" in rows[0] and "agent.kim" in rows[0]
        assert "goodwill after the outage, ticket 4711" in rows[1] and "undone" in rows[1]
        assert AuditEntry.objects.get(action="undo_grant").undoes == AuditEntry.objects.get(action="grant")
        self.screenshot("audit-log-grant-and-undo")
