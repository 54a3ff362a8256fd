"""Xsolla: web shop subscriptions. Webhooks signed with the project's secret key (user validation
answered at once), and the optional subscriptions API (merchant v2) for re-polls and cancels.

- adapter.py: `XsollaAdapter`, its HANDLERS table by notification type;
- auth.py: the webhook signature, the delivery's checks and dedupe key, Xsolla's answers (`XsollaDialect`);
- client.py: every call to the subscriptions API, and its errors as ours;
- mapping.py: notifications and API objects → Snapshots and Transactions (pure);
- selectors.py: the database reads (what we hold for a subscription, the subscriber, past charges);
- admin.py: Xsolla's admin actions and list filters (none yet)."""
