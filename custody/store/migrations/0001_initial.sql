-- Version 1: keys and signing requests.
--
-- The SQL stays portable between SQLite and PostgreSQL: TEXT, BIGINT and BLOB columns, CHECK constraints and
-- plain indexes. Times are ISO-8601 UTC text with microseconds ("2024-05-01T12:00:00.000000Z"), which sorts
-- in time order as text. Chain ids and policy versions are BIGINT because some chain ids do not fit in 32 bits.
-- Statements are separated by semicolons at the end of a line and contain no other semicolons.

CREATE TABLE schema_version (
    version BIGINT NOT NULL PRIMARY KEY,
    applied_at TEXT NOT NULL
);

CREATE TABLE keys (
    key_id TEXT NOT NULL PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    public_key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'FROZEN')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE requests (
    request_id TEXT NOT NULL PRIMARY KEY,
    key_label TEXT NOT NULL,
    key_id TEXT NOT NULL REFERENCES keys (key_id),
    requester TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('transaction', 'typed_data', 'message')),
    chain_id BIGINT,
    payload BLOB NOT NULL,
    payload_hash BLOB NOT NULL,
    digest BLOB NOT NULL,
    decision_action TEXT NOT NULL,
    decision_rule TEXT,
    decision_reason TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (
        state IN ('PENDING_APPROVAL', 'APPROVED', 'SIGNED', 'DENIED', 'REJECTED', 'EXPIRED', 'CANCELLED', 'FAILED')
    ),
    signature BLOB,
    signed_tx BLOB,
    tx_hash BLOB,
    error TEXT,
    summary TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- A request is never marked SIGNED without the signature that makes it so.
    CHECK (state <> 'SIGNED' OR signature IS NOT NULL)
);

CREATE INDEX requests_by_created ON requests (created_at, request_id);
CREATE INDEX requests_by_state ON requests (state, created_at, request_id);
CREATE INDEX requests_by_key ON requests (key_label, created_at, request_id);
CREATE INDEX requests_by_requester ON requests (requester, created_at, request_id);
