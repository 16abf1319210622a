-- Devices of the run by one column of device_state (the placeholder in braces: state or action).
SELECT {col} AS key, count(*) AS n FROM device_state
WHERE run_id = (SELECT run_id FROM params) GROUP BY {col} ORDER BY {col}
