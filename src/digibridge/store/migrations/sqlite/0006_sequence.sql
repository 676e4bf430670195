-- The pull feed and the `sequence` extension attribute.
--
-- Every event gets a `sequence` per source: 1, 2, 3, … zero-padded to 20 digits, assigned in the
-- ingest transaction from the source's counter below (so gap-free per source within the store),
-- and written into the event's bodies and routing attributes. The feed's position is `seq`
-- (AUTOINCREMENT: one writer, so insertion order is commit order, and never reused).

ALTER TABLE events ADD COLUMN sequence TEXT;

-- The last sequence given to each source; never lowered, not even when events are purged.
CREATE TABLE source_sequences (
    source TEXT PRIMARY KEY,
    last   INTEGER NOT NULL
);

-- Events stored before this version are numbered in store order, and their bodies and
-- attributes get the attribute too (json_set appends it, as the store does for new events).
UPDATE events SET sequence = printf('%020d', numbered.n)
FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY source ORDER BY seq) AS n FROM events) AS numbered
WHERE numbered.seq = events.seq;

UPDATE events SET body = CAST(json_set(CAST(body AS TEXT), '$.sequence', sequence) AS BLOB)
WHERE json_valid(CAST(body AS TEXT));

UPDATE events
SET informatiearm_body =
    CAST(json_set(CAST(informatiearm_body AS TEXT), '$.sequence', sequence) AS BLOB)
WHERE informatiearm_body IS NOT NULL AND json_valid(CAST(informatiearm_body AS TEXT));

UPDATE events SET attributes = json_set(attributes, '$.sequence', sequence)
WHERE json_valid(attributes);

INSERT INTO source_sequences (source, last)
SELECT source, COUNT(*) FROM events GROUP BY source;

-- The feed's filters: by source, by type, each in store order.
CREATE INDEX events_source_seq ON events (source, seq);
CREATE INDEX events_type_seq ON events (type, seq);
