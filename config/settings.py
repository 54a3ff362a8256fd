"""The one settings module: everything comes from the environment (names are a contract, see
ARCHITECTURE.md and .env.example). Defaults are the zero-setup run: SQLite, tasks in-process."""

import contextlib
from email.utils import parseaddr
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.secrets import env_secret

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is read when present (never committed; .env.example documents every name).
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("BILLING_TESTING", default=False)

if DEBUG or TESTING:
    SECRET_KEY = env_secret(env, "SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env_secret(env, "SECRET_KEY")  # no default outside DEBUG: fail loudly

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally (works offline)
    "django_celery_beat",
    "csp",
    "axes",  # admin login throttling (see "Rate limits" below)
    "djstripe",
    "accounts",
    "billing",
    "webhooks",
    "operations",
    "outgoing",
    "audit",
    "finance",
    "support",
    "privacy",
]

MIDDLEWARE = [
    # First: every answer (the check API's fast path and error pages included) carries X-Request-ID,
    # every log line of the request its id (docs/operations.md "Logs").
    "operations.request_id.RequestIdMiddleware",
    # Failed authentication per client address (Rate limits): for trusted addresses one cached lookup.
    "billing.api.auth_failures.FailedAuthenticationLimitMiddleware",
    # Answers GET /api/subscriptions/check/<id> before the browser-oriented middleware below (hot path).
    "billing.api.check.CheckFastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out admin login into its 429 page
]

# django-axes first: it refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {"default": env.db_url_config(
    env_secret(env, "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections are mandatory for throughput (CONN_MAX_AGE=0 measured at 0.04x).
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=5)
else:
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# The check API's no-Redis query as a server-side prepared statement per connection (billing/api/check_wsgi.py):
# default on; off (0) behind a connection pooler in transaction mode (PgBouncer), which cannot keep one.
CHECK_API_PREPARED_QUERY = env.bool("CHECK_API_PREPARED_QUERY", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
with contextlib.suppress(OSError):  # WhiteNoise warns on every start until collectstatic ran
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- Redis, Celery ----------------------------------------------------------------------------
REDIS_URL = env_secret(env, "REDIS_URL", default="")
BILLING_EVENTS_STREAM = env.str("BILLING_EVENTS_STREAM", default="billing:events")
# Approximate cap (XADD MAXLEN ~) so the stream cannot grow without bound.
BILLING_EVENTS_STREAM_MAXLEN = env.int("BILLING_EVENTS_STREAM_MAXLEN", default=1_000_000)
# `newStatus` on the stream: `detailed` (the contract: the subscription's status) or `simple` (`ACTIVE`
# while the user is entitled through any subscription, else `EXPIRED`), for consumers that act on those
# two only, as the integration guide's does (docs/events.md, "Status style").
BILLING_EVENTS_STATUS_STYLE = env.str("BILLING_EVENTS_STATUS_STYLE", default="detailed")
if BILLING_EVENTS_STATUS_STYLE not in ("detailed", "simple"):
    raise ImproperlyConfigured("BILLING_EVENTS_STATUS_STYLE must be detailed or simple, "
                               f"not {BILLING_EVENTS_STATUS_STYLE!r}")
# How long a user's cached entitlements live in Redis; the write path refreshes them after commit.
CHECK_CACHE_TTL_SECONDS = env.int("CHECK_CACHE_TTL_SECONDS", default=3600)
# Fail fast (docs/security.md, "Redis and broker outages"): Redis answers in well under a millisecond,
# so these bound an outage's cost, not normal work. After a connect or read failure a process skips
# that Redis server for REDIS_CIRCUIT_BREAKER_SECONDS (0: never skip) and works from the database.
REDIS_CONNECT_TIMEOUT_SECONDS = env.float("REDIS_CONNECT_TIMEOUT_SECONDS", default=0.25)
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=0.5)
REDIS_CIRCUIT_BREAKER_SECONDS = env.float("REDIS_CIRCUIT_BREAKER_SECONDS", default=5.0)

CELERY_BROKER_URL = env_secret(env, "CELERY_BROKER_URL", default=REDIS_URL) or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker, tasks run in-process (the zero-setup default of `make run`).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER",
                                    default=not CELERY_BROKER_URL.startswith(("redis", "amqp")))
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# The broker's own connections (kombu's) wait forever by default: a broker dropping packets hung a
# webhook until gunicorn killed the worker. The read timeout stays above kombu's 1 s BRPOP.
BROKER_CONNECT_TIMEOUT_SECONDS = env.float("BROKER_CONNECT_TIMEOUT_SECONDS", default=0.5)
BROKER_SOCKET_TIMEOUT_SECONDS = env.float("BROKER_SOCKET_TIMEOUT_SECONDS", default=2.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_CONNECT_TIMEOUT_SECONDS  # Celery's, for AMQP brokers
# Redis redelivers an unacked message after this; must exceed the longest task. kombu looks for such
# messages every 10 s but, by default, scans only every 10th time: a killed worker's task would wait up
# to 100 s beyond the timeout (and a scan made just before it passed misses it for as long).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900),
                                   "unacked_restore_throttle": 1,
                                   "socket_connect_timeout": BROKER_CONNECT_TIMEOUT_SECONDS,
                                   "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits out any broker outage (default: gives up after 100)
# Queues by urgency (docs/operations.md, "Queues"); the Procfile gives `slow` its own worker so that a
# long job never holds a process webhook processing needs. A worker started without -Q consumes all
# of them (`make worker`). Routes apply to send_task (webhooks/queue.py) and to beat's jobs alike.
# Each queue its own exchange and key: a bare Queue("x") is bound to the default queue's exchange and key,
# and a message published there would land in every queue.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name)
                      for name in ("webhooks", "actions", "slow")]
