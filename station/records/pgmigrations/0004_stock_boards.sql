-- Schema version 4: boards that run stock MCUmgr firmware (board profile
-- stock).
--
-- serial_sequences holds the counters of the stations' serial numbers
-- from a sequence (NextSerial): last is the last number handed out under
-- name, never handed out again, whichever station asks.
CREATE TABLE serial_sequences (
	name       text PRIMARY KEY CHECK (name <> ''),
	last       bigint NOT NULL CHECK (last >= 0),
	updated_at timestamptz NOT NULL
);

-- A record's attestation may be 'x509-station-key': the station made the
-- device key and wrote it to the board.
ALTER TABLE records DROP CONSTRAINT records_attestation_check;
ALTER TABLE records ADD CONSTRAINT records_attestation_check
	CHECK (attestation IN ('tpm', 'x509-tpm', 'x509-keygen', 'x509-station-key', 'symmetric-key'));
