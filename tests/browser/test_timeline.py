"""A support agent reads a customer's timeline and leaves a note (docs/support.md embeds the screenshot
this test takes: var/screenshots/timeline.png, copied to docs/images/timeline.png)."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

from audit.models import Note
from billing import staff
from billing.models import Entitlement
from tests.browser.base import SCREENSHOTS, BrowserTestCase
from tests.providers.apple.conftest import (  # noqa: F401  (the App Store's fixtures, as its suite has them)
    api_key,
    apple_chain,
    apple_root_file,
    apple_settings,
    fake_appstore,
)
from tests.support.stories import apple_lifecycle

NOTE = "Asked why access ended: the renewal failed (card expired). Told them to update it in the App Store."


class TimelineTests(BrowserTestCase):
    @pytest.fixture(autouse=True)
    def _apple(self, apple_settings, apple_chain):  # noqa: F811
        self.apple_chain = apple_chain

    def test_an_agent_reads_the_story_and_adds_a_note(self):
        agent = self.staff_user("agent")
        lead = self.staff_user("maria")
        sub, _events = apple_lifecycle(self.apple_chain, otid="2000000000000401", user_id=1003, last="EXPIRED")
        customer = sub.subscriber
        Note.objects.create(subscriber=customer, author=lead, author_label="maria",
                            text="VIP customer: escalate payment problems to billing.")
        staff.manual_grant(subscriber=customer, entitlement=Entitlement.objects.get_or_create(name="premium")[0],
                           until=timezone.now() + timedelta(days=7), staff_user=lead,
                           reason="Goodwill while the card problem is sorted out")

        self.login(agent)
        self.visit(f"/admin/accounts/subscriber/{customer.pk}/change/")
        timeline = self.wait_for("#timeline")
        text = timeline.text
        assert "Expired: access ended on " in text and "The renewal payment was never recovered." in text
        for expected in ("Webhook EXPIRED/BILLING_RETRY", "On hold → Expired", "Apple told us: webhook EXPIRED",
                         "Stream event ON_HOLD → EXPIRED", "Staff: maria — why: Goodwill while the card problem",
                         "Written by maria"):
            assert expected in text, expected

        self.browser.find_element(By.ID, "id_note_text").send_keys(NOTE)
        self.browser.find_element(By.CSS_SELECTOR, "#note-form input[type=submit]").click()
        self.wait_for(".messagelist")
        newest = self.wait_for("#timeline tbody tr")
        assert newest.get_attribute("data-kind") == "note"
        assert NOTE in newest.text and "Written by agent" in newest.text
        assert Note.objects.filter(subscriber=customer, author=agent, text=NOTE).exists()

        # The picture for docs/support.md: 1280 px wide as staff use it (the admin has no model sidebar),
        # from the timeline's heading down (a clip of the page through Chromium's DevTools: a scrolled
        # window's screenshot in headless mode may show the frame before the scroll).
        # Everything scrolled back to the top (the note's redirect landed on #timeline), so that the
        # timeline's place on the page is its place in the viewport.
        top = self.browser.execute_script(
            "window.scrollTo(0, 0); for (const el of document.querySelectorAll('*')) { el.scrollTop = 0; }"
            "return document.getElementById('timeline').getBoundingClientRect().top;")
        shot = self.browser.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": max(0, top - 16), "width": 1280, "height": 1150, "scale": 1}})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "timeline.png").write_bytes(base64.b64decode(shot["data"]))
