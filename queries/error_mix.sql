-- Question: which error codes do the devices of each region report, and what share of the region's
-- devices with an error code does each account for? Devices whose latest clean report has no error
-- code are not counted.
-- Columns: region, error_code, devices, share, rank
WITH codes AS (
    SELECT d.region, d.error_code, count(*) AS devices
    FROM device_state AS d
    JOIN params AS p ON d.run_id = p.run_id
    WHERE d.error_code IS NOT NULL
    GROUP BY d.region, d.error_code
)
SELECT region, error_code, devices,
       round(devices / SUM(devices) OVER (PARTITION BY region), 6) AS share,
       RANK() OVER (PARTITION BY region ORDER BY devices DESC) AS rank
FROM codes
ORDER BY region, rank, error_code;
