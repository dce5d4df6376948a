-- +goose Up

-- stream_pos hands out every position (events, account data, receipts).
-- Values are only drawn while holding the stream advisory lock, so they
-- commit in order; a rolled-back writer leaves a gap, never a reordering.
CREATE SEQUENCE stream_pos AS BIGINT;

-- stream_head is the highest committed position: sequences are not
-- transactional, so the sequence itself cannot answer that.
CREATE TABLE stream_head (
    id  SMALLINT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO stream_head (id, pos) VALUES (1, 0);

CREATE TABLE accounts (
    localpart     TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    display_name  TEXT NOT NULL DEFAULT '',
    avatar_url    TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE devices (
    localpart    TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (localpart, device_id)
);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    creator       TEXT NOT NULL,
    last_event_id TEXT NOT NULL DEFAULT '',
    depth         BIGINT NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL
);

-- json is BYTEA, not JSONB: JSONB reorders keys and rewrites numbers, and
-- the signed PDU must come back byte for byte.
CREATE TABLE events (
    pos        BIGINT PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    room_id    TEXT NOT NULL REFERENCES rooms (room_id),
    type       TEXT NOT NULL,
    state_key  TEXT,
    sender     TEXT NOT NULL,
    depth      BIGINT NOT NULL,
    origin_ts  BIGINT NOT NULL,
    membership TEXT NOT NULL DEFAULT '',
    json       BYTEA NOT NULL
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state_pos ON events (room_id, pos) WHERE state_key IS NOT NULL;

CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    pos        BIGINT NOT NULL REFERENCES events (pos),
    event_id   TEXT NOT NULL,
    membership TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_member ON current_state (state_key, room_id) WHERE type = 'm.room.member';

CREATE TABLE txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX aliases_room ON aliases (room_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    type    TEXT NOT NULL,
    content BYTEA NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);

CREATE TABLE receipts (
    room_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    type     TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts       BIGINT NOT NULL,
    pos      BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, type)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

CREATE TABLE filters (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    filter  BYTEA NOT NULL
);

CREATE TABLE outbox (
    pos      BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    room_id  TEXT NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
DROP TABLE meta;
DROP TABLE outbox;
DROP TABLE filters;
DROP TABLE receipts;
DROP TABLE account_data;
DROP TABLE aliases;
DROP TABLE txns;
DROP TABLE current_state;
DROP TABLE events;
DROP TABLE rooms;
DROP TABLE devices;
DROP TABLE accounts;
DROP TABLE stream_head;
DROP SEQUENCE stream_pos;
