"""manage.py replay_events [--status dead|failed] [--provider P] [--since DATE] [--id ID ...]

Puts the selected events back to `received` with their attempts reset, and processes them here, one by
one, with a progress bar (the outcome of each is printed at the end)."""

from collections import Counter

from django.core.management.base import BaseCommand
from tqdm import tqdm

from billing.cli import moment
from webhooks.models import WebhookEvent
from webhooks.replay import event_replay_now

REPLAYABLE = [WebhookEvent.Status.DEAD, WebhookEvent.Status.FAILED]


class Command(BaseCommand):
    help = "Replay webhook events (dead and failed by default): reset their attempts and process them again."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=[s.value for s in REPLAYABLE] + ["all"],
                            help="dead or failed (default: both); 'all' with --id replays any event")
        parser.add_argument("--provider", help="only this provider's events")
        parser.add_argument("--since", type=moment, help="only events received from this date or time on (UTC)")
        parser.add_argument("--id", dest="ids", type=int, action="append", help="this event (repeatable)")
        parser.add_argument("--dry-run", action="store_true", help="list how many would be replayed")

    def handle(self, *args, status=None, provider=None, since=None, ids=None, dry_run=False, **options):
        events = WebhookEvent.objects.all()
        if status and status != "all":
            events = events.filter(status=status)
        elif not ids:
            events = events.filter(status__in=REPLAYABLE)
        if provider:
            events = events.filter(provider=provider)
        if since:
            events = events.filter(received_at__gte=since)
        if ids:
            events = events.filter(pk__in=ids)
        selected = list(events.order_by("received_at", "id").values_list("pk", flat=True))
        if not selected:
            self.stdout.write("No events to replay.")
            return
        if dry_run:
            self.stdout.write(f"{len(selected)} events would be replayed.")
            return
        outcomes = Counter()
        for event_id in tqdm(selected, desc="replaying", unit="event", disable=None, file=self.stderr):
            outcomes[event_replay_now(event_id)] += 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(selected)} events: {summary}."))
