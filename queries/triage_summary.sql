-- Question: why were reports quarantined? Quarantined rows by primary reason and the column that
-- first showed it (`*` for a row-level reason), with the number of blind devices among them
-- (valid device ids with no clean report at all in the run, whose rows are P1).
-- Columns: primary_reason, column, rows, blind_devices
SELECT t.primary_reason,
       split_part(t.problems[1], ':', 1) AS "column",
       count(*) AS rows,
       count(DISTINCT t.device_key) FILTER (WHERE t.priority = 'P1') AS blind_devices
FROM triage_queue AS t
JOIN params AS p ON t.run_id = p.run_id
GROUP BY ALL
ORDER BY rows DESC, primary_reason, "column";