CELERY_TASK_DEFAULT_QUEUE = "actions"  # a task nobody routed: never on `webhooks`, never behind `slow`
CELERY_TASK_ROUTES = {
    # webhook processing and after-commit work: minutes late here is a user kept waiting
    "webhooks.tasks.drain_events": {"queue": "webhooks"},
    "webhooks.tasks.process_event": {"queue": "webhooks"},
    "webhooks.tasks.sweep_events": {"queue": "webhooks"},
    "billing.tasks.relay_outbox": {"queue": "webhooks"},
    "billing.tasks.forget_cached_entitlements": {"queue": "webhooks"},
    # store actions, verification retries, Google acknowledgements, the expiry sweep: seconds to a minute
    "billing.tasks.expire_lapsed": {"queue": "actions"},
    # the dj-stripe mirror: a copy for people to look at, ~20-50 ms per event; never on the webhooks worker
    "billing.providers.stripe.tasks.mirror_events": {"queue": "slow"},
    "billing.providers.stripe.tasks.mirror_event": {"queue": "slow"},
    "billing.providers.*": {"queue": "actions"},
    # slow jobs: many store calls or big reads, minutes late is fine
    "billing.tasks.repoll_subscriptions": {"queue": "slow"},
    "webhooks.tasks.recover_apple_notifications": {"queue": "slow"},
    "*.reconcile*": {"queue": "slow"},
    "*.export*": {"queue": "slow"},
    "*metrics*": {"queue": "slow"},
}
CELERY_BEAT_SCHEDULER = "config.beat:DatabaseScheduler"  # staff edits survive restarts
# Periodic jobs. django-celery-beat copies these into its tables at start; staff edit them in the admin.
# Every job is listed here (README and docs/operations.md describe each).
CELERY_BEAT_SCHEDULE = {
    # --- billing ---
    "billing-relay-outbox": {"task": "billing.tasks.relay_outbox", "schedule": 30.0},
    "billing-expire-lapsed": {"task": "billing.tasks.expire_lapsed", "schedule": 60.0},
    "billing-repoll-subscriptions": {"task": "billing.tasks.repoll_subscriptions", "schedule": 15 * 60.0},
    # --- webhooks ---
    # Re-enqueue events the broker lost (or that arrived while it was down) and retries that are due.
    "webhooks-sweep": {"task": "webhooks.tasks.sweep_events", "schedule": 60.0},
    # Apple stops retrying a failed delivery after a few tries: fetch what it failed to deliver.
    "apple-recover-failed": {"task": "webhooks.tasks.recover_apple_notifications", "schedule": 6 * 3600.0},
    # --- providers ---
    # Google refunds purchases not acknowledged within 3 days: retry every 10 minutes.
    "google-acknowledge-due": {"task": "billing.providers.google.tasks.acknowledge_due", "schedule": 10 * 60.0},
    # --- outgoing ---
    # Outgoing webhooks: copy new status changes from the outbox, enqueue one send task per due delivery.
    "outgoing-dispatch": {"task": "outgoing.tasks.dispatch_deliveries", "schedule": 10.0},
    # --- operations ---
    # Alerts: dead events, Google deadlines, outbox backlog, overdue beat jobs, silent stores.
    "operations-check-alerts": {"task": "operations.tasks.check_alerts", "schedule": 5 * 60.0},
    # --- finance ---
    # Yesterday's metrics (UTC), after midnight: the day's late rows recorded before it count (docs/finance.md).
    "finance-daily-metrics": {"task": "finance.tasks.compute_daily_metrics", "schedule": crontab(minute=10, hour=0)},
    # --- reconciliation ---
    # Double payments: open what the after-commit check missed, end what is no longer paid twice (daily).
    "billing-reconcile-double-payments": {"task": "billing.tasks.reconcile_double_payments",
                                          "schedule": 24 * 3600.0},
    # Re-read every live subscription (and those ended lately) from its store within the store's budget; record drifts.
    "billing-reconcile": {"task": "billing.tasks.reconcile_subscriptions", "schedule": 10 * 60.0},
    # --- privacy and retention ---
    # Prune raw data past its retention (RETENTION_*), in short batches, on the slow queue.
    "privacy-prune-retained": {"task": "privacy.tasks.prune_retained", "schedule": 24 * 3600.0,
                               "options": {"queue": "slow"}},
}
CELERY_TIMEZONE = "UTC"

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api_parsers.JSONParser"],  # hostile bodies: 400, not 500
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "billing-service API",
    "DESCRIPTION": "One truth about paid subscriptions across Stripe, the App Store, Google Play and Xsolla.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # verify's request is one of several forms, each naming its store in `provider`
    "ENUM_NAME_OVERRIDES": {"AppleProviderEnum": ["apple"], "GoogleProviderEnum": ["google"]},
}

