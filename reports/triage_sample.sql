-- The triage sample: the first 20 quarantined reports, blind spots (P1) first.
SELECT priority, primary_reason, array_to_string(problems, '; ') AS problems, device_id, region,
       hw_model, ota_status, reported_at, source_file, source_row
FROM triage_queue
WHERE run_id = (SELECT run_id FROM params)
ORDER BY priority, source_file, source_row
LIMIT 20
