-- The report's numbers at the top: devices by outcome, money, and the run's row counts.
SELECT count(d.run_id) AS devices,
       count(*) FILTER (WHERE d.state = 'HEALTHY') AS healthy,
       count(*) FILTER (WHERE d.failed) AS failed,
       count(*) FILTER (WHERE d.state = 'BRICKED') AS bricked,
       round(coalesce(sum(d.cost_usd), 0), 2) AS cost_usd,
       count(*) FILTER (WHERE d.truck_roll_avoided) AS truck_rolls_avoided,
       round(coalesce(sum(d.cost_avoided_usd), 0), 2) AS cost_avoided_usd,
       any_value(r.rows_in) AS rows_in, any_value(r.rows_clean) AS rows_clean,
       any_value(r.rows_quarantined) AS rows_quarantined,
       any_value(r.blind_devices) AS blind_devices, any_value(r.inputs) AS inputs
FROM runs AS r
JOIN params AS p ON r.run_id = p.run_id
LEFT JOIN device_state AS d ON d.run_id = r.run_id
