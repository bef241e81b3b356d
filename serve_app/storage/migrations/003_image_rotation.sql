-- How far the upload was turned clockwise to be read (`?rotate=`); boxes are stored in the upload's own pixels.
ALTER TABLE image ADD COLUMN IF NOT EXISTS rotation SMALLINT NOT NULL DEFAULT 0;
