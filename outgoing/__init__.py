"""Outgoing webhooks: status changes POSTed, signed, to endpoints registered in the admin, for
consumers that cannot read the Redis stream (docs/events.md)."""
