-- A subscription's pending deliveries in due order (an index range): a claim reaches every
-- subscription's earliest deliveries without walking the backlog of an endpoint at its limit.
CREATE INDEX deliveries_subscription_due ON deliveries (subscription_id, next_attempt_at, seq)
    WHERE status = 'pending';
