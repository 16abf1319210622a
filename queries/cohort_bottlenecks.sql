-- Question: within each region, which upgrade cohorts (hw_model, firmware_from -> firmware_target)
-- fail most? Only cohorts of at least params.min_cohort devices take part, ranked by the lower
-- bound of the 95% Wilson score interval so that small cohorts cannot win on noise; top 3 per region.
-- Columns: region, hw_model, firmware_from, firmware_target, devices, failed, failure_rate,
--          wilson_low, rank
WITH cohorts AS (
    SELECT d.region, d.hw_model, d.firmware_from, d.firmware_target,
           count(*) AS devices,
           count(*) FILTER (WHERE d.failed) AS failed
    FROM device_state AS d
    WHERE d.run_id = (SELECT run_id FROM params)
    GROUP BY d.region, d.hw_model, d.firmware_from, d.firmware_target
    HAVING count(*) >= (SELECT min_cohort FROM params)
),
ranked AS (
    SELECT *,
           failed / devices AS failure_rate,
           wilson_low(failed, devices) AS wilson_low,
           RANK() OVER (PARTITION BY region ORDER BY wilson_low(failed, devices) DESC) AS rank
    FROM cohorts
)
SELECT region, hw_model, firmware_from, firmware_target, devices, failed,
       round(failure_rate, 6) AS failure_rate,
       round(wilson_low, 6) AS wilson_low,
       rank
FROM ranked
WHERE rank <= 3
ORDER BY region, rank, hw_model, firmware_from, firmware_target;
