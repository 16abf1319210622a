//! summary.json: the run's KPIs, counts, gate decisions and top bottlenecks for machines.

use serde_json::{Map, Value, json};

use super::{Data, decisions, top_rows};
use crate::analytics::{Cell, Table};
use crate::vocab;

fn json_rows(t: &Table, rows: &[Vec<Cell>]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let obj: Map<String, Value> = t
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), serde_json::to_value(v).unwrap_or_default()))
                    .collect();
                Value::Object(obj)
            })
            .collect(),
    )
}

pub(super) fn summary(data: &Data, files: &[String]) -> Value {
    let decisions = decisions(&data.gate).unwrap_or_default();
    let halted = vocab::halted_regions(decisions.iter().map(|(r, d)| (r.as_str(), d.as_str())));
    json!({
        "run_id": data.run.run_id,
        "as_of": data.run.as_of,
        "inputs": data.inputs,
        "kpis": data.kpis,
        "gate": json_rows(&data.gate, &data.gate.rows),
        "halted_regions": halted,
        "top_bottlenecks": {
            "regions": json_rows(&data.regions, &data.regions.rows[..data.regions.rows.len().min(3)]),
            "cohorts": json_rows(&data.cohorts, &top_rows(&data.cohorts, "wilson_low").unwrap_or_default()),
            "gateways": json_rows(&data.gateways, &top_rows(&data.gateways, "lift").unwrap_or_default()),
        },
        "counts": {
            "devices_by_state": data.by_state,
            "devices_by_action": data.by_action,
            "quarantined_by_reason": data.by_reason,
        },
        "files": files,
    })
}
