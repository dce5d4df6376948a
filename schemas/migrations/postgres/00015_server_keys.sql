-- +goose Up

-- Remote servers' signing keys (federation/keys). Every key verified is
-- kept, past its valid_until_ts, to verify the events it signed; a key in
-- a server's old_verify_keys carries when it expired (NULL when the key
-- is not known to be old).
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    valid_until_ts TIMESTAMPTZ NOT NULL,
    expired_ts     TIMESTAMPTZ,
    PRIMARY KEY (server_name, key_id)
);

-- The last self-signed /_matrix/key/v2/server response of each server,
-- byte for byte: the notary (key/v2/query) serves it again, with its
-- own signature added.
CREATE TABLE server_key_responses (
    server_name    TEXT PRIMARY KEY,
    response       BYTEA NOT NULL,
    valid_until_ts TIMESTAMPTZ NOT NULL,
    fetched_at     TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE server_key_responses;
DROP TABLE server_keys;
