-- Schema version 5: why a board failed, and paging and search that stay
-- fast at a million records.
--
-- cause is the engineer's cause of a failed run (the underlying error, as
-- "upload /lfs/zerotouch/config at offset 0 of 348: on D: fs.file: board
-- error 10 of group 8"); failed_step the pipeline step it failed in. NULL
-- unless the record's last run failed.
ALTER TABLE records ADD COLUMN cause TEXT;
ALTER TABLE records ADD COLUMN failed_step TEXT;

-- Pages are read newest first by (updated_at, id) (records.Page's keyset),
-- with or without a result or upload-state filter.
DROP INDEX records_updated;
CREATE INDEX records_updated ON records (updated_at, id);
CREATE INDEX records_result_updated ON records (result, updated_at, id);
CREATE INDEX records_state_updated ON records (upload_state, updated_at, id);

-- Search (records.Filter.Search): a serial number's prefix in any case
-- uses this index; a registration ID's prefix the UNIQUE index on the
-- column (stored lower case).
CREATE INDEX records_serial_nocase ON records (serial COLLATE NOCASE);

-- A substring of a serial number (three characters or more) is found
-- through this trigram index of the serial numbers. It holds no copy of
-- them (external content: records, by id), and the triggers keep it in
-- step with the table in the transaction of every change.
CREATE VIRTUAL TABLE records_serial_fts USING fts5 (serial, content = 'records', content_rowid = 'id', tokenize = 'trigram');
INSERT INTO records_serial_fts (records_serial_fts) VALUES ('rebuild');

CREATE TRIGGER records_serial_fts_insert AFTER INSERT ON records
BEGIN
	INSERT INTO records_serial_fts (rowid, serial) VALUES (NEW.id, NEW.serial);
END;
CREATE TRIGGER records_serial_fts_update AFTER UPDATE OF id, serial ON records
BEGIN
	INSERT INTO records_serial_fts (records_serial_fts, rowid, serial) VALUES ('delete', OLD.id, OLD.serial);
	INSERT INTO records_serial_fts (rowid, serial) VALUES (NEW.id, NEW.serial);
END;
CREATE TRIGGER records_serial_fts_delete AFTER DELETE ON records
BEGIN
	INSERT INTO records_serial_fts (records_serial_fts, rowid, serial) VALUES ('delete', OLD.id, OLD.serial);
END;
