"""Finance: the ledger's exports, daily metrics, exchange rates and charts (docs/finance.md). Reads billing;
billing never imports it."""
