-- API key lifecycle: when a key was last used, and when a rotated-out key stops working.
--
-- last_used_at is written at most once per minute per key (shared/repo/apikeys.py), never per request: an API
-- process asks PostgreSQL about a key only when its cache of verified keys misses.
-- expires_at is set on the old key by `python -m api keys rotate NAME --grace ...`; NULL means no expiry.
ALTER TABLE api_keys
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN expires_at   timestamptz;

CREATE INDEX api_keys_name ON api_keys (name);
