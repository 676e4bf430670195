-- digibridge SQLite schema, version 2: each event is also kept in its informatiearm form
-- (data reduced to the identifiers, plus `dataref`), sent to subscriptions that ask for it.
-- NULL for events stored before this version (they are sent informatierijk).

ALTER TABLE events ADD COLUMN informatiearm_body BLOB;
