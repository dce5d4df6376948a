-- +goose Up
-- Per-kind heads let /sync skip queries for kinds that did not change
-- since the client's token. They are written in the same transaction as
-- the data, under the stream lock. Existing databases start them at the
-- current position: "may have changed", the safe answer.
ALTER TABLE stream_head
    ADD COLUMN member_pos BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN receipt_pos BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN account_data_pos BIGINT NOT NULL DEFAULT 0;
UPDATE stream_head SET member_pos = pos, receipt_pos = pos, account_data_pos = pos;

-- +goose Down
ALTER TABLE stream_head DROP COLUMN member_pos, DROP COLUMN receipt_pos, DROP COLUMN account_data_pos;