# API keys are cached per process this long: a revoked key stops working everywhere within it.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)

JWT_ALGORITHMS = env.list("JWT_ALGORITHMS", default=["HS256"])
JWT_SECRET = env_secret(env, "JWT_SECRET", default="")
JWT_PUBLIC_KEY = env_secret(env, "JWT_PUBLIC_KEY", default="")
JWT_ISSUER = env.str("JWT_ISSUER", default="")
JWT_AUDIENCE = env.str("JWT_AUDIENCE", default="")
JWT_USER_CLAIM = env.str("JWT_USER_CLAIM", default="sub")

# --- Providers --------------------------------------------------------------------------------
# Provider name (as in /webhooks/<name> and Subscription.provider) → its adapter class.
BILLING_PROVIDERS = {
    "stripe": "billing.providers.stripe.adapter.StripeAdapter",
    "apple": "billing.providers.apple.adapter.AppleAdapter",
    "google": "billing.providers.google.adapter.GoogleAdapter",
    "xsolla": "billing.providers.xsolla.adapter.XsollaAdapter",
    "manual": "billing.providers.manual.ManualAdapter",
}

# --- Webhook ingestion ------------------------------------------------------------------------
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# An event failing in a way a retry may fix (a store down, our key refused, a setting missing) is
# retried until BOTH it has had WEBHOOK_MAX_ATTEMPTS attempts AND WEBHOOK_RETRY_HORIZON_HOURS have
# passed since its first failure; then it is dead (an alert). 168 h: the longest window of the stores
# (Pub/Sub keeps a message 7 days; Stripe and Apple retry about 3 days) (docs/webhooks.md).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_HORIZON_HOURS = env.float("WEBHOOK_RETRY_HORIZON_HOURS", default=168.0)
# Retry backoff: base * 2**(attempt-1), capped, with jitter (the first retry within seconds); the
# sweeper re-enqueues events still `received` this long after arrival (a lost or undelivered task).
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=3600.0)
# Who is mailed when an event is dead (also shown in the admin's "Needs attention" box):
# "Name <address>" or bare addresses, comma-separated; empty: no mail. EMAIL_URL: how mail is sent.
ADMINS = [parseaddr(a) for a in env.list("ADMINS", default=[]) if parseaddr(a)[1]]
SERVER_EMAIL = env.str("SERVER_EMAIL", default="billing-service@localhost")
EMAIL_CONFIG = env.email_url_config(env_secret(env, "EMAIL_URL", default="smtp://localhost:25"))
vars().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, ... (django-environ's documented form)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)  # a mail server that does not answer must not hold a worker
WEBHOOK_SWEEP_AFTER_SECONDS = env.int("WEBHOOK_SWEEP_AFTER_SECONDS", default=300)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, WEBHOOK_MAX_BODY_BYTES + 1)

# --- Stripe (and dj-stripe) -------------------------------------------------------------------
STRIPE_SECRET_KEY = env_secret(env, "STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env_secret(env, "STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=STRIPE_SECRET_KEY.startswith("sk_live_"))
if STRIPE_API_BASE:
    STRIPE_API_HOST = STRIPE_API_BASE  # dj-stripe's name for the same thing
# Only offered prices can be bought (docs/security.md, "Stripe: only offered prices, only our return URLs"):
# catalogue products staff mark offered in the admin, plus these price ids (comma-separated). Default: none.
STRIPE_OFFERED_PRICES = [p.strip() for p in env.list("STRIPE_OFFERED_PRICES", default=[]) if p.strip()]
# Hosts Checkout's success/cancel URLs and the portal's return URL may point to: `app.example.com` (that host)
# or `.example.com` (the domain and its subdomains); `*` is never honoured. Empty (the default): ALLOWED_HOSTS.
STRIPE_RETURN_URL_ALLOWED_HOSTS = env.list("STRIPE_RETURN_URL_ALLOWED_HOSTS", default=[])
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_SUBSCRIBER_MODEL = "accounts.Subscriber"
DJSTRIPE_SUBSCRIBER_MODEL_REQUEST_CALLBACK = "accounts.selectors.subscriber_for_request"
DJSTRIPE_USE_NATIVE_JSONFIELD = True

