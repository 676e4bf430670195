-- digibridge PostgreSQL schema, version 1: the meaning of SQLite's 0001-0007 in one step.
-- Datetimes are timestamptz, JSON is jsonb, bodies are bytea. Several digibridge instances share
-- these tables; what they must agree on (dedupe, leases, per-endpoint limits, circuits, rate
-- limits, feed positions) lives here, not in a process.

-- Inbound messages. Both unique keys dedupe across instances: an ingest inserts with
-- ON CONFLICT DO NOTHING and, when nothing was inserted, reads the original.
CREATE TABLE messages (
    message_id       TEXT PRIMARY KEY,
    kenmerk          TEXT NOT NULL UNIQUE,
    basisregistratie TEXT NOT NULL,
    gebeurtenissoort TEXT NOT NULL,
    sender_oin       TEXT,
    received_at      TIMESTAMPTZ NOT NULL,
    raw              BYTEA NOT NULL
);

-- The feed's position counter: one row, taken with UPDATE ... RETURNING in the ingest
-- transaction. The row lock is held until commit, so positions are given in commit order and a
-- reader resuming after a position never skips an event that commits later. Never lowered.
CREATE TABLE feed_position (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    value     BIGINT NOT NULL
);
INSERT INTO feed_position (value) VALUES (0);

CREATE TABLE events (
    position           BIGINT PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    message_id         TEXT NOT NULL REFERENCES messages (message_id),
    type               TEXT NOT NULL,
    source             TEXT NOT NULL,
    subject            TEXT,
    time               TIMESTAMPTZ,
    attributes         JSONB NOT NULL,
    body               BYTEA NOT NULL,
    informatiearm_body BYTEA,
    sequence           TEXT,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_message_id ON events (message_id);
CREATE INDEX events_subject ON events (subject, position);
CREATE INDEX events_source_position ON events (source, position);
CREATE INDEX events_type_position ON events (type, position);
CREATE INDEX events_created ON events (created_at);

-- The last `sequence` given to each source; never lowered, not even when events are purged.
CREATE TABLE source_sequences (
    source TEXT PRIMARY KEY,
    last   BIGINT NOT NULL
);

CREATE TABLE subscriptions (
    id               TEXT PRIMARY KEY,
    sink             TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    types            JSONB NOT NULL,
    source           TEXT,
    filters          JSONB NOT NULL,
    protocolsettings JSONB NOT NULL,
    sinkcredential   TEXT,
    secret           TEXT NOT NULL,
    mode             TEXT NOT NULL,
    ordered          BOOLEAN NOT NULL,
    form             TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_reason    TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    -- digibridge's own `delivery` options beyond the plain columns (see store/_codec.py).
    options          JSONB NOT NULL DEFAULT '{}',
    -- `scheme://host:port` of the sink: the unit of circuit breaking and per-endpoint limits.
    endpoint         TEXT NOT NULL,
    disabled_at      TIMESTAMPTZ,
    -- Requests per minute kept to (NULL: no limit), and when the next request may start.
    rate_limit       INTEGER,
    rate_next_at     TIMESTAMPTZ,
    owner            TEXT
);
CREATE INDEX subscriptions_endpoint ON subscriptions (endpoint);
CREATE INDEX subscriptions_listed ON subscriptions (created_at, id);
CREATE INDEX subscriptions_sink ON subscriptions (sink);
CREATE INDEX subscriptions_owner ON subscriptions (owner, created_at, id);

CREATE TABLE deliveries (
    -- Insertion order: the tie-break of the claim order (SQLite's rowid).
    seq              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES events (id),
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    last_status_code INTEGER,
    schedule_start   TIMESTAMPTZ,
    schedule_offset  INTEGER NOT NULL DEFAULT 0
);
-- The claim's scan: pending ones only, in claim order.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, status);
CREATE INDEX deliveries_listed ON deliveries (created_at, id);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_done ON deliveries (status, updated_at);
-- Only deliveries being sent: counting them per endpoint stays cheap however long the log is.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    duration_ms      DOUBLE PRECISION NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, number)
);

-- One circuit breaker per endpoint, shared by every instance (states as in SQLite's 0003).
CREATE TABLE circuits (
    endpoint      TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    successes     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    retry_at      TIMESTAMPTZ,
    probe_until   TIMESTAMPTZ,
    failing_since TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- The reverse path (as SQLite's 0007).
CREATE TABLE terugmeldingen (
    id                   TEXT PRIMARY KEY,
    owner                TEXT NOT NULL,
    registratie          TEXT NOT NULL,
    oin_basisregistratie TEXT NOT NULL,
    oin_melder           TEXT NOT NULL,
    document             JSONB NOT NULL,
    root_uuid            TEXT NOT NULL UNIQUE,
    transport_status     TEXT NOT NULL,
    dmks_status          TEXT,
    dmks_status_at       TIMESTAMPTZ,
    annotatie_uuid       TEXT,
    verzonden_at         TIMESTAMPTZ,
    intrekking_status    TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX terugmeldingen_owner ON terugmeldingen (owner, created_at, id);
CREATE INDEX terugmeldingen_created ON terugmeldingen (created_at, id);
CREATE INDEX terugmeldingen_open ON terugmeldingen (transport_status, dmks_status);

CREATE TABLE terugmelding_history (
    terugmelding_id TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    status          TEXT,
    previous        TEXT,
    request_kind    TEXT,
    code            TEXT,
    text            TEXT,
    retried         BOOLEAN,
    unexpected      BOOLEAN NOT NULL DEFAULT FALSE,
    registry_time   TIMESTAMPTZ,
    PRIMARY KEY (terugmelding_id, seq)
);

-- Idempotency-Key per consumer. The key is inserted first, with ON CONFLICT DO NOTHING (its
-- terugmelding follows in the same transaction: the reference is checked at commit), so two
-- instances given the same key at once store one terugmelding.
CREATE TABLE terugmelding_keys (
    owner           TEXT NOT NULL,
    key             TEXT NOT NULL,
    body_digest     TEXT NOT NULL,
    terugmelding_id TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE
                    DEFERRABLE INITIALLY DEFERRED,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE TABLE dmks_outbox (
    seq                  BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                   TEXT PRIMARY KEY,
    terugmelding_id      TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE,
    kind                 TEXT NOT NULL,
    registratie          TEXT NOT NULL,
    oin_basisregistratie TEXT NOT NULL,
    annotatieboom        BYTEA NOT NULL,
    root_uuid            TEXT NOT NULL,
    uuids                JSONB NOT NULL,
    status               TEXT NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TIMESTAMPTZ,
    last_error           TEXT,
    lease_owner          TEXT,
    lease_until          TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX dmks_outbox_due ON dmks_outbox (status, next_attempt_at);
CREATE INDEX dmks_outbox_terugmelding ON dmks_outbox (terugmelding_id, created_at);
