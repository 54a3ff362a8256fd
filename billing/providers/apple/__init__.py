"""The Apple App Store: Server Notifications V2, the App Store Server API, StoreKit purchase verification.

Built on Apple's app-store-server-library. `verification` (signed data), `client` (the API client),
`mapping` (decoded data → snapshots), `adapter` (the ProviderAdapter)."""
