-- Schema version 2: what of ours DPS may hold under a record's registration
-- ID, so that a changed enrollment replaces it (bulk mode update) rather
-- than being created over it (which DPS refuses, and the uploader settles
-- as a conflict). '' when DPS holds none of our enrollments for the ID;
-- the etag DPS gave the last one it took, or '*' when it did not say.
ALTER TABLE records ADD COLUMN replaces TEXT NOT NULL DEFAULT '';