# --- Apple ------------------------------------------------------------------------------------
APPLE_BUNDLE_ID = env.str("APPLE_BUNDLE_ID", default="")
APPLE_APP_APPLE_ID = env.int("APPLE_APP_APPLE_ID", default=None)
APPLE_ENVIRONMENT = env.str("APPLE_ENVIRONMENT", default="Production")
APPLE_ROOT_CERTIFICATES = env.list(
    "APPLE_ROOT_CERTIFICATES",
    default=[str(BASE_DIR / "billing" / "providers" / "apple_roots" / name) for name in (
        "AppleRootCA-G3.cer", "AppleRootCA-G2.cer", "AppleIncRootCertificate.cer")],
)
APPLE_KEY_ID = env.str("APPLE_KEY_ID", default="")
APPLE_ISSUER_ID = env.str("APPLE_ISSUER_ID", default="")
APPLE_PRIVATE_KEY_FILE = env.str("APPLE_PRIVATE_KEY_FILE", default="")
APPLE_API_BASE_URL = env.str("APPLE_API_BASE_URL", default="")
# Xcode / LocalTesting payloads carry no real signature: development only.
APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = env.bool("APPLE_ALLOW_UNSIGNED_ENVIRONMENTS", default=False)
APPLE_ONLINE_CHECKS = env.bool("APPLE_ONLINE_CHECKS", default=not TESTING)

# --- Google Play ------------------------------------------------------------------------------
GOOGLE_PLAY_PACKAGE_NAME = env.str("GOOGLE_PLAY_PACKAGE_NAME", default="")
GOOGLE_SERVICE_ACCOUNT_FILE = env.str("GOOGLE_SERVICE_ACCOUNT_FILE", default="")
GOOGLE_PLAY_API_ENDPOINT = env.str("GOOGLE_PLAY_API_ENDPOINT", default="")
GOOGLE_PUBSUB_AUDIENCE = env.str("GOOGLE_PUBSUB_AUDIENCE", default="")
GOOGLE_PUBSUB_SERVICE_ACCOUNT = env.str("GOOGLE_PUBSUB_SERVICE_ACCOUNT", default="")
GOOGLE_PUBSUB_VERIFICATION_TOKEN = env_secret(env, "GOOGLE_PUBSUB_VERIFICATION_TOKEN", default="")
GOOGLE_PUBSUB_CERTS_URL = env.str("GOOGLE_PUBSUB_CERTS_URL", default="https://www.googleapis.com/oauth2/v1/certs")
GOOGLE_PLAY_QUOTA_PER_MINUTE = env.int("GOOGLE_PLAY_QUOTA_PER_MINUTE", default=3000)
# One Play API call; slower counts as a transient failure (the event is retried).
GOOGLE_PLAY_API_TIMEOUT_SECONDS = env.float("GOOGLE_PLAY_API_TIMEOUT_SECONDS", default=20.0)
# A purchase token nobody here claims: "ignore" (another deployment's, sharing the topic) or "orphan".
GOOGLE_UNKNOWN_TOKEN_POLICY = env.str("GOOGLE_UNKNOWN_TOKEN_POLICY", default="orphan")

# --- Xsolla -----------------------------------------------------------------------------------
XSOLLA_PROJECT_ID = env.str("XSOLLA_PROJECT_ID", default="")
XSOLLA_WEBHOOK_SECRET = env_secret(env, "XSOLLA_WEBHOOK_SECRET", default="")
XSOLLA_MERCHANT_ID = env.str("XSOLLA_MERCHANT_ID", default="")
XSOLLA_API_KEY = env_secret(env, "XSOLLA_API_KEY", default="")
XSOLLA_API_BASE = env.str("XSOLLA_API_BASE", default="https://api.xsolla.com/merchant/v2")

# --- Rate limits (docs/security.md) -----------------------------------------------------------
# "<count>/<window>" ("60/minute", "5/hour", "60/10minutes"; "off" or 0: no limit), sliding windows
# counted in Redis; without Redis (or while it is unavailable) they are not enforced (fail open).
from config.rates import parse_rate  # noqa: E402 (kept in its section)


def _rate_setting(name: str, default: str) -> str:
    value = env.str(name, default=default)
    parse_rate(value, name=name)  # a typo stops the start, not a request
    return value


RATE_LIMIT_VERIFY_PER_USER = _rate_setting("RATE_LIMIT_VERIFY_PER_USER", "60/minute")
RATE_LIMIT_VERIFY_PER_API_KEY = _rate_setting("RATE_LIMIT_VERIFY_PER_API_KEY", "1200/minute")
# Declined payments (Stripe subscribe; Checkout and SetupIntents refused too) before 429 for that user.
RATE_LIMIT_PAYMENT_DECLINES_PER_USER = _rate_setting("RATE_LIMIT_PAYMENT_DECLINES_PER_USER", "5/hour")
# 401s answered to one address outside CHECK_API_TRUSTED_NETWORKS (expired tokens not counted).
RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = _rate_setting("RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS", "60/10minutes")
# The most of GOOGLE_PLAY_QUOTA_PER_MINUTE that purchase verification may spend; the rest is always
# left for webhook processing, re-polls and acknowledgements.
GOOGLE_PLAY_VERIFY_QUOTA_PERCENT = env.int("GOOGLE_PLAY_VERIFY_QUOTA_PERCENT", default=25)
if not 1 <= GOOGLE_PLAY_VERIFY_QUOTA_PERCENT <= 100:
    raise environ.ImproperlyConfigured("GOOGLE_PLAY_VERIFY_QUOTA_PERCENT must be between 1 and 100")

