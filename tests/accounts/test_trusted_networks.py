"""Who counts as a trusted network for the check API's anonymous callers: only the networks named, and a
proxied request by the client its trusted proxy reports, never by the proxy's own address."""

import subprocess
import sys

import pytest

from accounts.networks import client_address

pytestmark = pytest.mark.django_db

LOOPBACK = ["127.0.0.0/8", "::1/128"]


def check(client, **meta):
    return client.get("/api/subscriptions/check/1", **meta)


@pytest.fixture
def loopback_trusted(settings):
    settings.CHECK_API_TRUSTED_NETWORKS = LOOPBACK
    settings.TRUSTED_PROXIES = []


def test_forwarded_for_from_loopback_is_refused(client, loopback_trusted):
    assert check(client, REMOTE_ADDR="127.0.0.1").status_code == 200
    response = check(client, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("header", [
    {"HTTP_X_FORWARDED_FOR": "10.1.2.3"},
    {"HTTP_FORWARDED": "for=10.1.2.3"},
    {"HTTP_X_REAL_IP": "127.0.0.1"},  # even one naming a trusted address: the peer is not a proxy of ours
])
def test_any_proxy_header_from_a_peer_that_is_not_a_trusted_proxy_is_refused(client, loopback_trusted, header):
    assert check(client, REMOTE_ADDR="127.0.0.1", **header).status_code == 401


def test_behind_a_trusted_proxy_the_reported_client_is_judged(client, settings):
    settings.CHECK_API_TRUSTED_NETWORKS = ["10.20.0.0/16"]
    settings.TRUSTED_PROXIES = ["127.0.0.6/32"]  # an Envoy/Istio sidecar on the same host
    sidecar = {"REMOTE_ADDR": "127.0.0.6"}
    assert check(client, **sidecar, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 401
    assert check(client, **sidecar, HTTP_X_FORWARDED_FOR="10.20.3.4").status_code == 200
    # A client prepending a trusted address of its own: the rightmost untrusted hop is the client.
    assert check(client, **sidecar, HTTP_X_FORWARDED_FOR="10.20.3.4, 203.0.113.9").status_code == 401
    # The proxy itself, reporting no client, is not trusted (it forwards Internet traffic).
    assert check(client, **sidecar).status_code == 401


def test_a_trusted_proxy_inside_a_trusted_network_does_not_make_its_callers_trusted(client, settings):
    settings.CHECK_API_TRUSTED_NETWORKS = ["172.28.0.0/16"]
    settings.TRUSTED_PROXIES = ["172.28.0.2/32"]
    assert check(client, REMOTE_ADDR="172.28.0.7").status_code == 200  # an internal service, direct
    assert check(client, REMOTE_ADDR="172.28.0.2", HTTP_X_FORWARDED_FOR="198.51.100.20").status_code == 401
    assert check(client, REMOTE_ADDR="172.28.0.2", HTTP_X_FORWARDED_FOR="172.28.0.9").status_code == 200


def test_no_network_is_trusted_by_default_without_debug():
    # A fresh process reading the settings as a deployment would (DEBUG off, nothing named).
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup();"
            "from django.conf import settings; print(settings.CHECK_API_TRUSTED_NETWORKS, settings.TRUSTED_PROXIES)")
    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "x" * 50, "DEBUG": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
    env["DEBUG"] = "1"  # make run
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['127.0.0.0/8', '::1/128'] []"


@pytest.mark.parametrize(("meta", "expected"), [
    ({"REMOTE_ADDR": "10.0.0.1"}, "10.0.0.1"),
    ({"REMOTE_ADDR": "::ffff:10.0.0.1"}, "10.0.0.1"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, "198.51.100.1"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 10.9.9.8"}, "198.51.100.1"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "198.51.100.1:4711"}, "198.51.100.1"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_FORWARDED": 'for="[2001:db8::7]:4711";proto=https'}, "2001:db8::7"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_FORWARDED": "for=192.0.2.60, for=10.9.9.8"}, "192.0.2.60"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_REAL_IP": "192.0.2.61"}, "192.0.2.61"),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_REAL_IP": "192.0.2.61", "HTTP_X_FORWARDED_FOR": "192.0.2.61"},
     "192.0.2.61"),
    # Unknown: a proxy reporting nobody, an unreadable hop, two headers that disagree, an untrusted peer.
    ({"REMOTE_ADDR": "10.9.9.9"}, None),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_FORWARDED": "for=unknown"}, None),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_FORWARDED": "for=_hidden"}, None),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "not-an-address"}, None),
    ({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_REAL_IP": "10.5.5.5", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, None),
    ({"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "10.5.5.5"}, None),
])
def test_client_address(settings, meta, expected):
    settings.TRUSTED_PROXIES = ["10.9.9.0/24"]
    assert client_address(meta) == expected
