-- Version 5: which freeze an unfreeze lifts, and the daemon's own HSM keys by id.
--
-- Same conventions as the earlier versions. Each freeze of a key counts one more in its freezes column; an
-- unfreeze request names the freeze it lifts by that number, so one approved after a later freeze changes
-- nothing. A key frozen before this version is on its first freeze.
ALTER TABLE keys ADD COLUMN freezes BIGINT NOT NULL DEFAULT 0;

UPDATE keys SET freezes = 1 WHERE state = 'FROZEN';

-- The HSM keys the daemon made for itself (the audit log's checkpoint key), by purpose: the daemon finds them
-- by this CKA_ID (hex), never by label, so a key that anyone else labels the same way is never taken for them.
-- A key pair's public half is kept to check the token's object against; a secret key has none.
CREATE TABLE daemon_keys (
    purpose TEXT NOT NULL PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    public_key BLOB,
    created_at TEXT NOT NULL
);
