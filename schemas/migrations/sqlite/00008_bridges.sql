-- +goose Up

-- Bridges: a vendor's credentials for the Bridge Protocol. Each belongs to
-- an operator of the allow-list, which is checked at every connection.
-- Only the token's SHA-256 is kept, so a leaked database leaks no token.
CREATE TABLE bridges (
    id          TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL, -- Unix ms
    revoked_at  INTEGER           -- Unix ms; NULL while the bridge may connect
);
CREATE INDEX bridges_by_operator ON bridges (operator_id);

-- The practitioners each bridge acts for. A practitioner may be bound by
-- several bridges (one per app they use): each receives their events.
CREATE TABLE bridge_users (
    bridge_id TEXT NOT NULL REFERENCES bridges (id),
    user_id   TEXT NOT NULL,
    bound_at  INTEGER NOT NULL, -- Unix ms
    PRIMARY KEY (bridge_id, user_id)
);
CREATE INDEX bridge_users_by_user ON bridge_users (user_id);

-- A user's membership history in a room, for a bridge replaying its
-- backlog: "was this user in the room when that event was sent?".
CREATE INDEX events_member_history ON events (room_id, state_key, pos) WHERE type = 'm.room.member';

-- +goose Down
DROP INDEX events_member_history;
DROP TABLE bridge_users;
DROP TABLE bridges;
