-- The part of the page read (`?region=`: x0, y0, x1, y1 in its pixels), NULL where the whole page was.
ALTER TABLE image ADD COLUMN IF NOT EXISTS region INTEGER[];
