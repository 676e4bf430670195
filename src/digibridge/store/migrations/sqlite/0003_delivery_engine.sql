-- Delivery engine: per-subscription delivery options, endpoints and their circuit breakers,
-- manual retry schedules, and the indexes the claim query and retention need.

-- digibridge's own `delivery` options beyond secret/mode/ordered/form, as one JSON object
-- (timeout, retry4xx, signing keys and rotation, OAuth, mutual TLS, batch limits). JSON keeps a
-- new option from needing a migration; nothing queries inside it.
ALTER TABLE subscriptions ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
-- The sink's origin (`scheme://host:port` as written, lower-cased): the unit of circuit breaking
-- and of the per-endpoint concurrency limit.
ALTER TABLE subscriptions ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN disabled_at TEXT;
UPDATE subscriptions SET endpoint = lower(
    CASE WHEN instr(substr(sink, instr(sink, '//') + 2), '/') = 0 THEN sink
    ELSE substr(sink, 1, instr(sink, '//') + instr(substr(sink, instr(sink, '//') + 2), '/'))
    END);
CREATE INDEX subscriptions_endpoint ON subscriptions (endpoint);

-- A manual retry or replay starts the retry schedule again: from `schedule_start` (NULL: the
-- delivery's created_at), counting attempts after the first `schedule_offset`.
ALTER TABLE deliveries ADD COLUMN schedule_start TEXT;
ALTER TABLE deliveries ADD COLUMN schedule_offset INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_done ON deliveries (status, updated_at);
-- Only deliveries being sent: counting them per endpoint stays cheap however long the log is.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
-- The ordering check of ordered subscriptions: earlier events of the same subject.
CREATE INDEX events_subject ON events (subject, seq);

-- One circuit breaker per endpoint, shared by every dispatcher using this store.
--   closed:    requests flow; outcomes are counted in a window starting at window_start.
--   open:      nothing is sent until retry_at.
--   half_open: one probe is in flight until probe_until; its outcome closes or reopens.
-- failing_since: first failure after the last success (NULL while healthy); an endpoint failing
-- this long is disabled.
CREATE TABLE circuits (
    endpoint      TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    successes     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    retry_at      TEXT,
    probe_until   TEXT,
    failing_since TEXT,
    updated_at    TEXT NOT NULL
);
