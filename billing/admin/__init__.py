"""The admin console, one module per room: subscriptions (the console and its actions), subscribers,
catalogue, ledgers (status history, transactions), outbox, drifts (what store reads found different);
toolkit holds what they share (read-only
options, fields, the one confirm-action page). Importing the package registers every room."""

from . import catalogue, double_payments, drifts, ledgers, outbox, subscribers, subscriptions

__all__ = ["catalogue", "double_payments", "drifts", "ledgers", "outbox", "subscribers", "subscriptions"]
