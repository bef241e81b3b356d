-- Images deleted at their owner's request (`DELETE /api/v1/images/{id}`). A message of one still on its way (in the
-- sidecar's spool, in a queue, redelivered) must not store it again: the archiver drops whatever arrives for an id
-- here. Purged by retention with the images, once nothing that old is kept anyway.
CREATE TABLE IF NOT EXISTS image_deleted (
    id UUID PRIMARY KEY,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS image_deleted_deleted_at ON image_deleted (deleted_at);
