-- digibridge SQLite schema, version 1.
-- Datetimes are ISO-8601 UTC text with microseconds and a `Z` (fixed width, so text order is time
-- order). JSON columns hold the subscription's filters, protocolsettings, types and the event's
-- context attributes.

CREATE TABLE messages (
    message_id       TEXT PRIMARY KEY,
    kenmerk          TEXT NOT NULL UNIQUE,
    basisregistratie TEXT NOT NULL,
    gebeurtenissoort TEXT NOT NULL,
    sender_oin       TEXT,
    received_at      TEXT NOT NULL,
    raw              BLOB NOT NULL
);

CREATE TABLE events (
    -- Insertion order, usable as a feed cursor.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL REFERENCES messages (message_id),
    type       TEXT NOT NULL,
    source     TEXT NOT NULL,
    subject    TEXT,
    time       TEXT,
    attributes TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX events_message_id ON events (message_id);

CREATE TABLE subscriptions (
    id               TEXT PRIMARY KEY,
    sink             TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    types            TEXT NOT NULL,
    source           TEXT,
    filters          TEXT NOT NULL,
    protocolsettings TEXT NOT NULL,
    sinkcredential   TEXT,
    secret           TEXT NOT NULL,
    mode             TEXT NOT NULL,
    ordered          INTEGER NOT NULL,
    form             TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_reason    TEXT,
    created_at       TEXT NOT NULL
);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES events (id),
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    lease_owner      TEXT,
    lease_until      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_error       TEXT,
    last_status_code INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, status);

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    started_at       TEXT NOT NULL,
    duration_ms      REAL NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, number)
);
