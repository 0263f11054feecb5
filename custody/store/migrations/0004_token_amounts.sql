-- Version 4: what each request moves or allows per token, for token velocity limits.
--
-- Same conventions as the earlier versions. A JSON object from EIP-55 token address to base units as decimal
-- text (amounts reach 2**256 - 1, beyond any SQL integer); requests from earlier versions count nothing.
ALTER TABLE requests ADD COLUMN token_amounts TEXT NOT NULL DEFAULT '{}';
