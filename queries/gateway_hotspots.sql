-- Question: within each region, which gateways fail most, and by how much more than their region
-- (lift = the gateway's failure rate over its region's)? Gateways with fewer than
-- params.min_cohort devices are left out so that a gateway with three devices cannot top the list on
-- noise; devices without a gateway count toward their region's rate only. Top 5 per region.
-- Columns: region, gateway_id, devices, failed, failure_rate, lift, rank
WITH run AS (
    SELECT d.* FROM device_state AS d JOIN params AS p ON d.run_id = p.run_id
),
regions AS (
    SELECT region, count(*) FILTER (WHERE failed) / count(*) AS region_rate
    FROM run
    GROUP BY region
),
gateways AS (
    SELECT region, gateway_id,
           count(*) AS devices,
           count(*) FILTER (WHERE failed) AS failed
    FROM run
    WHERE gateway_id IS NOT NULL
    GROUP BY region, gateway_id
    HAVING count(*) >= (SELECT min_cohort FROM params)
),
ranked AS (
    SELECT g.region, g.gateway_id, g.devices, g.failed,
           g.failed / g.devices AS failure_rate,
           (g.failed / g.devices) / nullif(r.region_rate, 0) AS lift,
           RANK() OVER (PARTITION BY g.region ORDER BY g.failed / g.devices DESC) AS rank
    FROM gateways AS g
    JOIN regions AS r USING (region)
)
SELECT region, gateway_id, devices, failed,
       round(failure_rate, 6) AS failure_rate,
       round(lift, 4) AS lift,
       rank
FROM ranked
WHERE rank <= 5
ORDER BY region, rank, gateway_id;
