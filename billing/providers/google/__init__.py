"""Google Play: RTDN over Pub/Sub push, the Play Developer API (subscriptionsv2), acknowledgement.

See docs/providers/google.md. `adapter.GoogleAdapter` is what the registry loads."""