# Admin login (django-axes): ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address lock that pair out for ADMIN_LOGIN_COOLOFF_MINUTES, the right password included.
AXES_ENABLED = env.bool("ADMIN_LOGIN_THROTTLING", default=True)
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("ADMIN_LOGIN_COOLOFF_MINUTES", default=15.0) / 60  # a float: hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "billing.api.throttles.client_address"
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "admin/login_locked_out.html"


# --- Trusted networks, proxies, production hardening (docs/security.md, docs/deploy.md) -----------
# CIDRs whose callers may use the check API without credentials and read /health's details, the API
# schema and docs. Without DEBUG none is trusted unless named here: a proxy or sidecar on loopback
# would otherwise make every Internet caller "trusted".
CHECK_API_TRUSTED_NETWORKS = env.list("CHECK_API_TRUSTED_NETWORKS",
                                      default=["127.0.0.0/8", "::1/128"] if DEBUG else [])
# CIDRs of the reverse proxies whose Forwarded / X-Forwarded-For / X-Real-IP are believed; a request
# carrying such a header from any other peer has no known client (never trusted). The web server believes
# X-Forwarded-Proto from the same list (config/granian_wsgi.py; config/gunicorn.py under gunicorn).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# End-user JWTs: without DEBUG a token must name our audience and its issuer, unless switched off here
# (JWT_AUDIENCE / JWT_ISSUER then must be set: `manage.py check` says so, tokens are refused).
JWT_REQUIRE_AUDIENCE = env.bool("JWT_REQUIRE_AUDIENCE", default=not DEBUG)
JWT_REQUIRE_ISSUER = env.bool("JWT_REQUIRE_ISSUER", default=not DEBUG)
# A token valid longer than this (exp - iat, or exp - now without iat) is refused: a stolen long-lived
# token would otherwise be a permanent credential.
JWT_MAX_LIFETIME_SECONDS = env.int("JWT_MAX_LIFETIME_SECONDS", default=24 * 3600)

# BILLING_TESTING (a development secret key, no certificate revocation checks) is for the test suite:
# with DEBUG off a server or worker refuses to start with it (config/startup.py) unless this is set,
# which tests/settings.py alone does.
BILLING_TESTING_ALLOWED = DEBUG

# HTTPS. HSTS and Secure cookies are on without DEBUG (harmless over plain HTTP: browsers honour HSTS
# only from HTTPS answers). The redirect is opt-in: behind a TLS-terminating proxy it loops until
# SECURE_PROXY_SSL_HEADER (or X-Forwarded-Proto from TRUSTED_PROXIES) tells Django the request was HTTPS.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Paths (regexes, without the leading /) answered over plain HTTP too: load-balancer probes.
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^health$"])
# "HTTP_X_FORWARDED_PROTO,https": only when every request reaches Django through a proxy that sets it.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER is 'HEADER,value', e.g. 'HTTP_X_FORWARDED_PROTO,https'.")
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# django-csp 4: the admin's and the API docs' pages load scripts only from our own static files; inline
# styles stay allowed (the admin and Swagger UI use style attributes), inline scripts do not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],  # Redoc's search runs in a worker it builds from a blob
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
    },
}


# --- Test purchases and proof of purchase (docs/security.md) -------------------------------------
# Sandbox and test purchases are recorded (staff see them) but grant access only where a store's
# setting allows them, or to the testers listed below (billing/test_purchases.py, applied by the write
# path). Default: allowed with DEBUG, refused otherwise. Apple's sandbox is allowed anyway when
# APPLE_ENVIRONMENT is not Production, Stripe's test mode when the key is not live (a test deployment).
# Unset (None): as DEBUG.
APPLE_ALLOW_SANDBOX = env.bool("APPLE_ALLOW_SANDBOX", default=None)
GOOGLE_ALLOW_TEST_PURCHASES = env.bool("GOOGLE_ALLOW_TEST_PURCHASES", default=None)
STRIPE_ALLOW_TEST_MODE = env.bool("STRIPE_ALLOW_TEST_MODE", default=None)
XSOLLA_ALLOW_DRY_RUN = env.bool("XSOLLA_ALLOW_DRY_RUN", default=None)
# The app's user ids whose test purchases grant access everywhere (QA, the App Review demo account).
TEST_PURCHASE_USER_IDS = env.list("TEST_PURCHASE_USER_IDS", default=[])
# Google push authentication: the OIDC token is the default. The shared token
# (GOOGLE_PUBSUB_VERIFICATION_TOKEN) is read from the X-Pubsub-Verification-Token header; from the
# push URL (?token=, which lands in access logs) only when this is on.
GOOGLE_PUBSUB_TOKEN_IN_URL = env.bool("GOOGLE_PUBSUB_TOKEN_IN_URL", default=False)


