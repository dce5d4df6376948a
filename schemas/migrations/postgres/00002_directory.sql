-- +goose Up

-- The health directory is stored as generations: an import fills a new
-- generation (COPY in batches, each its own transaction), then one short
-- transaction makes it current. Readers select the current generation
-- only, so they never see half an import. Rows of any other generation are
-- leftovers of an import that was superseded, aborted or crashed, and the
-- next import deletes them.
CREATE TABLE directory_meta (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    current_generation  BIGINT NOT NULL DEFAULT 0, -- 0: never imported
    -- building_generation is the only generation an import may write or
    -- commit; starting another import moves it, which fences off the
    -- older one.
    building_generation BIGINT NOT NULL DEFAULT 0,
    last_generation     BIGINT NOT NULL DEFAULT 0, -- highest ever allocated
    imported_at         TIMESTAMPTZ                -- NULL: never imported
);
INSERT INTO directory_meta (id) VALUES (1);

CREATE TABLE directory_practitioners (
    generation  BIGINT NOT NULL,
    idnat       TEXT NOT NULL,
    rpps        TEXT NOT NULL DEFAULT '',
    civility    TEXT NOT NULL DEFAULT '',
    last_name   TEXT NOT NULL DEFAULT '',
    first_name  TEXT NOT NULL DEFAULT '',
    -- TEXT rather than JSONB: the hub never queries inside them, and TEXT
    -- gives back the bytes the importer wrote.
    professions TEXT NOT NULL DEFAULT '[]',
    activities  TEXT NOT NULL DEFAULT '[]',
    active      BOOLEAN NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (generation, idnat)
);

-- +goose Down
DROP TABLE directory_practitioners;
DROP TABLE directory_meta;
