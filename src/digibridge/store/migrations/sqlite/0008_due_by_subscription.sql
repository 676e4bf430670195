-- A subscription's due deliveries in due order (an index range): a claim reaches the
-- deliveries of the endpoints below their limit without walking the backlog of one at its
-- limit. Takes the place of (subscription_id, status), of which it is an extension.
CREATE INDEX deliveries_subscription_due ON deliveries (subscription_id, status, next_attempt_at);
DROP INDEX deliveries_subscription;
