-- Question: what does each recovery action cost per region, how many truck rolls do the remote
-- actions (RETRY_OTA, DEFER, REMOTE_ROLLBACK) avoid, and what do they return?
-- roi = (cost_avoided_usd - cost_usd) / cost_usd: the net return per dollar spent; null when the
-- action costs nothing (NONE, WAIT); -1 for an action that avoids nothing (a truck roll, an RMA).
-- Columns: region, action, devices, cost_usd, truck_rolls_avoided, cost_avoided_usd, roi
WITH actions AS (
    SELECT d.region, d.action,
           count(*) AS devices,
           sum(d.cost_usd) AS cost_usd,
           count(*) FILTER (WHERE d.truck_roll_avoided) AS truck_rolls_avoided,
           sum(d.cost_avoided_usd) AS cost_avoided_usd
    FROM device_state AS d
    JOIN params AS p ON d.run_id = p.run_id
    GROUP BY d.region, d.action
)
SELECT region, action, devices,
       round(cost_usd, 2) AS cost_usd,
       truck_rolls_avoided,
       round(cost_avoided_usd, 2) AS cost_avoided_usd,
       round((cost_avoided_usd - cost_usd) / nullif(cost_usd, 0), 4) AS roi
FROM actions
ORDER BY region, action;
