-- Schema version 2: the DPS quota the factory's uploaders share (PGQuota).
-- One token bucket per DPS service (name: its host name), refilled at
-- per_minute / 60 a second up to one token; a request takes a token, and one taken
-- before it is there leaves the bucket below zero, its uploader waiting
-- until the refill reaches it. A pause DPS asks for (429, Retry-After)
-- is a debt as long as the pause.

CREATE TABLE upload_quota (
	name       text PRIMARY KEY CHECK (name <> ''),
	per_minute double precision NOT NULL CHECK (per_minute > 0),
	tokens     double precision NOT NULL CHECK (tokens <= 1),
	updated_at timestamptz NOT NULL
);
