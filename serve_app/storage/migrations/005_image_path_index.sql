-- Image files are named by their content and shared by the images that hold the same bytes (the pages of one
-- document, an upload sent twice): a file is removed only when no row names it, which this index answers.
CREATE INDEX IF NOT EXISTS image_path_idx ON image (path);
