-- Schema version 5: the operational certificate chain DPS issued to the
-- board at its registration (api-version 2026-04-01, a line with
-- operational_certificate), as PEM, device certificate first; '' when
-- DPS issued none. It belongs to the registration: a new run clears it
-- with the other registration columns.
ALTER TABLE records ADD COLUMN issued_chain text NOT NULL DEFAULT '';
