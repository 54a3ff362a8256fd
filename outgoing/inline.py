"""In-process mode (`make run`: no broker, no beat): the web process itself dispatches the outgoing
webhooks after a request has finished (its writes are committed, its answer sent), at most once per
INTERVAL per process and a bounded batch at a time. Off unless OUTGOING_WEBHOOK_SEND_AFTER_REQUEST."""

import logging
import threading
import time

from django.conf import settings
from django.core.signals import request_finished

from .dispatch import deliveries_dispatch

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0
BATCH = 20  # with 5 s + 10 s timeouts a dead endpoint costs this process at most that many timeouts
_lock = threading.Lock()
_last = [0.0]


def after_request(**kwargs) -> None:
    if not settings.OUTGOING_WEBHOOK_SEND_AFTER_REQUEST:
        return
    now = time.monotonic()
    if now - _last[0] < INTERVAL_SECONDS or not _lock.acquire(blocking=False):
        return  # looked lately, or another thread of this process is sending
    try:
        _last[0] = now
        deliveries_dispatch(limit=BATCH)
    except Exception:  # never let a consumer's endpoint break the web process
        logger.exception("outgoing webhooks: in-process dispatch failed")
    finally:
        _lock.release()


def connect() -> None:
    request_finished.connect(after_request, dispatch_uid="outgoing-after-request")
