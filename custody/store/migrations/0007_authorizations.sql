-- Version 7: EIP-7702 authorizations. A request may be of kind 'authorization', which the HSM signs like the
-- other signing kinds, and the nonces table names its scopes: 'account' for an account's transaction nonce,
-- 'authorization' for the nonce an EIP-7702 authorization carries (one authorization per key, chain and nonce)
-- and 'safe:<address>' for a Safe's own nonce.
--
-- Same conventions as the earlier versions: portable SQL (TEXT, BIGINT, BLOB, CHECK, plain indexes), times as
-- fixed-width UTC text, statements separated by semicolons at the end of a line with no other semicolons.
--
-- SQLite cannot change a CHECK constraint, so the requests table is rebuilt, and with it the two tables whose
-- foreign keys point at it (approvals, nonces): each new table is filled from the old one, the old tables are
-- dropped children first, and the new ones take the old names. The new tables get names no earlier version
-- used, because PostgreSQL keeps a table's constraint and index names across a rename (version 2's requests
-- table still owns requests_new_pkey). SQLite rewrites the foreign keys to follow a renamed table, and
-- PostgreSQL's follow the table itself. The whole file runs in one transaction, so a failure leaves version 6
-- as it was. Every row and every column keeps its value.

CREATE TABLE requests_v7 (
    request_id TEXT NOT NULL PRIMARY KEY,
    key_label TEXT,
    key_id TEXT REFERENCES keys (key_id),
    requester TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (
        kind IN ('transaction', 'typed_data', 'message', 'authorization', 'policy_change', 'key_unfreeze')
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
    -- The request whose nonce this one explicitly takes over; NULL for every other request.
    replaces TEXT REFERENCES requests_v7 (request_id),
    -- JSON object of base units per token (EIP-55 address) the request moves or allows.
    token_amounts TEXT NOT NULL DEFAULT '{}',
    -- A request is never marked SIGNED without the signature that makes it so.
    CHECK (state <> 'SIGNED' OR signature IS NOT NULL),
    -- Only a policy change names no key, and a key is always named by both its id and its label.
    CHECK ((key_id IS NULL) = (kind = 'policy_change')),
    CHECK ((key_id IS NULL) = (key_label IS NULL)),
    -- Governance requests take effect when approved; the HSM never signs them.
    CHECK (state <> 'SIGNED' OR kind IN ('transaction', 'typed_data', 'message', 'authorization')),
    -- A claim is a holder together with the moment it lapses.
    CHECK ((claim_holder IS NULL) = (claim_until IS NULL))
);

INSERT INTO requests_v7 (
    request_id, key_label, key_id, requester, kind, chain_id, payload, payload_hash, digest, decision_action,
    decision_rule, decision_reason, policy_version, state, signature, signed_tx, tx_hash, error, summary,
    created_at, updated_at, expires_at, not_before, claim_holder, claim_until, policy_trace, value_wei, quorum,
    timelock_seconds, replaces, token_amounts
)
SELECT
    request_id, key_label, key_id, requester, kind, chain_id, payload, payload_hash, digest, decision_action,
    decision_rule, decision_reason, policy_version, state, signature, signed_tx, tx_hash, error, summary,
    created_at, updated_at, expires_at, not_before, claim_holder, claim_until, policy_trace, value_wei, quorum,
    timelock_seconds, replaces, token_amounts
FROM requests;

CREATE TABLE approvals_v7 (
    request_id TEXT NOT NULL REFERENCES requests_v7 (request_id),
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

INSERT INTO approvals_v7 (request_id, approver, verdict, statement, signature, reason, created_at)
SELECT request_id, approver, verdict, statement, signature, reason, created_at FROM approvals;

-- Which request holds each nonce of a key on a chain, per scope (see the top of this file). The nonce is
-- decimal text because an account nonce reaches 2**64 - 1 and a Safe nonce is a 256-bit integer. The primary
-- key is the unique constraint behind the daemon's "one payload per nonce" check.
CREATE TABLE nonces_v7 (
    key_id TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('account', 'authorization') OR scope LIKE 'safe:0x%'),
    nonce TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests_v7 (request_id),
    payload_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (key_id, chain_id, scope, nonce)
);

INSERT INTO nonces_v7 (key_id, chain_id, scope, nonce, request_id, payload_hash, created_at)
SELECT key_id, chain_id, scope, nonce, request_id, payload_hash, created_at FROM nonces;

DROP TABLE approvals;

DROP TABLE nonces;

DROP TABLE requests;

ALTER TABLE requests_v7 RENAME TO requests;

ALTER TABLE approvals_v7 RENAME TO approvals;

ALTER TABLE nonces_v7 RENAME TO nonces;

CREATE INDEX requests_by_created ON requests (created_at, request_id);
CREATE INDEX requests_by_state ON requests (state, created_at, request_id);
CREATE INDEX requests_by_key ON requests (key_label, created_at, request_id);
CREATE INDEX requests_by_requester ON requests (requester, created_at, request_id);
-- The time-lock worker looks for APPROVED requests whose not_before has passed, the expiry worker for waiting
-- requests whose expires_at has, and velocity limits count a key's approved and signed requests in a window.
CREATE INDEX requests_due ON requests (state, not_before);
CREATE INDEX requests_expiring ON requests (state, expires_at);
CREATE INDEX requests_velocity ON requests (key_label, state, created_at);

CREATE INDEX approvals_in_order ON approvals (request_id, created_at, approver);

-- Releasing a request's nonce when it ends unsigned looks the row up by its holder.
CREATE INDEX nonces_by_request ON nonces (request_id);
