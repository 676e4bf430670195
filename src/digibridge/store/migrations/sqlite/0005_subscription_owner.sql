-- Who owns a subscription: the REST API consumer (API key name or OAuth client_id) that created
-- it. Only it, or a caller with the deliveries:admin scope, sees the subscription and its
-- deliveries. NULL for subscriptions made before this version: admin only.

ALTER TABLE subscriptions ADD COLUMN owner TEXT;
CREATE INDEX subscriptions_owner ON subscriptions (owner, created_at, id);
