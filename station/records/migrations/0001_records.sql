-- Schema version 1: a board's record, its enrollment's place in the upload
-- queue, and the append-only audit log. Times are UTC text in a fixed-width
-- form (2006-01-02T15:04:05.000000000Z), so they sort as text.

CREATE TABLE records (
	id                 INTEGER PRIMARY KEY,
	serial             TEXT NOT NULL UNIQUE CHECK (serial <> ''),
	model              TEXT NOT NULL DEFAULT '',
	hw                 TEXT NOT NULL DEFAULT '',
	firmware           TEXT NOT NULL DEFAULT '',
	attestation        TEXT NOT NULL CHECK (attestation IN ('tpm', 'x509-tpm', 'x509-keygen', 'symmetric-key')),
	-- Lower case (DPS compares IDs case-insensitively); NULL when the board
	-- failed before it had one.
	registration_id    TEXT UNIQUE CHECK (registration_id = lower(registration_id) AND registration_id <> ''),
	device_id          TEXT NOT NULL DEFAULT '',
	ek_public          BLOB,                       -- TPM2B_PUBLIC with its size prefix (TPM modes)
	ek_certificate     BLOB,                       -- DER
	ek_cert_status     TEXT NOT NULL DEFAULT '',
	ek_fingerprint     TEXT NOT NULL DEFAULT '',
	certificate_chain  TEXT NOT NULL DEFAULT '',   -- PEM, device certificate first (x509 modes)
	cert_serial        TEXT NOT NULL DEFAULT '',
	cert_not_after     TEXT,
	config_sha256      BLOB,
	config_path        TEXT NOT NULL DEFAULT '',
	station            TEXT NOT NULL DEFAULT '',
	line               TEXT NOT NULL DEFAULT '',
	slot               TEXT NOT NULL DEFAULT '',
	operator           TEXT NOT NULL DEFAULT '',
	work_order         TEXT NOT NULL DEFAULT '',
	result             TEXT NOT NULL CHECK (result IN ('passed', 'failed')),
	message            TEXT NOT NULL DEFAULT '',
	-- The enrollment to upload, JSON without the service's read-only
	-- fields; NULL when there is nothing to enroll (group modes).
	enrollment         TEXT,
	upload_state       TEXT NOT NULL DEFAULT ''
	                   CHECK (upload_state IN ('', 'pending', 'in_flight', 'uploaded', 'failed', 'conflict')),
	upload_error       TEXT NOT NULL DEFAULT '',
	etag               TEXT NOT NULL DEFAULT '',
	-- generation counts the enrollments queued for this record; a Claim
	-- copies it to claimed_generation, and Settle applies an outcome only
	-- while the two are equal. NULL claimed_generation: no claim out.
	generation         INTEGER NOT NULL DEFAULT 0,
	claimed_generation INTEGER,
	queue_seq          INTEGER NOT NULL DEFAULT 0, -- order of (re-)queueing
	created_at         TEXT NOT NULL,
	updated_at         TEXT NOT NULL,
	CHECK ((enrollment IS NULL) = (upload_state = ''))
);

-- Two records never share an EK: Save flags a clone before it gets here.
CREATE UNIQUE INDEX records_ek_public ON records (ek_public) WHERE ek_public IS NOT NULL;
CREATE INDEX records_queue ON records (upload_state, queue_seq);
CREATE INDEX records_updated ON records (updated_at);

CREATE TABLE audit (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      TEXT NOT NULL,
	record_id INTEGER REFERENCES records (id), -- NULL when no record was written
	serial    TEXT NOT NULL,
	event     TEXT NOT NULL,
	detail    TEXT NOT NULL DEFAULT '',
	operator  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_record ON audit (record_id);
CREATE INDEX audit_serial ON audit (serial);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
-- Every record has audit rows, so no record can go either, whether or not
-- the connection enforces foreign keys.
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
WHEN EXISTS (SELECT 1 FROM audit WHERE record_id = OLD.id)
BEGIN
	SELECT RAISE(ABORT, 'a record with an audit trail cannot be deleted: the audit log is append-only');
END;
