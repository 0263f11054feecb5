-- Version 6: seals, so that writing the database does not give the power to sign.
--
-- Same conventions as the earlier versions. Each row holds the HMAC-SHA256 that the daemon computed in the HSM
-- over one record it relies on before signing (custody/domain/seals.py): a policy version, a request's
-- decision, a request's move to APPROVED with its time-lock, a key's state. The subject names the record
-- ("policy:3", "request:<id>:decision", "request:<id>:approved", "key:<label>"); the sealed bytes name it too,
-- so a seal moved to another subject does not verify. Rows written before this version have no seal here:
-- the daemon seals them at its first start on this version and says so in its log and in the audit log.
CREATE TABLE seals (
    subject TEXT NOT NULL PRIMARY KEY,
    seal BLOB NOT NULL
);
