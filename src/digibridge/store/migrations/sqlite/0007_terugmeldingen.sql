-- The reverse path: terugmeldingen, their history, Idempotency-Keys, and the outbox of
-- AnnotatieToevoegen requests to DigiMelding.

-- One terugmelding per row. `document` is the accepted JSON resource (lowerCamelCase, attachment
-- data left out: that travels in the outbox request). Two statuses: the transport status of the
-- melding (ontvangen/verzonden/mislukt) and the registry's DMKS status (NULL until known).
CREATE TABLE terugmeldingen (
    id                   TEXT PRIMARY KEY,
    owner                TEXT NOT NULL,
    registratie          TEXT NOT NULL,
    oin_basisregistratie TEXT NOT NULL,
    oin_melder           TEXT NOT NULL,
    document             TEXT NOT NULL,
    root_uuid            TEXT NOT NULL UNIQUE,
    transport_status     TEXT NOT NULL,
    dmks_status          TEXT,
    dmks_status_at       TEXT,
    annotatie_uuid       TEXT,
    verzonden_at         TEXT,
    intrekking_status    TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX terugmeldingen_owner ON terugmeldingen (owner, created_at, id);
CREATE INDEX terugmeldingen_created ON terugmeldingen (created_at, id);
-- What the status poller reads: sent ones.
CREATE INDEX terugmeldingen_open ON terugmeldingen (transport_status, dmks_status);

-- Everything that happened to a terugmelding, in order: transport and DMKS status changes, and
-- faults (DK code or `transport`, text, whether it was retried).
CREATE TABLE terugmelding_history (
    terugmelding_id TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    at              TEXT NOT NULL,
    status          TEXT,
    previous        TEXT,
    request_kind    TEXT,
    code            TEXT,
    text            TEXT,
    retried         INTEGER,
    unexpected      INTEGER NOT NULL DEFAULT 0,
    registry_time   TEXT,
    PRIMARY KEY (terugmelding_id, seq)
);

-- Idempotency-Key per consumer: the same key and body answer the first resource again.
CREATE TABLE terugmelding_keys (
    owner           TEXT NOT NULL,
    key             TEXT NOT NULL,
    body_digest     TEXT NOT NULL,
    terugmelding_id TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);

-- AnnotatieToevoegen requests waiting to be sent, as built and validated at submit time.
-- status: pending (claimable when next_attempt_at is due and no lease runs), sent, failed.
CREATE TABLE dmks_outbox (
    id                   TEXT PRIMARY KEY,
    terugmelding_id      TEXT NOT NULL REFERENCES terugmeldingen (id) ON DELETE CASCADE,
    kind                 TEXT NOT NULL,
    registratie          TEXT NOT NULL,
    oin_basisregistratie TEXT NOT NULL,
    annotatieboom        BLOB NOT NULL,
    root_uuid            TEXT NOT NULL,
    uuids                TEXT NOT NULL,
    status               TEXT NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TEXT,
    last_error           TEXT,
    lease_owner          TEXT,
    lease_until          TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX dmks_outbox_due ON dmks_outbox (status, next_attempt_at);
CREATE INDEX dmks_outbox_terugmelding ON dmks_outbox (terugmelding_id, created_at);
