"""Who did what and why: the audit log of staff and API-key actions, and staff notes on subscribers
(docs/support.md). Imports only accounts, so every app may record in it."""
