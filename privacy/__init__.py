"""Privacy requests and retention: export and erase a subscriber, prune raw data past its retention
(docs/operations.md). Reads and writes every app's rows; nothing imports it."""
