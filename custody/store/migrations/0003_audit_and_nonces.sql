-- Version 3: the tamper-evident audit log, the nonces custody has handed out, and explicit replacements.
--
-- Same conventions as versions 1 and 2: portable SQL (TEXT, BIGINT, BLOB, CHECK, plain indexes), times as
-- fixed-width UTC text, statements separated by semicolons at the end of a line with no other semicolons.
-- Nothing existing is rebuilt, so every row from version 2 stays as it is.

-- One row per audit event. The hash covers the event's canonical encoding (custody/audit/events.py), which
-- includes the previous event's hash, so the rows form a chain. Sequence numbers run 1, 2, 3, ... without
-- gaps: each append takes the head's number plus one inside the write lock, and the primary key refuses a
-- second event at one number should two writers ever disagree.
CREATE TABLE audit_events (
    sequence BIGINT NOT NULL PRIMARY KEY CHECK (sequence >= 1),
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    -- Compact JSON with sorted keys, exactly as the hash covers it.
    details TEXT NOT NULL,
    previous_hash BLOB NOT NULL,
    hash BLOB NOT NULL UNIQUE
);

-- ListEvents filters by request, actor, kind and time, and always returns events in sequence order.
CREATE INDEX audit_by_request ON audit_events (request_id, sequence);
CREATE INDEX audit_by_actor ON audit_events (actor, sequence);
CREATE INDEX audit_by_kind ON audit_events (kind, sequence);
CREATE INDEX audit_by_time ON audit_events (time, sequence);

-- Which request holds each nonce of a key on a chain. The scope is "account" for an account's transaction
-- nonce and "safe:<address>" for a Safe's own nonce, so one table serves both. The nonce is decimal text
-- because an account nonce reaches 2**64 - 1 and a Safe nonce is a 256-bit integer, which no portable integer
-- type holds. The primary key is the unique constraint behind the daemon's "one payload per nonce" check.
CREATE TABLE nonces (
    key_id TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (request_id),
    payload_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (key_id, chain_id, scope, nonce)
);

-- Releasing a request's nonce when it ends unsigned looks the row up by its holder.
CREATE INDEX nonces_by_request ON nonces (request_id);

-- The request whose nonce a new request explicitly takes over; NULL for every other request.
ALTER TABLE requests ADD COLUMN replaces TEXT REFERENCES requests (request_id);
