"""The Apple App Store: Server Notifications V2 in, the App Store Server API out, StoreKit purchases
verified for the apps. Built on Apple's app-store-server-library.

- `adapter.py`: AppleAdapter, its HANDLERS table (keyed by notificationType) and the handlers.
- `auth.py`: Apple's signed data (JWS chains up to the roots in ../apple_roots/, per environment) and
  the webhook's body → the event to store (`webhook_authenticate`); the Apple system checks.
- `client.py`: every App Store Server API call (`subscription_get`, `notification_history_get`) and
  its errors as ours.
- `mapping.py`: verified data → Snapshots, and why a notification changes nothing (pure).
- `selectors.py`: the ORM reads of the Apple code (none).
- `admin.py`: the App Store's staff actions and list filters (none)."""
