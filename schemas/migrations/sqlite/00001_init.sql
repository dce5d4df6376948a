-- +goose Up

-- Times are Unix milliseconds. Positions come from stream_head, which only
-- the single writer touches, inside BEGIN IMMEDIATE.

CREATE TABLE stream_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
);
INSERT INTO stream_head (id, pos) VALUES (1, 0);

CREATE TABLE accounts (
    localpart     TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    admin         INTEGER NOT NULL DEFAULT 0,
    display_name  TEXT NOT NULL DEFAULT '',
    avatar_url    TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);

CREATE TABLE devices (
    localpart    TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    PRIMARY KEY (localpart, device_id)
);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    creator       TEXT NOT NULL,
    last_event_id TEXT NOT NULL DEFAULT '',
    depth         INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- json is a BLOB so the signed PDU comes back byte for byte.
CREATE TABLE events (
    pos        INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    room_id    TEXT NOT NULL REFERENCES rooms (room_id),
    type       TEXT NOT NULL,
    state_key  TEXT,
    sender     TEXT NOT NULL,
    depth      INTEGER NOT NULL,
    origin_ts  INTEGER NOT NULL,
    membership TEXT NOT NULL DEFAULT '',
    json       BLOB NOT NULL
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state_pos ON events (room_id, pos) WHERE state_key IS NOT NULL;

CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    pos        INTEGER NOT NULL REFERENCES events (pos),
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
    created_at INTEGER NOT NULL
);
CREATE INDEX aliases_room ON aliases (room_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    type    TEXT NOT NULL,
    content BLOB NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);

CREATE TABLE receipts (
    room_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    type     TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts       INTEGER NOT NULL,
    pos      INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, type)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

-- AUTOINCREMENT so a deleted filter's ID is never handed out again.
CREATE TABLE filters (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    filter  BLOB NOT NULL
);

CREATE TABLE outbox (
    pos      INTEGER PRIMARY KEY,
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
