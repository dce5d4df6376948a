-- +goose Up

-- Consent: an app (a vendor's bridge, an appservice) acts for a
-- practitioner only with proof that the practitioner agreed. Each binding
-- records that proof: psc (a Pro Santé Connect token of the
-- practitioner), link_code (a one-time code the practitioner obtained in
-- a session of their own), session (approved from such a session),
-- insecure (bridge_bind_without_consent_insecure, demos and tests). Rows
-- bound before this migration carry 'legacy': no consent was recorded,
-- so they are honoured only in the insecure mode.
ALTER TABLE bridge_users ADD COLUMN proof TEXT NOT NULL DEFAULT 'legacy';

-- The practitioners who let an appservice's puppets stand for them.
-- user_id is the practitioner's own user ID (@<idNat>:server), not the
-- puppet's: the consent is the person's, whatever the puppet's name.
CREATE TABLE appservice_bindings (
    appservice_id TEXT NOT NULL REFERENCES appservices (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    proof         TEXT NOT NULL,
    bound_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (appservice_id, user_id)
);
CREATE INDEX appservice_bindings_by_user ON appservice_bindings (user_id);

-- One-time link codes. Only a hash of (user, code) is kept: a code works
-- for the practitioner who obtained it and nobody else. door restricts it
-- to one app ("bridge:<id>", "appservice:<id>"), '' for any.
CREATE TABLE link_codes (
    code_hash  BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    door       TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX link_codes_by_user ON link_codes (user_id, created_at);
CREATE INDEX link_codes_by_expiry ON link_codes (expires_at);

-- +goose Down
DROP TABLE link_codes;
DROP TABLE appservice_bindings;
ALTER TABLE bridge_users DROP COLUMN proof;
