-- Key rotation: the key that signed each token, so a retired key stays published
-- exactly while a live token it signed can still be presented.
ALTER TABLE tokens ADD COLUMN kid TEXT;

-- Before rotation existed there was one key: it signed every token.
UPDATE tokens SET kid = (SELECT kid FROM signing_keys ORDER BY created_at DESC, kid LIMIT 1) WHERE kid IS NULL;

CREATE INDEX tokens_kid ON tokens (kid, expires_at);
