"""Where alert messages go: the ADMINS e-mail (Django's mail_admins) and ALERT_WEBHOOK_URL
(Slack-compatible JSON `{"text": ...}`, also what Mattermost, Rocket.Chat and Google Chat take). A
failing channel is logged and reported back, never raised: the other channel and the next alert still go."""

import logging
from collections.abc import Callable

import requests
from django.conf import settings
from django.core.mail import mail_admins

logger = logging.getLogger(__name__)


def _mail(subject: str, body: str) -> None:  # mail_admins puts EMAIL_SUBJECT_PREFIX first
    mail_admins(subject, body, fail_silently=False)


def _webhook(subject: str, body: str) -> None:
    text = f"*{settings.EMAIL_SUBJECT_PREFIX}{subject}*\n{body}"
    response = requests.post(settings.ALERT_WEBHOOK_URL, json={"text": text},
                             timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False)
    if response.status_code >= 300:
        raise RuntimeError(f"answered HTTP {response.status_code}")


def configured() -> list[tuple[str, Callable[[str, str], None]]]:
    channels = []
    if settings.ADMINS:
        channels.append(("mail", _mail))
    if settings.ALERT_WEBHOOK_URL:
        channels.append(("webhook", _webhook))
    return channels


def _described(exc: BaseException) -> str:
    """The failure without the URL: a Slack webhook URL is a credential, and requests' messages quote it."""
    if isinstance(exc, requests.RequestException):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def send(subject: str, body: str) -> tuple[bool, str]:
    """Send to every configured channel. (delivered, errors): delivered when no channel is configured or
    at least one took it; errors says which failed and why (for the alert's row and the log)."""
    channels = configured()
    errors = []
    for name, deliver in channels:
        try:
            deliver(subject, body)
        except Exception as exc:
            errors.append(f"{name}: {_described(exc)}")
            logger.warning("alert channel %s failed for %r: %s", name, subject, _described(exc))
    return (not channels or len(errors) < len(channels)), "; ".join(errors)
