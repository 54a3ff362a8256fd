"""The browser suite's base: Django's StaticLiveServerTestCase driven by Debian's Chromium through
ChromeDriver (both installed by `make test`, scripts/ensure_services.sh). Headless, 1280 px wide, as
staff use the console. A failing test leaves a screenshot in var/screenshots/<test>.png; a test may
take one on purpose with `self.screenshot("name")` (docs/support.md shows one)."""

import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
PASSWORD = "browser-test-password"


def chrome() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


class BrowserTestCase(StaticLiveServerTestCase):
    """A live server and one Chromium per test class. `self.login(user)` signs a staff user in through the
    admin's login form; `self.visit(path)` opens a page; `self.wait_for(css)` waits for an element."""

    browser: webdriver.Chrome

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.browser = chrome()
        cls.browser.implicitly_wait(0)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    def _teardown_screenshot(self):
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not outcome.success
        if failed:
            self.screenshot(f"FAILED-{self.id()}")

    def tearDown(self):
        self._teardown_screenshot()
        super().tearDown()

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.browser.save_screenshot(str(path))
        return path

    def staff_user(self, username="agent", *, superuser=True, permissions=()):
        user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD,
                                                    is_staff=True, is_superuser=superuser)
        for codename in permissions:  # "billing.change_subscription"
            app_label, code = codename.split(".")
            from django.contrib.auth.models import Permission

            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=code))
        return user

    def visit(self, path: str):
        self.browser.get(f"{self.live_server_url}{path}")

    def wait_for(self, css: str, timeout: float = 10):
        return WebDriverWait(self.browser, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))

    def login(self, user, password: str = PASSWORD):
        self.visit("/admin/login/")
        self.browser.find_element(By.NAME, "username").send_keys(user.get_username())
        self.browser.find_element(By.NAME, "password").send_keys(password)
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.wait_for("#user-tools")
