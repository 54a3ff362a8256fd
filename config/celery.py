import logging
import os

from celery import Celery, bootsteps
from celery.signals import beat_init, setup_logging, task_failure, task_postrun, task_prerun, task_success, worker_init
from django.core.exceptions import ImproperlyConfigured

from config.startup import refuse_unsafe_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("billing")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fix-up closes the database connection after every task unless told to reuse it, and
# it looks for this old-style name in the app's configuration, where the CELERY namespace of the Django
# settings never puts it: an environment variable alone never reached it (one connection per task).
# Reuse measured 2.8x faster on these machines; docs/operations.md "Processes".
app.conf["CELERY_DB_REUSE_MAX"] = int(os.environ.get("CELERY_DB_REUSE_MAX") or 1000)
app.autodiscover_tasks()
# Store packages keep their tasks beside them (billing/providers/<store>/tasks.py, where a store has any).
app.autodiscover_tasks([f"billing.providers.{name}" for name in ("stripe", "apple", "google", "xsolla")])


@worker_init.connect
@beat_init.connect
def _refuse_unsafe_settings(**kwargs):
    try:
        refuse_unsafe_settings()
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from None  # Celery logs and ignores a signal handler's exceptions


# --- beat job runs (operations/job_runs.py: last started / succeeded / failed, for alerts and /metrics) ---
# Imported inside: config/ is loaded before Django is set up. job_runs ignores tasks beat does not run.

@task_prerun.connect
def _job_run_started(sender=None, **kwargs):
    from operations import job_runs

    job_runs.record_started(sender.name)


@task_success.connect
def _job_run_succeeded(sender=None, **kwargs):
    from operations import job_runs

    job_runs.record_succeeded(sender.name)


@task_failure.connect
def _job_run_failed(sender=None, exception=None, **kwargs):
    from operations import job_runs

    job_runs.record_failed(sender.name, exception)


# --- Logs (docs/operations.md "Logs") ----------------------------------------------------------------
@setup_logging.connect
def _use_django_logging(loglevel=None, **kwargs):
    """Workers and beat write the same lines as the web (settings.LOGGING: JSON in production) instead
    of Celery's own format. Connected, this also stops Celery from installing its handlers. The root
    level is the more verbose of LOG_LEVEL and the command's --loglevel (the Procfile's: info)."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        root = logging.getLogger()
        level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
        if isinstance(level, int):
            root.setLevel(min(root.level, level))


_task_log_tokens: dict[str, object] = {}  # task id → the log context token to restore after it


@task_prerun.connect
def _task_log_context(task_id=None, task=None, **kwargs):
    from operations.log_context import bind

    _task_log_tokens[task_id] = bind(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _task_log_context_end(task_id=None, **kwargs):
    from operations.log_context import unbind

    token = _task_log_tokens.pop(task_id, None)
    if token is not None:
        unbind(token)


class DrainOnConnect(bootsteps.StartStopStep):
    """Each time the worker (re)connects to the broker, have the stored webhook events drained: events
    accepted while the broker was down (their publish failed) are processed as soon as it is back,
    not at the sweeper's next look. The consumer restarts its steps after a lost connection, so this
    runs on every reconnection (Celery retries every 2, 4, … at most 30 s during an outage)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}  # consuming: the drain it publishes is taken

    def start(self, consumer):
        # Imported here: config/ is loaded before Django is set up.
        from billing.redis_client import circuit_reset
        from webhooks import queue

        circuit_reset(consumer.app.conf.broker_url)  # just connected: the broker's server answers again
        try:
            queue.kick_drain(force=True)
        except Exception:  # never stop a worker from consuming: the sweeper remains
            logger.exception("could not schedule a drain after connecting to the broker")


app.steps["consumer"].add(DrainOnConnect)
