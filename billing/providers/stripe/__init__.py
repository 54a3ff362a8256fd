"""Stripe: web subscriptions paid by card (our own form with SetupIntents, or Stripe Checkout), signed
webhooks in, the subscription re-read from Stripe's API (docs/providers/stripe.md).

- adapter.py: StripeAdapter, its HANDLERS table (event type → handler) and the handlers;
- auth.py: the Stripe-Signature check and the event decoding (`webhook_authenticate`);
- client.py: every call to Stripe's API (the stripe library) and its errors translated into ours;
- mapping.py: Stripe objects → Snapshots and transactions, pure (`subscription_snapshot`);
- selectors.py: the reads of our own state the package needs;
- services.py: its writes: the product catalogue, the dj-stripe mirror, the web subscriptions behind
  /api/stripe/*, and `subscription_state` (a Stripe subscription → Snapshot, with our revocation rule);
- admin.py: its admin actions and filters (none yet);
- tasks.py: the dj-stripe mirror's Celery task."""
