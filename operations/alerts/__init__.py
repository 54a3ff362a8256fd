"""Alerts (docs/operations.md "Alerts"): `conditions` (what is wrong now, each with a stable key),
`lifecycle` (announce once, remind at most every ALERT_REMINDER_HOURS, resolve), `channels` (the
ADMINS e-mail, ALERT_WEBHOOK_URL)."""
