-- Question: how does the failure rate vary by region and hardware model (the source of the
-- failure heatmap)? The device count of each state follows, for drilling down.
-- Columns: region, hw_model, devices, failed, failure_rate, then healthy, updating, stalled,
--          partial, rolled_back, bricked, unreachable (devices in each state)
SELECT d.region, d.hw_model,
       count(*) AS devices,
       count(*) FILTER (WHERE d.failed) AS failed,
       round(count(*) FILTER (WHERE d.failed) / count(*), 6) AS failure_rate,
       count(*) FILTER (WHERE d.state = 'HEALTHY') AS healthy,
       count(*) FILTER (WHERE d.state = 'UPDATING') AS updating,
       count(*) FILTER (WHERE d.state = 'STALLED') AS stalled,
       count(*) FILTER (WHERE d.state = 'PARTIAL') AS partial,
       count(*) FILTER (WHERE d.state = 'ROLLED_BACK') AS rolled_back,
       count(*) FILTER (WHERE d.state = 'BRICKED') AS bricked,
       count(*) FILTER (WHERE d.state = 'UNREACHABLE') AS unreachable
FROM device_state AS d
JOIN params AS p ON d.run_id = p.run_id
GROUP BY d.region, d.hw_model
ORDER BY d.region, d.hw_model;
