from selenium.webdriver.common.by import By

from tests.browser.base import BrowserTestCase


class AdminLoginTests(BrowserTestCase):
    def test_staff_user_logs_in_and_lands_on_the_admin_index(self):
        self.login(self.staff_user("alice"))
        assert self.browser.current_url.rstrip("/").endswith("/admin")
        assert "ALICE" in self.browser.find_element(By.ID, "user-tools").text.upper()

    def test_wrong_password_stays_on_the_login_page_with_an_error(self):
        user = self.staff_user()
        self.visit("/admin/login/")
        self.browser.find_element(By.NAME, "username").send_keys(user.get_username())
        self.browser.find_element(By.NAME, "password").send_keys("not the password")
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        error = self.wait_for(".errornote")
        assert "correct username and password" in error.text
        assert "/admin/login/" in self.browser.current_url
