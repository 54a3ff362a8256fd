"""System checks for Apple (what `manage.py check`, and with it every server start, reports): unsigned
environments outside development, the pinned G3 root, and configured roots that cannot verify Apple."""

import pytest
from django.core import checks

from billing.checks import apple_root_messages
from billing.providers.apple import verification

G3_SHA256 = "63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79"


def _billing_messages() -> dict:
    return {m.id: m for m in checks.run_checks(tags=["billing"])}


@pytest.mark.parametrize(("allow", "debug", "error"), [
    (True, False, True),
    (True, True, False),  # a developer's machine
    (False, False, False),
])
def test_unsigned_environments_are_an_error_outside_debug(settings, allow, debug, error):
    settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = allow
    settings.DEBUG = debug
    message = _billing_messages().get("billing.E_APPLE_UNSIGNED_ENVIRONMENTS")
    assert (message is not None) == error
    if error:
        assert message.level == checks.ERROR and message.is_serious()
        assert "APPLE_ALLOW_UNSIGNED_ENVIRONMENTS" in message.msg and "DEBUG" in message.msg


def test_the_shipped_roots_pass(settings):
    settings.APPLE_ROOT_CERTIFICATES = [str(verification.SHIPPED_ROOTS_DIR / name) for name in (
        "AppleRootCA-G3.cer", "AppleRootCA-G2.cer", "AppleIncRootCertificate.cer")]
    found = _billing_messages()
    assert not {"billing.E_APPLE_G3_ROOT", "billing.W_APPLE_G3_ROOT", "billing.E_APPLE_ROOT_CERTIFICATES"} & set(found)


def test_the_shipped_g3_file_is_the_pinned_one():
    assert verification.SHIPPED_G3_ROOT.name == "AppleRootCA-G3.cer"
    assert verification.APPLE_ROOT_CA_G3_SHA256 == G3_SHA256
    assert apple_root_messages(shipped_g3=verification.SHIPPED_G3_ROOT,
                               configured=[str(verification.SHIPPED_G3_ROOT)]) == []


def test_a_replaced_g3_file_is_an_error_naming_both_fingerprints(apple_chain, tmp_path):
    impostor = tmp_path / "AppleRootCA-G3.cer"
    impostor.write_bytes(apple_chain.root_der)
    (message,) = [m for m in apple_root_messages(shipped_g3=impostor, configured=[str(verification.SHIPPED_G3_ROOT)])
                  if m.id == "billing.E_APPLE_G3_ROOT"]
    assert message.level == checks.ERROR
    assert G3_SHA256 in message.msg and verification.sha256_fingerprint(apple_chain.root_der) in message.msg


def test_a_missing_g3_file_is_an_error(tmp_path):
    messages = apple_root_messages(shipped_g3=tmp_path / "gone.cer", configured=[str(verification.SHIPPED_G3_ROOT)])
    assert [(m.id, m.level) for m in messages] == [("billing.E_APPLE_G3_ROOT", checks.ERROR)]
    assert "cannot be read" in messages[0].msg


def test_configured_roots_without_g3_warn(settings, apple_root_file):
    settings.APPLE_ROOT_CERTIFICATES = [apple_root_file]  # e.g. a test root left in a deployment
    message = _billing_messages()["billing.W_APPLE_G3_ROOT"]
    assert message.level == checks.WARNING and G3_SHA256 in message.msg

    settings.APPLE_ROOT_CERTIFICATES = [apple_root_file, str(verification.SHIPPED_G3_ROOT)]
    assert "billing.W_APPLE_G3_ROOT" not in _billing_messages()


def test_configured_g3_as_pem_counts(settings, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "g3.pem"
    pem.write_bytes(x509.load_der_x509_certificate(verification.SHIPPED_G3_ROOT.read_bytes()).public_bytes(Encoding.PEM))
    settings.APPLE_ROOT_CERTIFICATES = [str(pem)]
    assert "billing.W_APPLE_G3_ROOT" not in _billing_messages()


def test_unreadable_configured_root_is_an_error(settings, tmp_path):
    broken = tmp_path / "broken.cer"
    broken.write_bytes(b"not a certificate")
    settings.APPLE_ROOT_CERTIFICATES = [str(broken)]
    message = _billing_messages()["billing.E_APPLE_ROOT_CERTIFICATES"]
    assert message.level == checks.ERROR and str(broken) in message.msg
