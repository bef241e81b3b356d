-- Which page of a multi-page upload (PDF, TIFF, animated WebP or PNG) the boxes belong to, and how many it holds.
ALTER TABLE image ADD COLUMN IF NOT EXISTS page INTEGER NOT NULL DEFAULT 1;
ALTER TABLE image ADD COLUMN IF NOT EXISTS pages INTEGER NOT NULL DEFAULT 1;
