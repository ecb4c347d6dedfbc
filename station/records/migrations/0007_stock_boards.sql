-- Schema version 7: boards that run stock MCUmgr firmware (board profile
-- stock).
--
-- serial_sequences holds the counters of the stations' serial numbers
-- from a sequence (NextSerial): last is the last number handed out under
-- name, never handed out again.
CREATE TABLE serial_sequences (
	name       TEXT PRIMARY KEY CHECK (name <> ''),
	last       INTEGER NOT NULL CHECK (last >= 0),
	updated_at TEXT NOT NULL
);

-- A record's attestation may be 'x509-station-key': the station made the
-- device key and wrote it to the board. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt (as in version 4), with
-- its indexes and triggers; the ids stay, and with them the audit's
-- references and the serial search index (records_serial_fts, by id).

CREATE TABLE records_v7 (
	id                 INTEGER PRIMARY KEY,
	serial             TEXT NOT NULL UNIQUE CHECK (serial <> ''),
	model              TEXT NOT NULL DEFAULT '',
	hw                 TEXT NOT NULL DEFAULT '',
	firmware           TEXT NOT NULL DEFAULT '',
	attestation        TEXT NOT NULL CHECK (attestation IN ('tpm', 'x509-tpm', 'x509-keygen', 'x509-station-key', 'symmetric-key')),
	registration_id    TEXT UNIQUE CHECK (registration_id = lower(registration_id) AND registration_id <> ''),
	device_id          TEXT NOT NULL DEFAULT '',
	ek_public          BLOB,
	ek_certificate     BLOB,
	ek_cert_status     TEXT NOT NULL DEFAULT '',
	ek_fingerprint     TEXT NOT NULL DEFAULT '',
	certificate_chain  TEXT NOT NULL DEFAULT '',
	cert_serial        TEXT NOT NULL DEFAULT '',
	cert_not_after     TEXT,
	config_sha256      BLOB,
	config_path        TEXT NOT NULL DEFAULT '',
	station            TEXT NOT NULL DEFAULT '',
	line               TEXT NOT NULL DEFAULT '',
	slot               TEXT NOT NULL DEFAULT '',
	operator           TEXT NOT NULL DEFAULT '',
	work_order         TEXT NOT NULL DEFAULT '',
	result             TEXT NOT NULL CHECK (result IN ('passed', 'failed', 'in_progress')),
	-- While result is 'in_progress': the result before this run ('' for a
	-- board seen for the first time). '' otherwise.
	previous_result    TEXT NOT NULL DEFAULT '' CHECK (previous_result IN ('', 'passed', 'failed')),
	message            TEXT NOT NULL DEFAULT '',
	enrollment         TEXT,
	upload_state       TEXT NOT NULL DEFAULT ''
	                   CHECK (upload_state IN ('', 'pending', 'in_flight', 'uploaded', 'failed', 'conflict')),
	upload_error       TEXT NOT NULL DEFAULT '',
	etag               TEXT NOT NULL DEFAULT '',
	generation         INTEGER NOT NULL DEFAULT 0,
	claimed_generation INTEGER,
	queue_seq          INTEGER NOT NULL DEFAULT 0,
	created_at         TEXT NOT NULL,
	updated_at         TEXT NOT NULL,
	replaces           TEXT NOT NULL DEFAULT '',
	registration_state TEXT NOT NULL DEFAULT '',
	assigned_hub       TEXT NOT NULL DEFAULT '',
	registered_at      TEXT,
	registration_error TEXT NOT NULL DEFAULT '',
	cause              TEXT,
	failed_step        TEXT,
	CHECK ((enrollment IS NULL) = (upload_state = ''))
);

INSERT INTO records_v7 (id, serial, model, hw, firmware, attestation, registration_id, device_id, ek_public,
	ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256,
	config_path, station, line, slot, operator, work_order, result, message, enrollment, upload_state, upload_error,
	etag, generation, claimed_generation, queue_seq, created_at, updated_at, replaces, registration_state,
	assigned_hub, registered_at, registration_error, cause, failed_step)
SELECT id, serial, model, hw, firmware, attestation, registration_id, device_id, ek_public,
	ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256,
	config_path, station, line, slot, operator, work_order, result, message, enrollment, upload_state, upload_error,
	etag, generation, claimed_generation, queue_seq, created_at, updated_at, replaces, registration_state,
	assigned_hub, registered_at, registration_error, cause, failed_step
FROM records;

DROP TABLE records;
ALTER TABLE records_v7 RENAME TO records;

CREATE UNIQUE INDEX records_ek_public ON records (ek_public) WHERE ek_public IS NOT NULL;
CREATE INDEX records_queue ON records (upload_state, queue_seq);
CREATE INDEX records_updated ON records (updated_at, id);
CREATE INDEX records_result_updated ON records (result, updated_at, id);
CREATE INDEX records_state_updated ON records (upload_state, updated_at, id);
CREATE INDEX records_serial_nocase ON records (serial COLLATE NOCASE);

CREATE TRIGGER records_no_delete BEFORE DELETE ON records
WHEN EXISTS (SELECT 1 FROM audit WHERE record_id = OLD.id)
BEGIN
	SELECT RAISE(ABORT, 'a record with an audit trail cannot be deleted: the audit log is append-only');
END;

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

CREATE TRIGGER records_yield_insert AFTER INSERT ON records
BEGIN
	INSERT INTO daily_yield (day, line, station, work_order, result, boards)
		VALUES (substr(NEW.updated_at, 1, 10), NEW.line, NEW.station, NEW.work_order, NEW.result, 1)
		ON CONFLICT DO UPDATE SET boards = boards + 1;
END;
CREATE TRIGGER records_yield_update AFTER UPDATE OF updated_at, line, station, work_order, result ON records
BEGIN
	UPDATE daily_yield SET boards = boards - 1
		WHERE day = substr(OLD.updated_at, 1, 10) AND line = OLD.line AND station = OLD.station
		AND work_order = OLD.work_order AND result = OLD.result;
	INSERT INTO daily_yield (day, line, station, work_order, result, boards)
		VALUES (substr(NEW.updated_at, 1, 10), NEW.line, NEW.station, NEW.work_order, NEW.result, 1)
		ON CONFLICT DO UPDATE SET boards = boards + 1;
END;
CREATE TRIGGER records_yield_delete AFTER DELETE ON records
BEGIN
	UPDATE daily_yield SET boards = boards - 1
		WHERE day = substr(OLD.updated_at, 1, 10) AND line = OLD.line AND station = OLD.station
		AND work_order = OLD.work_order AND result = OLD.result;
END;
