"""A key made in the admin: its secret is on the page that answers the form, once, and in no cookie."""

import pytest

from accounts.authentication import clear_api_key_cache
from accounts.models import ApiKey
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    clear_api_key_cache()
    client.force_login(UserFactory(username="security-lead"))
    return client


def test_the_new_key_is_shown_once_on_its_page_and_never_in_a_cookie(staff_client):
    response = staff_client.post("/admin/accounts/apikey/add/", {"name": "orders-service", "scopes": ["check"]})
    assert response.status_code == 200
    key = ApiKey.objects.get()
    html = response.content.decode()
    raw = html.split('<code id="api-key" class="api-key-secret">', 1)[1].split("</code>", 1)[0]
    assert raw.startswith(f"bk_{key.prefix}_") and ApiKey.hash(raw) == key.hashed_key
    assert "shown this once" in html
    assert "no-store" in response["Cache-Control"]
    # No cookie carries it (Django keeps admin messages in a cookie), and no message is queued.
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    assert all(raw not in morsel.value for morsel in staff_client.cookies.values())
    assert not list(response.context["messages"])
    # It works, and no later page shows it again.
    check = staff_client.get("/api/subscriptions/check/1", HTTP_AUTHORIZATION=f"Api-Key {raw}",
                             REMOTE_ADDR="192.0.2.1")
    assert check.status_code == 200
    for url in (f"/admin/accounts/apikey/{key.pk}/change/", "/admin/accounts/apikey/", "/admin/"):
        page = staff_client.get(url)
        assert page.status_code == 200 and raw not in page.content.decode()
    assert all(raw not in morsel.value for morsel in staff_client.cookies.values())
