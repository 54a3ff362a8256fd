"""What operators run the service with: metrics, structured logs, alerts (docs/operations.md)."""
