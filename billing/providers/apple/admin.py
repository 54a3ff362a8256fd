"""The App Store's own staff actions and list filters for the subscriptions admin (collected by
billing/admin/subscriptions.py). None yet: staff act on Apple subscriptions through the console's
store-independent actions (grant, revoke, re-sync, link)."""

ACTIONS = ()
LIST_FILTERS = ()
