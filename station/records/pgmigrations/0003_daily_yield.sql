-- Schema version 3: the yield per day, line, station, work order and
-- result (PGStore.Stats), kept by a trigger in the transaction of every
-- change to a record, so that the factory's stats read a few rows per day
-- rather than every record. A board counts once, on the day of its last
-- update (updated_at, in UTC), under its result.
-- Stations still writing by schema 2 wait until the count and its trigger
-- are both in place, so that no record falls between them.
LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE daily_yield (
	day        date NOT NULL,
	line       text NOT NULL,
	station    text NOT NULL,
	work_order text NOT NULL,
	result     text NOT NULL,
	boards     bigint NOT NULL,
	PRIMARY KEY (day, line, station, work_order, result)
);
INSERT INTO daily_yield (day, line, station, work_order, result, boards)
	SELECT (updated_at AT TIME ZONE 'UTC')::date, line, station, work_order, result, count(*)
	FROM records GROUP BY 1, 2, 3, 4, 5;

CREATE FUNCTION records_yield() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		UPDATE daily_yield SET boards = boards - 1
			WHERE day = (OLD.updated_at AT TIME ZONE 'UTC')::date AND line = OLD.line AND station = OLD.station
			AND work_order = OLD.work_order AND result = OLD.result;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		INSERT INTO daily_yield (day, line, station, work_order, result, boards)
			VALUES ((NEW.updated_at AT TIME ZONE 'UTC')::date, NEW.line, NEW.station, NEW.work_order, NEW.result, 1)
			ON CONFLICT (day, line, station, work_order, result) DO UPDATE SET boards = daily_yield.boards + 1;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER records_yield_insert AFTER INSERT ON records
	FOR EACH ROW EXECUTE FUNCTION records_yield();
CREATE TRIGGER records_yield_update AFTER UPDATE OF updated_at, line, station, work_order, result ON records
	FOR EACH ROW EXECUTE FUNCTION records_yield();
CREATE TRIGGER records_yield_delete AFTER DELETE ON records
	FOR EACH ROW EXECUTE FUNCTION records_yield();
