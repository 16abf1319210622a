-- Question: how has each region's failure rate moved from run to run? Every completed run up to the
-- analyzed one (by as_of, then finish time) takes part; delta is the change from the region's
-- previous run (LAG over the run ledger), null for its first run.
-- Columns: run_id, as_of, region, failure_rate, delta
WITH ledger AS (
    SELECT r.run_id, r.as_of, r.finished_at
    FROM runs AS r, params AS p
    WHERE r.status = 'completed'
      AND (r.as_of < p.as_of OR (r.as_of = p.as_of AND r.finished_at <= p.finished_at))
),
rates AS (
    SELECT l.run_id, l.as_of, l.finished_at, d.region,
           count(*) FILTER (WHERE d.failed) / count(*) AS failure_rate
    FROM ledger AS l
    JOIN device_state AS d ON d.run_id = l.run_id
    GROUP BY l.run_id, l.as_of, l.finished_at, d.region
)
SELECT run_id, as_of, region,
       round(failure_rate, 6) AS failure_rate,
       round(failure_rate - LAG(failure_rate) OVER (PARTITION BY region ORDER BY as_of, finished_at), 6)
           AS delta
FROM rates
ORDER BY as_of, finished_at, region;
