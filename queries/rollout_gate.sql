-- Question: should the rollout proceed in each region? HALT when the region has at least
-- params.gate_min_devices devices and its failure rate exceeds params.halt_failure_rate; WATCH when
-- the upper bound of the rate's 95% Wilson score interval exceeds it (the rate could be too high,
-- or the region is too small to tell); PROCEED otherwise. HALT regions first.
-- Columns: region, devices, failed, failure_rate, wilson_high, decision
WITH regions AS (
    SELECT d.region,
           count(*) AS devices,
           count(*) FILTER (WHERE d.failed) AS failed
    FROM device_state AS d
    JOIN params AS p ON d.run_id = p.run_id
    GROUP BY d.region
),
gated AS (
    SELECT r.region, r.devices, r.failed,
           r.failed / r.devices AS failure_rate,
           wilson_high(r.failed, r.devices) AS wilson_high,
           CASE
               WHEN r.devices >= p.gate_min_devices
                    AND r.failed / r.devices > p.halt_failure_rate THEN 'HALT'
               WHEN wilson_high(r.failed, r.devices) > p.halt_failure_rate THEN 'WATCH'
               ELSE 'PROCEED'
           END AS decision
    FROM regions AS r, params AS p
)
SELECT region, devices, failed,
       round(failure_rate, 6) AS failure_rate,
       round(wilson_high, 6) AS wilson_high,
       decision
FROM gated
ORDER BY CASE decision WHEN 'HALT' THEN 0 WHEN 'WATCH' THEN 1 ELSE 2 END,
         failure_rate DESC, region;
