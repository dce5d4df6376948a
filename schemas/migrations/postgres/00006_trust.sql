-- +goose Up

-- Accounts that are not a practitioner's own: organisational and
-- applicative accounts (as MSSanté's organisational and applicative
-- mailboxes), each under a responsible practitioner whose directory
-- status decides for the account, and administration accounts, which may
-- use the admin API but never take part in conversations.
CREATE TABLE service_accounts (
    localpart         TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('organisational', 'applicative', 'admin')),
    name              TEXT NOT NULL,
    responsible_idnat TEXT NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL
);

-- Single-use m.login.token tokens issued after an SSO login. Only the
-- SHA-256 of a token is stored; the row is deleted when used.
CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    localpart  TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- revision moves at every change of the current directory (a full import
-- or an incremental sync), so hub instances notice with one cheap read.
ALTER TABLE directory_meta ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE directory_meta DROP COLUMN revision;
DROP TABLE login_tokens;
DROP TABLE service_accounts;
