"""The ORM reads of the Apple code: none. The App Store names the subscription (originalTransactionId)
and the buyer (appAccountToken) in every notification and API answer, and the one write path
(billing.apply) finds the rows from the snapshot; re-polls get the Subscription from their caller.
This module stays so that every store package has the same files."""