# --- Metrics (docs/operations.md "Metrics") ---------------------------------------------------

# GET /metrics answers the trusted networks (CHECK_API_TRUSTED_NETWORKS) and callers sending
# `Authorization: Bearer <METRICS_TOKEN>`; empty (the default): no token is accepted.
METRICS_TOKEN = env_secret(env, "METRICS_TOKEN", default="")
# prometheus-client's multiprocess mode: the directory (shared by the web workers and the Celery worker, on
# one host or a shared volume) where every process keeps its values; empty (make run): one process's.
# Read by prometheus-client itself from the environment when a process starts.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")

# --- Alerts (docs/operations.md "Alerts") -------------------------------------------------------
# The beat job operations.tasks.check_alerts sends each alert once when it starts to ADMINS (above) and/or
# ALERT_WEBHOOK_URL (Slack-compatible JSON {"text": ...}; empty: none), reminds every ALERT_REMINDER_HOURS
# while it lasts (0: never) and, with ALERT_SEND_RESOLVED, says when it cleared.
ALERT_WEBHOOK_URL = env_secret(env, "ALERT_WEBHOOK_URL", default="")
# Starts every mail to ADMINS and every alert message (a space follows): name the deployment ("[billing prod]").
EMAIL_SUBJECT_PREFIX = (env.str("EMAIL_SUBJECT_PREFIX", default="[billing-service]").strip() + " ").lstrip()
ALERT_WEBHOOK_TIMEOUT_SECONDS = env.float("ALERT_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
ALERT_REMINDER_HOURS = env.float("ALERT_REMINDER_HOURS", default=24.0)
ALERT_SEND_RESOLVED = env.bool("ALERT_SEND_RESOLVED", default=True)
# A store with live subscriptions that sent no webhook this long (0: not checked).
ALERT_WEBHOOK_SILENCE_HOURS = env.float("ALERT_WEBHOOK_SILENCE_HOURS", default=24.0)
# Status changes not published to the stream this long.
ALERT_OUTBOX_BACKLOG_MINUTES = env.float("ALERT_OUTBOX_BACKLOG_MINUTES", default=5.0)
# Google purchases unacknowledged this close to their deadline (Google refunds them after 3 days).
ALERT_GOOGLE_ACK_DUE_HOURS = env.float("ALERT_GOOGLE_ACK_DUE_HOURS", default=12.0)


# --- Outgoing webhooks (docs/events.md "Outgoing webhooks") -------------------------------------
# Status changes POSTed, signed, to endpoints staff register in the admin (outgoing/).
OUTGOING_WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("OUTGOING_WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5.0)
OUTGOING_WEBHOOK_READ_TIMEOUT_SECONDS = env.float("OUTGOING_WEBHOOK_READ_TIMEOUT_SECONDS", default=10.0)
# Backoff: base * 2^(attempt-1), half of it random, capped; retried until failing for the horizon, then dead.
OUTGOING_WEBHOOK_RETRY_BASE_SECONDS = env.float("OUTGOING_WEBHOOK_RETRY_BASE_SECONDS", default=60.0)
OUTGOING_WEBHOOK_RETRY_MAX_SECONDS = env.float("OUTGOING_WEBHOOK_RETRY_MAX_SECONDS", default=6 * 3600.0)
OUTGOING_WEBHOOK_RETRY_HORIZON_HOURS = env.float("OUTGOING_WEBHOOK_RETRY_HORIZON_HOURS", default=72.0)
# Endpoints must be https:// unless this is on (default: DEBUG, for local receivers).
OUTGOING_WEBHOOK_ALLOW_HTTP = env.bool("OUTGOING_WEBHOOK_ALLOW_HTTP", default=DEBUG)
# No broker and no beat (`make run`): the web process dispatches after each request (outgoing/inline.py).
OUTGOING_WEBHOOK_SEND_AFTER_REQUEST = env.bool("OUTGOING_WEBHOOK_SEND_AFTER_REQUEST",
                                               default=CELERY_TASK_ALWAYS_EAGER and DEBUG)


# --- Finance (docs/finance.md) -------------------------------------------------------------------

# Metrics: the currency the exports also convert amounts to, with the rates staff enter per currency and
# month (admin: Exchange rates); a figure without a rate stays in its own currency, flagged. Default: none.
FINANCE_REPORTING_CURRENCY = env.str("FINANCE_REPORTING_CURRENCY", default="").strip().upper()
if FINANCE_REPORTING_CURRENCY and not (len(FINANCE_REPORTING_CURRENCY) == 3 and FINANCE_REPORTING_CURRENCY.isalpha()):
    raise ImproperlyConfigured("FINANCE_REPORTING_CURRENCY must be an ISO 4217 code of three letters (e.g. EUR).")

# --- Support console (docs/support.md) -------------------------------------------------------------
# Store actions: Apple's CONSUMPTION_REQUEST (a user asked Apple for a refund) answered automatically
# from what we hold (docs/support.md "Store actions"). Off by default: staff answer from the form.
APPLE_CONSUMPTION_AUTO_ANSWER = env.bool("APPLE_CONSUMPTION_AUTO_ANSWER", default=False)
# Apple refuses an answer unless the customer consented to share consumption data. Set true only when the
# app really collects that consent (e.g. in its terms); without it the automatic answer sends nothing.
APPLE_CONSUMPTION_CUSTOMER_CONSENTED = env.bool("APPLE_CONSUMPTION_CUSTOMER_CONSENTED", default=False)
# Whether the app offers a free sample or trial before purchase (sent as sampleContentProvided); a
# subscription that went through a free trial here counts as sampled whatever this says. Default false.
APPLE_CONSUMPTION_SAMPLE_CONTENT_PROVIDED = env.bool("APPLE_CONSUMPTION_SAMPLE_CONTENT_PROVIDED", default=False)
# The outcome to ask Apple for in automatic answers: DECLINE, GRANT_FULL, GRANT_PRORATED, or empty
# (default) to state no preference and let Apple decide.
APPLE_CONSUMPTION_REFUND_PREFERENCE = env.str("APPLE_CONSUMPTION_REFUND_PREFERENCE", default="")
# The admin's layout (billing/admin_site.py): our sections first, dj-stripe's models as one "Stripe mirror"
# section for superusers only. Replaces django.contrib.admin's config in place (same app, same label).
INSTALLED_APPS[INSTALLED_APPS.index("django.contrib.admin")] = "billing.admin_site.ConsoleAdminConfig"


# --- Reconciliation, store budgets, double payments (docs/operations.md) ----------------------------
# Store API budgets (billing/store_budgets.py, docs/operations.md "Store budgets"): our own cap on the calls
# made to each store, per minute (any 60 s) and per day (any 24 h); 0 turns that window off. The defaults are
# each store's published quota for the calls we make:
# Google Play: 3,000 queries/minute per bucket, 200,000 queries/day (developers.google.com/android-publisher/quotas);
# the minute default follows the older GOOGLE_PLAY_QUOTA_PER_MINUTE, which it replaces.
STORE_BUDGET_GOOGLE_PER_MINUTE = env.int("STORE_BUDGET_GOOGLE_PER_MINUTE", default=GOOGLE_PLAY_QUOTA_PER_MINUTE)
STORE_BUDGET_GOOGLE_PER_DAY = env.int("STORE_BUDGET_GOOGLE_PER_DAY", default=200_000)
# Apple: Get All Subscription Statuses and Get Notification History 50 requests/s in production, enforced
# per hour (App Store Server API, "Identifying rate limits"; sandbox gets 10 % of that): 3,000/min, 4,320,000/day.
STORE_BUDGET_APPLE_PER_MINUTE = env.int("STORE_BUDGET_APPLE_PER_MINUTE", default=3000)
STORE_BUDGET_APPLE_PER_DAY = env.int("STORE_BUDGET_APPLE_PER_DAY", default=4_320_000)
# Stripe: 100 operations/s per account in live mode and 25 requests/s per endpoint (docs.stripe.com/rate-limits;
# a re-read is one endpoint): 1,500/min; no daily quota.
STORE_BUDGET_STRIPE_PER_MINUTE = env.int("STORE_BUDGET_STRIPE_PER_MINUTE", default=1500)
STORE_BUDGET_STRIPE_PER_DAY = env.int("STORE_BUDGET_STRIPE_PER_DAY", default=0)
# Xsolla publishes no rate limit for its Subscriptions API (developers.xsolla.com/api/getting-started): 10
# calls/s (600/min) is our own cautious choice; no daily quota.
STORE_BUDGET_XSOLLA_PER_MINUTE = env.int("STORE_BUDGET_XSOLLA_PER_MINUTE", default=600)
STORE_BUDGET_XSOLLA_PER_DAY = env.int("STORE_BUDGET_XSOLLA_PER_DAY", default=0)
# The most of a store's minute budget purchase verification may spend (default: GOOGLE_PLAY_VERIFY_QUOTA_PERCENT,
# 25), so an app verifying in a loop never starves webhook processing.
STORE_BUDGET_VERIFY_PERCENT = env.int("STORE_BUDGET_VERIFY_PERCENT", default=GOOGLE_PLAY_VERIFY_QUOTA_PERCENT)
# The share of each window kept from the background jobs: the beat re-poll stops while less than 20 % is left,
# the reconciliation while less than 50 % is left (webhook processing and verification may use it all).
STORE_BUDGET_REPOLL_RESERVE_PERCENT = env.int("STORE_BUDGET_REPOLL_RESERVE_PERCENT", default=20)
STORE_BUDGET_RECONCILE_RESERVE_PERCENT = env.int("STORE_BUDGET_RECONCILE_RESERVE_PERCENT", default=50)
for _name in ("STORE_BUDGET_VERIFY_PERCENT", "STORE_BUDGET_REPOLL_RESERVE_PERCENT",
              "STORE_BUDGET_RECONCILE_RESERVE_PERCENT"):
    if not 0 <= globals()[_name] <= 100:
        raise ImproperlyConfigured(f"{_name} must be between 0 and 100")
# A store answering 429 pauses its background jobs for its Retry-After or this backoff, whichever is longer:
# 60 s, doubled for each 429 in a row, at most 3600 s.
STORE_BUDGET_PAUSE_SECONDS = env.int("STORE_BUDGET_PAUSE_SECONDS", default=60)
STORE_BUDGET_PAUSE_MAX_SECONDS = env.int("STORE_BUDGET_PAUSE_MAX_SECONDS", default=3600)
# Reconciliation (billing/reconciliation.py, docs/operations.md "Reconciliation and drift"): a live subscription,
# or one ended in the last RECONCILE_ENDED_DAYS (30), is re-read when its store has not confirmed it for
# RECONCILE_INTERVAL_HOURS (24): once per cycle, oldest confirmation first, within the store's budget.
RECONCILE_INTERVAL_HOURS = env.float("RECONCILE_INTERVAL_HOURS", default=24.0)
RECONCILE_ENDED_DAYS = env.int("RECONCILE_ENDED_DAYS", default=30)
# Rows read per query (one indexed batch) and how long one beat run may go on (the beat runs every 10 min).
RECONCILE_BATCH = env.int("RECONCILE_BATCH", default=500)
RECONCILE_RUN_SECONDS = env.float("RECONCILE_RUN_SECONDS", default=540.0)


# --- Privacy requests and retention (docs/operations.md "Retention") --------------------------------
# The beat job privacy.tasks.prune_retained (daily) prunes in batches of RETENTION_BATCH_SIZE rows, each
# batch its own short transaction; it never touches the ledger (transactions) or the status history.
# Days of 0 mean keep forever. Raw webhook bodies, headers and decoded payloads of processed and ignored
# events are emptied this many days after processing (failed and dead ones are kept until resolved);
# the event's row, and its dedupe key, stay.
RETENTION_WEBHOOK_BODY_DAYS = env.int("RETENTION_WEBHOOK_BODY_DAYS", default=30)
# Processed and ignored events' rows (and so their dedupe keys) are deleted this many days after
# processing. At least 8 days: a store's redelivery must still be recognised (Pub/Sub redelivers for 7
# days; Apple retries for about 6.5 days, Stripe for 3; PROVIDERS.md).
RETENTION_WEBHOOK_EVENT_DAYS = env.int("RETENTION_WEBHOOK_EVENT_DAYS", default=400)
if 0 < RETENTION_WEBHOOK_EVENT_DAYS < 8:
    raise ImproperlyConfigured("RETENTION_WEBHOOK_EVENT_DAYS must be 0 (keep) or at least 8: the dedupe keys must "
                               "outlive every store's retry window (Google Pub/Sub: 7 days)")
# Published outbox rows (unpublished ones wait for the relay, whatever their age).
RETENTION_OUTBOX_DAYS = env.int("RETENTION_OUTBOX_DAYS", default=30)
# Stream entries older than this are trimmed (XTRIM MINID ~), besides the count cap BILLING_EVENTS_STREAM_MAXLEN.
RETENTION_STREAM_DAYS = env.int("RETENTION_STREAM_DAYS", default=30)
# Outgoing webhooks: delivered deliveries (with their attempts) and event copies no delivery waits for.
# Dead deliveries are kept until resent or deleted by staff.
RETENTION_OUTGOING_DAYS = env.int("RETENTION_OUTGOING_DAYS", default=30)
# Hourly counters of rejected webhook requests in Redis (the admin index shows the last 24 h): at least 25.
RETENTION_REJECTED_COUNTERS_HOURS = env.int("RETENTION_REJECTED_COUNTERS_HOURS", default=48)
if RETENTION_REJECTED_COUNTERS_HOURS < 25:
    raise ImproperlyConfigured("RETENTION_REJECTED_COUNTERS_HOURS must be at least 25 (the admin shows a day)")
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)


# --- Error tracking (docs/operations.md "Errors") -----------------------------------------------
# Sentry (or a Sentry-compatible service such as GlitchTip) receives unhandled errors of requests and
# Celery tasks when SENTRY_DSN is set; personal data and secrets are scrubbed (operations/sentry.py).
SENTRY_DSN = env_secret(env, "SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)  # 0: errors only
if SENTRY_DSN:
    from operations.sentry import sentry_init

    sentry_init(SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)


# --- Logging (docs/operations.md "Logs") ---------------------------------------------------------
# json: one JSON object per line (time, level, logger, message, request_id / task_id / event_id /
# subscription_id / user_id where known), for a log shipper; text: readable lines for a terminal.
# Default: text with DEBUG (`make run`), json otherwise. Secrets and credentials are masked in both.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "operations.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "operations.logging.JsonFormatter"},
        "text": {"()": "operations.logging.TextFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The stripe library logs every API call at INFO (method, path, status, request id): kept at
        # INFO as an audit of what was asked of Stripe; its DEBUG lines (request bodies) are not wanted.
        "stripe": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
    },
}
