-- Version 2: approval policies. Governance requests, request lifetimes and time-locks, signing claims,
-- signed approvals and policy versions.
--
-- Same conventions as version 1: portable SQL (TEXT, BIGINT, BLOB, CHECK, plain indexes), times as fixed-width
-- UTC text, statements separated by semicolons at the end of a line with no other semicolons.
--
-- The requests table is rebuilt because SQLite cannot change a CHECK constraint or drop a NOT NULL: the
-- governance kinds must be allowed, and a policy change names no key (key_id and key_label are NULL). The
-- whole file runs in one transaction, so a failure leaves the version 1 table as it was. Rows from version 1
-- take the column defaults: no lifetime, no time-lock, no claim, no trace, a value of 0 wei and no quorum.

CREATE TABLE requests_new (
    request_id TEXT NOT NULL PRIMARY KEY,
    key_label TEXT,
    key_id TEXT REFERENCES keys (key_id),
    requester TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (
        kind IN ('transaction', 'typed_data', 'message', 'policy_change', 'key_unfreeze')
    ),
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
    expires_at TEXT,
    not_before TEXT,
    claim_holder TEXT,
    claim_until TEXT,
    policy_trace TEXT NOT NULL DEFAULT '',
    -- Decimal text, because a transaction's value reaches 2**256 and no portable integer type holds that.
    value_wei TEXT NOT NULL DEFAULT '0',
    -- JSON list of {"group": ..., "threshold": ...}: the quorum the request was accepted under.
    quorum TEXT NOT NULL DEFAULT '[]',
    timelock_seconds BIGINT NOT NULL DEFAULT 0,
    -- A request is never marked SIGNED without the signature that makes it so.
    CHECK (state <> 'SIGNED' OR signature IS NOT NULL),
    -- Only a policy change names no key, and a key is always named by both its id and its label.
    CHECK ((key_id IS NULL) = (kind = 'policy_change')),
    CHECK ((key_id IS NULL) = (key_label IS NULL)),
    -- Governance requests take effect when approved; the HSM never signs them.
    CHECK (state <> 'SIGNED' OR kind IN ('transaction', 'typed_data', 'message')),
    -- A claim is a holder together with the moment it lapses.
    CHECK ((claim_holder IS NULL) = (claim_until IS NULL))
);

INSERT INTO requests_new (
    request_id, key_label, key_id, requester, kind, chain_id, payload, payload_hash, digest, decision_action,
    decision_rule, decision_reason, policy_version, state, signature, signed_tx, tx_hash, error, summary,
    created_at, updated_at
)
SELECT
    request_id, key_label, key_id, requester, kind, chain_id, payload, payload_hash, digest, decision_action,
    decision_rule, decision_reason, policy_version, state, signature, signed_tx, tx_hash, error, summary,
    created_at, updated_at
FROM requests;

DROP TABLE requests;

ALTER TABLE requests_new RENAME TO requests;

CREATE INDEX requests_by_created ON requests (created_at, request_id);
CREATE INDEX requests_by_state ON requests (state, created_at, request_id);
CREATE INDEX requests_by_key ON requests (key_label, created_at, request_id);
CREATE INDEX requests_by_requester ON requests (requester, created_at, request_id);
-- The time-lock worker looks for APPROVED requests whose not_before has passed, the expiry worker for waiting
-- requests whose expires_at has, and velocity limits count a key's approved and signed requests in a window.
CREATE INDEX requests_due ON requests (state, not_before);
CREATE INDEX requests_expiring ON requests (state, expires_at);
CREATE INDEX requests_velocity ON requests (key_label, state, created_at);

CREATE TABLE approvals (
    request_id TEXT NOT NULL REFERENCES requests (request_id),
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
    -- The canonical statement and the approver's Ed25519 signature over it, kept so the count can be
    -- re-verified by anyone later.
    statement BLOB NOT NULL,
    signature BLOB NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- The backstop for "an approver counts once": the store checks first, the database refuses regardless.
    PRIMARY KEY (request_id, approver)
);

CREATE INDEX approvals_in_order ON approvals (request_id, created_at, approver);

CREATE TABLE policy_versions (
    version BIGINT NOT NULL PRIMARY KEY,
    -- The TOML text exactly as proposed.
    document TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    -- The policy-change request that activated this version; NULL for the bootstrap policy.
    request_id TEXT
);
