"""Google Play: RTDN over Pub/Sub push, the Play Developer API (subscriptionsv2), acknowledgement.
See docs/providers/google.md.

- adapter.py: `GoogleAdapter` (what the registry loads): the HANDLERS table per notification kind,
  verify, re-poll, cancel.
- auth.py: Pub/Sub push authentication (OIDC token or shared URL token) and the envelope decoding
  (`webhook_authenticate`).
- client.py: every Play Developer API call, the shared quota, and the translation of its errors.
- mapping.py: pure functions: the notification (kind, type name, store ids, time) and the purchase
  → Snapshot (`subscription_snapshot`).
- selectors.py: the reads: known tokens, who bought a purchase (`purchase_snapshot`), purchases
  awaiting acknowledgement.
- services.py: the writes of our own: acknowledging purchases, staff revoke/defer at Google.
- admin.py: the staff actions and the acknowledgement-deadline filter for the subscriptions admin.
- tasks.py: the beat task acknowledging what is left (`acknowledge_due`)."""
