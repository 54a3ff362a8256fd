"""System checks (`manage.py check`, and every command that starts the web server): warn about each
store that is not configured; refuse configurations that would trust unsigned or wrongly rooted Apple
data in production."""

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .providers.common import store_adapters


@register("billing")
def providers_configured(app_configs, **kwargs):
    messages = []
    for name, adapter in store_adapters():
        if adapter is None:
            messages.append(Error(f"The {name} adapter cannot be loaded (see the log).",
                                  id=f"billing.E_{name.upper()}"))
            continue
        messages.extend(adapter.checks())
        missing = adapter.missing_settings()
        if missing:
            messages.append(Warning(
                f"The {name} provider is off: {', '.join(missing)} not set.",
                hint=f"Set {', '.join(missing)} to receive {name} webhooks (see docs/providers/{name}.md).",
                id=f"billing.W_{name.upper()}"))
    return messages


@register("billing")
def apple_unsigned_environments(app_configs, **kwargs):
    """Xcode / LocalTesting data carries no signature at all: never reachable outside development.
    (The verifier refuses it without DEBUG as well; this makes the mistake loud at start.)"""
    if settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS and not settings.DEBUG:
        return [Error(
            "APPLE_ALLOW_UNSIGNED_ENVIRONMENTS is on while DEBUG is off: Xcode and LocalTesting notifications "
            "and transactions carry no App Store signature, so anyone could forge them.",
            hint="Unset APPLE_ALLOW_UNSIGNED_ENVIRONMENTS (it is for a developer's machine with DEBUG=true).",
            id="billing.E_APPLE_UNSIGNED_ENVIRONMENTS")]
    return []


@register("billing")
def apple_roots(app_configs, **kwargs):
    from .providers.apple import verification

    return apple_root_messages(shipped_g3=verification.SHIPPED_G3_ROOT,
                               configured=settings.APPLE_ROOT_CERTIFICATES)


def apple_root_messages(*, shipped_g3: Path, configured) -> list:
    """The shipped Apple Root CA - G3 file must be Apple's (pinned fingerprint): a replaced file would
    make us trust whoever replaced it. The configured roots should include it: without it, no genuine
    App Store signature verifies (e.g. a test root left in a deployment's settings)."""
    from .providers.apple import verification

    pinned = verification.APPLE_ROOT_CA_G3_SHA256
    messages = []
    try:
        shipped = verification.load_root_certificates([shipped_g3])
    except ImproperlyConfigured as exc:
        shipped = []
        messages.append(Error(f"The shipped Apple root {shipped_g3} cannot be read: {exc}",
                              hint="Restore billing/providers/apple_roots/AppleRootCA-G3.cer from the repository.",
                              id="billing.E_APPLE_G3_ROOT"))
    if shipped and [verification.sha256_fingerprint(der) for der in shipped] != [pinned]:
        found = ", ".join(verification.sha256_fingerprint(der) for der in shipped)
        messages.append(Error(
            f"The shipped Apple root {shipped_g3} is not Apple Root CA - G3: its SHA-256 fingerprint is {found}, "
            f"expected {pinned}.",
            hint="Restore the file from the repository, or from https://www.apple.com/certificateauthority/.",
            id="billing.E_APPLE_G3_ROOT"))
    try:
        roots = verification.load_root_certificates(configured)
    except ImproperlyConfigured as exc:
        messages.append(Error(str(exc), hint="APPLE_ROOT_CERTIFICATES lists DER or PEM certificate files.",
                              id="billing.E_APPLE_ROOT_CERTIFICATES"))
        return messages
    if pinned not in {verification.sha256_fingerprint(der) for der in roots}:
        messages.append(Warning(
            "APPLE_ROOT_CERTIFICATES holds no Apple Root CA - G3 (SHA-256 " + pinned + "): genuine App Store "
            "notifications and transactions will not verify.",
            hint="Leave APPLE_ROOT_CERTIFICATES unset (Apple's roots shipped with the project), or include "
                 "billing/providers/apple_roots/AppleRootCA-G3.cer. A test root belongs in tests only.",
            id="billing.W_APPLE_G3_ROOT"))
    return messages
