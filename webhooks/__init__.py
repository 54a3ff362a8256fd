"""The webhook pipeline: every store's deliveries stored once, then processed through its adapter and
the one write path (docs/webhooks.md).

- views.py: POST /webhooks/<provider>, a thin view over ingest.py
- ingest.py: size limits, authentication through the adapter, the event stored once, the answer
- processing.py: claim, parse, apply, the outcome, follow-ups; in-process or published
- retries.py: the backoff policy, retry or dead, failed, when a retry is published
- queue.py: publishing the drain and retry tasks (imports nothing of the pipeline)
- sweep.py: the sweeper (lost events, due retries); replay.py: replay after a fix
- recovery.py: deliveries recovered from a store's notification history (Apple)
- tasks.py (Celery), admin.py, selectors.py (reads), models.py (WebhookEvent)

Imports run views → ingest → processing → retries → queue; sweep, replay and tasks → processing;
recovery → ingest."""
