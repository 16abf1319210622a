-- Question: which regions fail most, ranked so that a small region cannot outrank a large one on
-- noise alone (the rank orders by the lower bound of the 95% Wilson score interval)?
-- Columns: region, devices, failed, failure_rate, wilson_low, wilson_high, rank
-- Reads: device_state of the analyzed run (params.run_id). A device is failed when its state is
-- BRICKED, UNREACHABLE, ROLLED_BACK, PARTIAL or STALLED.
WITH regions AS (
    SELECT d.region,
           count(*) AS devices,
           count(*) FILTER (WHERE d.failed) AS failed
    FROM device_state AS d
    JOIN params AS p ON d.run_id = p.run_id
    GROUP BY d.region
),
scored AS (
    SELECT region, devices, failed,
           failed / devices AS failure_rate,
           wilson_low(failed, devices) AS wilson_low,
           wilson_high(failed, devices) AS wilson_high
    FROM regions
)
SELECT region, devices, failed,
       round(failure_rate, 6) AS failure_rate,
       round(wilson_low, 6) AS wilson_low,
       round(wilson_high, 6) AS wilson_high,
       RANK() OVER (ORDER BY wilson_low DESC) AS rank
FROM scored
ORDER BY rank, region;
