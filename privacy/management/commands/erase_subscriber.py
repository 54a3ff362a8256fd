"""A customer's erasure request (docs/operations.md "Privacy requests")."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import subscriber_by_external_id
from privacy.erasure import ErasureRefused, subscriber_erase


class Command(BaseCommand):
    help = ("Erase a customer's personal data, keeping the ledger and subscriptions under a pseudonym. Refused "
            "while a paid subscription is live unless --force.")

    def add_arguments(self, parser):
        parser.add_argument("user_id", help="The app's user id")
        parser.add_argument("--reason", required=True, help="Why (e.g. the privacy request's ticket); recorded")
        parser.add_argument("--force", action="store_true",
                            help="Erase even while a paid subscription is live (revoked here, NOT at the store)")
        parser.add_argument("--dry-run", action="store_true", help="Say what would change; change nothing")

    def handle(self, *args, user_id, reason, force=False, dry_run=False, **options):
        subscriber = subscriber_by_external_id(user_id)
        if subscriber is None:
            raise CommandError(f"No subscriber with user id {user_id!r} (erased already, or never known).")
        try:
            report = subscriber_erase(subscriber=subscriber, reason=reason, force=force, dry_run=dry_run,
                                      actor=f"manage.py erase_subscriber ({_os_user()})")
        except ErasureRefused as exc:
            raise CommandError(str(exc)) from None
        counts = ", ".join(f"{name.replace('_', ' ')}: {n}" for name, n in report.counts.items())
        if dry_run:
            self.stdout.write(f"Dry run, nothing changed. Would revoke: {', '.join(report.revoked) or 'nothing'}. "
                              f"{counts}")
            return
        self.stdout.write(f"Erased as {report.pseudonym} (erasure {report.erasure_id}). Revoked: "
                          f"{', '.join(report.revoked) or 'nothing'}. {counts}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: still say it came from the command line
        return "unknown user"
