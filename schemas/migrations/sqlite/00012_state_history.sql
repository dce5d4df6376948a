-- +goose Up
-- A room's state as of any stream position, and its history-visibility
-- changes: history visibility is checked on every read path, and "the
-- latest (type, state_key) at or below P" is one index range per key.
CREATE INDEX events_state_history ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;

-- +goose Down
DROP INDEX events_state_history;
