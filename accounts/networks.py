"""Which network a request comes from: the client address, judged through the reverse proxies in
TRUSTED_PROXIES, and whether it lies in CHECK_API_TRUSTED_NETWORKS.

A request carrying `Forwarded`, `X-Forwarded-For` or `X-Real-IP` came through a proxy (or pretends
to). Its headers are believed only when the connecting peer is a trusted proxy, and then the chain is
walked from the right past further trusted proxies to the client; anything else (an untrusted peer,
a header we cannot read, two headers naming different clients) leaves the client unknown, and an
unknown client is never trusted. A proxy is never judged by its own address."""

import ipaddress
import re

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

PROXY_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")
_MAX_VERDICTS = 4096
_FORWARDED_FOR = re.compile(r'(?:^|[;,])\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)

_networks: dict[str, list] = {}
_verdicts: dict[tuple, bool] = {}


def _parse_networks(setting: str) -> list:
    cached = _networks.get(setting)
    if cached is None:
        cached = [ipaddress.ip_network(n.strip(), strict=False) for n in getattr(settings, setting) if n.strip()]
        _networks[setting] = cached
    return cached


def _address(text: str):
    """An IP address from `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`, `::1`; None if it is none."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket is 10.0.0.1
    return address


def _in(address, setting: str) -> bool:
    return address is not None and any(address in network for network in _parse_networks(setting))


def _hops(name: str, value: str) -> list[str]:
    if name == "HTTP_FORWARDED":
        return _FORWARDED_FOR.findall(value)
    if name == "HTTP_X_FORWARDED_FOR":
        return value.split(",")
    return [value]


def _reported_client(name: str, value: str):
    """The client one header reports: the rightmost hop that is not itself a trusted proxy."""
    hops = _hops(name, value)
    if not hops:
        return None
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # "unknown", an obfuscated id, garbage: the chain cannot be followed
            return None
        if not _in(address, "TRUSTED_PROXIES"):
            return address
    return _address(hops[0])  # every hop a proxy of ours: the first one is where the request began


def from_trusted_proxy(remote_addr: str) -> bool:
    """Whether the peer (REMOTE_ADDR, with or without a port) is in TRUSTED_PROXIES: whose
    X-Forwarded-Proto the web server believes (config/granian_wsgi.py)."""
    return _in(_address(remote_addr), "TRUSTED_PROXIES")


def client_address(meta) -> str | None:
    """The address a request is judged by (REMOTE_ADDR, or the client a trusted proxy reports);
    None when it cannot be known."""
    headers = [(name, meta[name]) for name in PROXY_HEADERS if meta.get(name)]
    peer = _address(meta.get("REMOTE_ADDR", ""))
    if not headers:
        return None if peer is None or _in(peer, "TRUSTED_PROXIES") else str(peer)
    if not _in(peer, "TRUSTED_PROXIES"):
        return None
    clients = {_reported_client(name, value) for name, value in headers}
    if len(clients) != 1 or None in clients:  # headers that disagree: one of them is the client's own
        return None
    return str(clients.pop())


def is_trusted_request(meta) -> bool:
    """Whether the request's client is inside CHECK_API_TRUSTED_NETWORKS (the check API's anonymous
    callers, /health details, the API schema and docs)."""
    forwarded = meta.get("HTTP_FORWARDED"), meta.get("HTTP_X_FORWARDED_FOR"), meta.get("HTTP_X_REAL_IP")
    key = (meta.get("REMOTE_ADDR", ""), *forwarded)
    verdict = _verdicts.get(key)
    if verdict is None:
        client = client_address(meta)
        verdict = client is not None and _in(ipaddress.ip_address(client), "CHECK_API_TRUSTED_NETWORKS")
        if len(_verdicts) >= _MAX_VERDICTS:  # bounded: random forged headers cannot grow it
            _verdicts.clear()
        _verdicts[key] = verdict
    return verdict


@receiver(setting_changed)
def _reset_on_setting_change(setting, **kwargs):
    if setting in ("CHECK_API_TRUSTED_NETWORKS", "TRUSTED_PROXIES"):
        _networks.clear()
        _verdicts.clear()
