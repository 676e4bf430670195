-- The complete subscriptions API: paged, filtered listing, and the receiver's granted rate.

-- Requests per minute the dispatcher keeps to for this subscription (the lower of the rate the
-- subscriber asked for and the `WebHook-Allowed-Rate` the receiver granted); NULL: no limit.
-- A column, not part of `options`, because the claim query reads it.
ALTER TABLE subscriptions ADD COLUMN rate_limit INTEGER;
-- When the next request of a rate-limited subscription may start: each claim of one of its
-- deliveries moves it 60 / rate_limit seconds past the claim, so requests are spaced evenly
-- and no minute-long window holds more than rate_limit of them, across every dispatcher.
ALTER TABLE subscriptions ADD COLUMN rate_next_at TEXT;

-- Listing pages in (created_at, id) order, optionally for one sink.
CREATE INDEX subscriptions_listed ON subscriptions (created_at, id);
CREATE INDEX subscriptions_sink ON subscriptions (sink);
