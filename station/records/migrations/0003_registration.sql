-- Schema version 3: the board's registration with DPS, when the station
-- verified it at the end of the line: its state (assigned, disabled,
-- failed), the IoT hub DPS assigned it to, when, and DPS's refusal.
ALTER TABLE records ADD COLUMN registration_state TEXT NOT NULL DEFAULT '';
ALTER TABLE records ADD COLUMN assigned_hub TEXT NOT NULL DEFAULT '';
ALTER TABLE records ADD COLUMN registered_at TEXT;
ALTER TABLE records ADD COLUMN registration_error TEXT NOT NULL DEFAULT '';
