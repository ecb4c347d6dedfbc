-- Schema version 1 of the records on PostgreSQL: the factory's records,
-- shared by its stations. The same tables as the SQLite store's schema
-- version 5 (station/records/migrations), with PostgreSQL's types, and
-- what many stations and uploaders at once need: a sequence for the
-- queue's order, and a lease on each claim (claimed_by, lease_until).

CREATE TABLE records (
	id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	serial             text NOT NULL UNIQUE CHECK (serial <> ''),
	model              text NOT NULL DEFAULT '',
	hw                 text NOT NULL DEFAULT '',
	firmware           text NOT NULL DEFAULT '',
	attestation        text NOT NULL CHECK (attestation IN ('tpm', 'x509-tpm', 'x509-keygen', 'symmetric-key')),
	-- Lower case (DPS compares IDs case-insensitively); NULL when the board
	-- failed before it had one. Unique across the factory.
	registration_id    text UNIQUE CHECK (registration_id = lower(registration_id) AND registration_id <> ''),
	device_id          text NOT NULL DEFAULT '',
	ek_public          bytea,                      -- TPM2B_PUBLIC with its size prefix (TPM modes)
	ek_certificate     bytea,                      -- DER
	ek_cert_status     text NOT NULL DEFAULT '',
	ek_fingerprint     text NOT NULL DEFAULT '',
	certificate_chain  text NOT NULL DEFAULT '',   -- PEM, device certificate first (x509 modes)
	cert_serial        text NOT NULL DEFAULT '',
	cert_not_after     timestamptz,
	config_sha256      bytea,
	config_path        text NOT NULL DEFAULT '',
	station            text NOT NULL DEFAULT '',
	line               text NOT NULL DEFAULT '',
	slot               text NOT NULL DEFAULT '',
	operator           text NOT NULL DEFAULT '',
	work_order         text NOT NULL DEFAULT '',
	result             text NOT NULL CHECK (result IN ('passed', 'failed', 'in_progress')),
	previous_result    text NOT NULL DEFAULT '' CHECK (previous_result IN ('', 'passed', 'failed')),
	message            text NOT NULL DEFAULT '',
	cause              text,
	failed_step        text,
	-- The enrollment to upload, JSON text without the service's read-only
	-- fields (text, not jsonb: Save compares it byte for byte).
	enrollment         text,
	upload_state       text NOT NULL DEFAULT ''
	                   CHECK (upload_state IN ('', 'pending', 'in_flight', 'uploaded', 'failed', 'conflict')),
	upload_error       text NOT NULL DEFAULT '',
	etag               text NOT NULL DEFAULT '',
	replaces           text NOT NULL DEFAULT '',
	-- generation counts the enrollments queued for this record; a Claim
	-- copies it to claimed_generation and names its uploader in claimed_by,
	-- whose lease runs to lease_until (renewed while the uploader lives).
	generation         bigint NOT NULL DEFAULT 0,
	claimed_generation bigint,
	claimed_by         text,
	lease_until        timestamptz,
	queue_seq          bigint NOT NULL DEFAULT 0, -- order of (re-)queueing
	registration_state text NOT NULL DEFAULT '',
	assigned_hub       text NOT NULL DEFAULT '',
	registered_at      timestamptz,
	registration_error text NOT NULL DEFAULT '',
	created_at         timestamptz NOT NULL,
	updated_at         timestamptz NOT NULL,
	CHECK ((enrollment IS NULL) = (upload_state = '')),
	CHECK ((claimed_generation IS NULL) = (claimed_by IS NULL) AND (claimed_by IS NULL) = (lease_until IS NULL))
);

CREATE SEQUENCE records_queue_seq;

-- Two records never share an EK, factory-wide: Save flags a clone before
-- it gets here, and two stations racing with the same EK meet here.
CREATE UNIQUE INDEX records_ek_public ON records (ek_public) WHERE ek_public IS NOT NULL;
-- The queue: what Claim looks through.
CREATE INDEX records_queue ON records (queue_seq) WHERE upload_state IN ('pending', 'in_flight');
-- A live uploader renews its claims' leases.
CREATE INDEX records_claims ON records (claimed_by) WHERE claimed_by IS NOT NULL;
-- Pages are read newest first by (updated_at, id).
CREATE INDEX records_updated ON records (updated_at, id);
CREATE INDEX records_result_updated ON records (result, updated_at, id);
CREATE INDEX records_state_updated ON records (upload_state, updated_at, id);
-- Search: a serial number's prefix in any case, a registration ID's prefix.
CREATE INDEX records_serial_lower ON records (lower(serial) text_pattern_ops);
CREATE INDEX records_registration_prefix ON records (registration_id text_pattern_ops);
-- Statistics by line, station and work order.
CREATE INDEX records_line_station ON records (line, station, work_order, updated_at);

CREATE TABLE audit (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time      timestamptz NOT NULL,
	record_id bigint REFERENCES records (id), -- NULL when no record was written
	serial    text NOT NULL,
	event     text NOT NULL,
	detail    text NOT NULL DEFAULT '',
	operator  text NOT NULL DEFAULT ''
);
CREATE INDEX audit_record ON audit (record_id);
CREATE INDEX audit_serial ON audit (serial);

-- The audit log is append-only, whoever connects (the foreign key keeps a
-- record with audit rows from being deleted too).
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- A substring of a serial number is found through pg_trgm's trigram
-- index when the extension can be had (Debian's postgresql package holds
-- it; a role that may not create it gets none, and the same search reads
-- the table instead).
DO $$
BEGIN
	CREATE EXTENSION IF NOT EXISTS pg_trgm;
	CREATE INDEX records_serial_trgm ON records USING gin (serial gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'no trigram index for serial number search: %', SQLERRM;
END
$$;
