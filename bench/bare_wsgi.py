"""The baseline: a bare Django JSON view (no middleware, no database), served exactly like the app.

With BARE_REDIS_GET=1 the view also does one Redis GET (a plain blocking socket per process, the
RESP bytes written and read inline: less Python than the app's hot_get): the bare view plus the one
round trip a cached check cannot avoid, to show what that round trip alone costs the server."""

import os
import socket
from urllib.parse import urlsplit

from django.conf import settings

settings.configure(DEBUG=False, SECRET_KEY="bench-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

REDIS_GET = os.environ.get("BARE_REDIS_GET") == "1"
_redis: dict[int, socket.socket] = {}  # pid → socket (workers are forked after import)


def redis_get(key: bytes) -> bytes:
    sock = _redis.get(os.getpid())
    if sock is None:
        parts = urlsplit(os.environ["REDIS_URL"])
        sock = _redis[os.getpid()] = socket.create_connection((parts.hostname, parts.port or 6379))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        db = parts.path.strip("/") or "0"
        sock.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n" % (len(db), db.encode()))
        sock.recv(64)
    sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
    reply = sock.recv(65536)
    head, _, value = reply.partition(b"\r\n")
    while int(head[1:]) >= 0 and len(value) < int(head[1:]) + 2:  # a bulk reply read whole
        value += sock.recv(65536)
    return value


def bare(request, user_id):
    if REDIS_GET:
        redis_get(b"billing:ent:" + user_id.encode())
    return JsonResponse({"ok": True})


urlpatterns = [path("api/subscriptions/check/<str:user_id>", bare)]
application = get_wsgi_application()
