-- The original image service's tables, plus what a real service needs: confidences, model versions, indexes,
-- cascade delete, and idempotency keys so that a redelivered message never makes a second row.
CREATE TABLE image (
    id                 UUID PRIMARY KEY,
    path               TEXT,
    creation_timestamp TIMESTAMPTZ NOT NULL DEFAULT now(),
    width              INTEGER,
    height             INTEGER,
    format             TEXT,
    detector_model     TEXT,
    recognizer_model   TEXT,
    timings            JSONB,
    data_stored        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX image_creation_timestamp_idx ON image (creation_timestamp);

CREATE TABLE image_box (
    id         BIGSERIAL PRIMARY KEY,
    image_id   UUID NOT NULL REFERENCES image (id) ON DELETE CASCADE,
    line_index INTEGER NOT NULL,
    word_index INTEGER,            -- NULL for the line itself
    start_x    INTEGER NOT NULL,
    start_y    INTEGER NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    text       TEXT NOT NULL,
    confidence REAL
);
CREATE INDEX image_box_image_id_idx ON image_box (image_id);

CREATE TABLE text_correction (
    id            BIGSERIAL PRIMARY KEY,
    correction_id UUID NOT NULL UNIQUE,
    image_id      UUID NOT NULL REFERENCES image (id) ON DELETE CASCADE,
    line_index    INTEGER,
    value         TEXT NOT NULL,
    created       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX text_correction_image_id_idx ON text_correction (image_id);
