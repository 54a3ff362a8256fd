"""The support console: one timeline per customer and subscription, undo, the pages staff use (docs/support.md).
Reads billing, webhooks and audit; nothing imports it."""
