-- Schema version 4: a board's run in progress. Before the station first
-- writes to a board (a key, firmware, its configuration) its record moves
-- to result 'in_progress', keeping the result it had in previous_result,
-- and only a verified commit makes it 'passed' again: a station that dies
-- mid-run leaves no record saying 'passed' for a board it was changing.
-- SQLite cannot change a CHECK constraint in place, so the table is
-- rebuilt (the migration runs with foreign keys off and checks them after).

CREATE TABLE records_v4 (
	id                 INTEGER PRIMARY KEY,
	serial             TEXT NOT NULL UNIQUE CHECK (serial <> ''),
	model              TEXT NOT NULL DEFAULT '',
	hw                 TEXT NOT NULL DEFAULT '',
	firmware           TEXT NOT NULL DEFAULT '',
	attestation        TEXT NOT NULL CHECK (attestation IN ('tpm', 'x509-tpm', 'x509-keygen', 'symmetric-key')),
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
	CHECK ((enrollment IS NULL) = (upload_state = ''))
);

INSERT INTO records_v4 (id, serial, model, hw, firmware, attestation, registration_id, device_id, ek_public,
	ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256,
	config_path, station, line, slot, operator, work_order, result, message, enrollment, upload_state, upload_error,
	etag, generation, claimed_generation, queue_seq, created_at, updated_at, replaces, registration_state,
	assigned_hub, registered_at, registration_error)
SELECT id, serial, model, hw, firmware, attestation, registration_id, device_id, ek_public,
	ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256,
	config_path, station, line, slot, operator, work_order, result, message, enrollment, upload_state, upload_error,
	etag, generation, claimed_generation, queue_seq, created_at, updated_at, replaces, registration_state,
	assigned_hub, registered_at, registration_error
FROM records;

DROP TABLE records;
ALTER TABLE records_v4 RENAME TO records;

CREATE UNIQUE INDEX records_ek_public ON records (ek_public) WHERE ek_public IS NOT NULL;
CREATE INDEX records_queue ON records (upload_state, queue_seq);
CREATE INDEX records_updated ON records (updated_at);

CREATE TRIGGER records_no_delete BEFORE DELETE ON records
WHEN EXISTS (SELECT 1 FROM audit WHERE record_id = OLD.id)
BEGIN
	SELECT RAISE(ABORT, 'a record with an audit trail cannot be deleted: the audit log is append-only');
END;
