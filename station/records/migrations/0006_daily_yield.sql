-- Schema version 6: the yield per day, line, station, work order and
-- result (records.Stats), kept by triggers in the transaction of every
-- change to a record, so that the factory's stats read a few rows per day
-- rather than every record. A board counts once, on the day of its last
-- update (updated_at, UTC, its first ten characters), under its result.
CREATE TABLE daily_yield (
	day        TEXT NOT NULL,
	line       TEXT NOT NULL,
	station    TEXT NOT NULL,
	work_order TEXT NOT NULL,
	result     TEXT NOT NULL,
	boards     INTEGER NOT NULL,
	PRIMARY KEY (day, line, station, work_order, result)
);
INSERT INTO daily_yield (day, line, station, work_order, result, boards)
	SELECT substr(updated_at, 1, 10), line, station, work_order, result, count(*)
	FROM records GROUP BY 1, 2, 3, 4, 5;

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
