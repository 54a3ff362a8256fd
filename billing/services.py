"""Writes of subscription state. The ONE write path is `apply_snapshot` / `apply_snapshots`
(billing/apply.py): webhooks, verification, re-polls, staff fixes and beat jobs all come through it."""

from dataclasses import asdict
from datetime import datetime

from .apply import ApplyResult, apply_snapshot, apply_snapshots, subscription_link_subscriber
from .snapshots import Snapshot

__all__ = ["ApplyResult", "apply_snapshot", "apply_snapshots", "snapshot_as_dict", "subscription_link_subscriber"]


def snapshot_as_dict(snapshot: Snapshot) -> dict:
    """For logs and the admin: a snapshot as JSON-able data."""
    data = asdict(snapshot)
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
