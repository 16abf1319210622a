//! `report` (SPEC section 7): the charts, report.html, report.md and summary.json of one run, in
//! `reports/<run_id>/`.
//!
//! Everything is read from the database through the analytics session (read-only) and written
//! into a fresh temporary folder next to the destination; only a complete report is renamed into
//! place, so a failure or a kill leaves the previous report (or none), never half of one. Every
//! string that comes from the data is escaped for the format it lands in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::analytics::{self, Cell, Session, Table};
use crate::charts::{self, Chart, HeatCell, Heatmap, RoiBar, StateBar};
use crate::classify::REMOTE_ACTIONS;
use crate::sanitize::REASONS;
use crate::workspace::{ASIDE_REPORT, Workspace};

/// How many quarantined rows the report shows.
const TRIAGE_SAMPLE: usize = 20;
/// How many cohorts and gateways the report lists as top bottlenecks.
const TOP: usize = 5;

/// What `report` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ReportSummary {
    pub run_id: String,
    pub dir: String,
    pub files: Vec<String>,
    pub gate: BTreeMap<String, String>,
    pub halted_regions: Vec<String>,
    pub seconds: f64,
}

/// The numbers at the top of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Kpis {
    pub devices: u64,
    pub healthy: u64,
    pub healthy_share: f64,
    pub failed: u64,
    pub failure_rate: f64,
    pub bricked: u64,
    pub rows_in: u64,
    pub rows_clean: u64,
    pub quarantined_rows: u64,
    pub blind_devices: u64,
    pub cost_usd: f64,
    pub truck_rolls_avoided: u64,
    pub cost_avoided_usd: f64,
}

/// Everything the report shows, read from the database.
struct Data {
    run: analytics::Run,
    inputs: Vec<String>,
    kpis: Kpis,
    gate: Table,
    regions: Table,
    cohorts: Table,
    gateways: Table,
    matrix: Table,
    roi: Table,
    sample: Table,
    by_state: BTreeMap<String, u64>,
    by_action: BTreeMap<String, u64>,
    /// Quarantined rows by primary reason (reasons with rows only).
    by_reason: BTreeMap<String, u64>,
}

const KPI_SQL: &str = "
SELECT count(d.run_id) AS devices,
       count(*) FILTER (WHERE d.state = 'HEALTHY') AS healthy,
       count(*) FILTER (WHERE d.failed) AS failed,
       count(*) FILTER (WHERE d.state = 'BRICKED') AS bricked,
       round(coalesce(sum(d.cost_usd), 0), 2) AS cost_usd,
       count(*) FILTER (WHERE d.truck_roll_avoided) AS truck_rolls_avoided,
       round(coalesce(sum(d.cost_avoided_usd), 0), 2) AS cost_avoided_usd,
       any_value(r.rows_in) AS rows_in, any_value(r.rows_clean) AS rows_clean,
       any_value(r.rows_quarantined) AS rows_quarantined,
       any_value(r.blind_devices) AS blind_devices, any_value(r.inputs) AS inputs
FROM runs AS r
JOIN params AS p ON r.run_id = p.run_id
LEFT JOIN device_state AS d ON d.run_id = r.run_id";

const COUNT_SQL: &str = "
SELECT {col} AS key, count(*) AS n FROM device_state
WHERE run_id = (SELECT run_id FROM params) GROUP BY {col} ORDER BY {col}";

const SAMPLE_SQL: &str = "
SELECT priority, primary_reason, array_to_string(problems, '; ') AS problems, device_id, region,
       hw_model, ota_status, reported_at, source_file, source_row
FROM triage_queue
WHERE run_id = (SELECT run_id FROM params)
ORDER BY priority, source_file, source_row
LIMIT 20";

/// Writes the report of `run_id` (default: the run that finished last).
pub fn report(ws: &Workspace, run_id: Option<&str>, threads: usize) -> Result<ReportSummary> {
    let clock = std::time::Instant::now();
    let session = Session::open(ws, run_id, threads)?;
    let data = read(&session)?;
    drop(session);
    let id = &data.run.run_id;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("run id {id:?} cannot name a report folder");
    }

    let charts = charts_of(&data)?;
    let dest = ws.report_dir(id);
    let root = ws.reports_root();
    fs::create_dir_all(&root)
        .with_context(|| format!("creating the reports folder {}", root.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{id}."))
        .tempdir_in(&root)
        .with_context(|| format!("creating a temporary folder in {}", root.display()))?;
    let mut files = Vec::new();
    let mut svgs = Vec::new();
    for chart in &charts {
        let svg = chart.svg()?;
        write(
            staging.path(),
            &format!("{}.svg", chart.name()),
            svg.as_bytes(),
            &mut files,
        )?;
        write(
            staging.path(),
            &format!("{}.png", chart.name()),
            &chart.png()?,
            &mut files,
        )?;
        svgs.push((chart, svg));
    }
    write(
        staging.path(),
        "report.html",
        html(&data, &svgs).as_bytes(),
        &mut files,
    )?;
    write(
        staging.path(),
        "report.md",
        markdown(&data, &charts).as_bytes(),
        &mut files,
    )?;
    files.push("summary.json".into());
    let mut summary_json = serde_json::to_string_pretty(&summary(&data, &files))?;
    summary_json.push('\n');
    write(
        staging.path(),
        "summary.json",
        summary_json.as_bytes(),
        &mut Vec::new(),
    )?;
    publish(staging, &dest, ws.report_aside(id)?)?;

    let decisions = decisions(&data.gate)?;
    Ok(ReportSummary {
        run_id: id.clone(),
        dir: dest.display().to_string(),
        files,
        halted_regions: decisions
            .iter()
            .filter(|(_, d)| *d == "HALT")
            .map(|(r, _)| r.clone())
            .collect(),
        gate: decisions.into_iter().collect(),
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// Writes one file of the report into the staging folder and flushes it.
fn write(dir: &Path, name: &str, bytes: &[u8], files: &mut Vec<String>) -> Result<()> {
    let path = dir.join(name);
    let mut file =
        fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    files.push(name.to_string());
    Ok(())
}

/// Renames the complete staging folder into place. An earlier report of the same run (the same
/// data, so the same content) is first moved into `aside` (from [`Workspace::report_aside`],
/// where a killed process's next sweep finds it and puts it back) and removed after.
fn publish(staging: tempfile::TempDir, dest: &Path, aside: PathBuf) -> Result<()> {
    let staged: PathBuf = staging.keep();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let old = if dest.exists() {
        let kept = aside.join(ASIDE_REPORT);
        fs::rename(dest, &kept)
            .with_context(|| format!("moving the previous report {} aside", dest.display()))?;
        Some(kept)
    } else {
        None
    };
    if let Err(e) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        if let Some(old) = &old {
            let _ = fs::rename(old, dest);
        }
        let _ = fs::remove_dir_all(&aside);
        return Err(e).with_context(|| format!("renaming the report into {}", dest.display()));
    }
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

fn read(session: &Session) -> Result<Data> {
    let kpi = session.query("report KPIs", KPI_SQL)?;
    let row = kpi.rows.first().context("the run has no ledger row")?;
    let int = |name: &str| -> Result<u64> {
        Ok(row[kpi.column(name)?].as_f64().unwrap_or(0.0).max(0.0) as u64)
    };
    let float = |name: &str| -> Result<f64> { Ok(row[kpi.column(name)?].as_f64().unwrap_or(0.0)) };
    let devices = int("devices")?;
    let share = |n: u64| {
        if devices > 0 {
            n as f64 / devices as f64
        } else {
            0.0
        }
    };
    let inputs: Vec<String> = row[kpi.column("inputs")?]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let kpis = Kpis {
        devices,
        healthy: int("healthy")?,
        healthy_share: share(int("healthy")?),
        failed: int("failed")?,
        failure_rate: share(int("failed")?),
        bricked: int("bricked")?,
        rows_in: int("rows_in")?,
        rows_clean: int("rows_clean")?,
        quarantined_rows: int("rows_quarantined")?,
        blind_devices: int("blind_devices")?,
        cost_usd: float("cost_usd")?,
        truck_rolls_avoided: int("truck_rolls_avoided")?,
        cost_avoided_usd: float("cost_avoided_usd")?,
    };
    let builtin = |name: &str| -> Result<Table> {
        session.builtin(analytics::builtin(name).context("a built-in query")?)
    };
    let counts = |col: &str| -> Result<BTreeMap<String, u64>> {
        let t = session.query("report counts", &COUNT_SQL.replace("{col}", col))?;
        Ok(t.rows
            .iter()
            .map(|r| (r[0].text(), r[1].as_f64().unwrap_or(0.0) as u64))
            .collect())
    };
    let triage = builtin("triage_summary")?;
    let mut by_reason = BTreeMap::new();
    for row in &triage.rows {
        *by_reason
            .entry(txt(&triage, row, "primary_reason")?)
            .or_default() += num(&triage, row, "rows")? as u64;
    }
    Ok(Data {
        run: session.run.clone(),
        inputs,
        kpis,
        gate: builtin("rollout_gate")?,
        regions: builtin("region_failure_rank")?,
        cohorts: builtin("cohort_bottlenecks")?,
        gateways: builtin("gateway_hotspots")?,
        matrix: builtin("state_matrix")?,
        roi: builtin("recovery_roi")?,
        sample: session.query("triage sample", SAMPLE_SQL)?,
        by_state: counts("state")?,
        by_action: counts("action")?,
        by_reason,
    })
}

/// A cell by column name.
fn get<'a>(t: &'a Table, row: &'a [Cell], name: &str) -> Result<&'a Cell> {
    Ok(&row[t.column(name)?])
}

fn num(t: &Table, row: &[Cell], name: &str) -> Result<f64> {
    Ok(get(t, row, name)?.as_f64().unwrap_or(0.0))
}

fn txt(t: &Table, row: &[Cell], name: &str) -> Result<String> {
    Ok(get(t, row, name)?.text())
}

/// The regions in configuration order, then any others the data holds, in name order.
fn region_order(data: &Data) -> Result<Vec<String>> {
    let mut order: Vec<String> = data.run.config.regions.clone();
    let mut extra: Vec<String> = Vec::new();
    for row in &data.matrix.rows {
        let r = txt(&data.matrix, row, "region")?;
        if !order.contains(&r) && !extra.contains(&r) {
            extra.push(r);
        }
    }
    extra.sort();
    order.extend(extra);
    // Only regions with devices appear in the charts.
    let present: Vec<String> = data
        .matrix
        .rows
        .iter()
        .map(|row| txt(&data.matrix, row, "region"))
        .collect::<Result<_>>()?;
    Ok(order.into_iter().filter(|r| present.contains(r)).collect())
}

fn charts_of(data: &Data) -> Result<Vec<Chart>> {
    let regions = region_order(data)?;
    let idx = |r: &str| regions.iter().position(|x| x == r);
    let m = &data.matrix;
    let mut models: Vec<String> = Vec::new();
    for row in &m.rows {
        let model = txt(m, row, "hw_model")?;
        if !models.contains(&model) {
            models.push(model);
        }
    }
    models.sort();
    let mut cells = Vec::new();
    let mut bars: BTreeMap<usize, StateBar> = BTreeMap::new();
    for row in &m.rows {
        let Some(region) = idx(&txt(m, row, "region")?) else {
            continue;
        };
        let model = txt(m, row, "hw_model")?;
        let devices = num(m, row, "devices")? as u64;
        cells.push(HeatCell {
            region,
            model: models.iter().position(|x| *x == model).unwrap_or(0),
            devices,
            failure_rate: num(m, row, "failure_rate")?,
        });
        let bar = bars.entry(region).or_insert_with(|| StateBar {
            region: regions[region].clone(),
            devices: 0,
            counts: vec![0; charts::STATES.len()],
        });
        bar.devices += devices;
        for (i, (state, _)) in charts::STATES.iter().enumerate() {
            bar.counts[i] += num(m, row, &state.to_ascii_lowercase())? as u64;
        }
    }
    let mut roi: Vec<RoiBar> = regions
        .iter()
        .map(|r| RoiBar {
            region: r.clone(),
            remote_cost_usd: 0.0,
            cost_avoided_usd: 0.0,
        })
        .collect();
    for row in &data.roi.rows {
        let (Some(i), action) = (
            idx(&txt(&data.roi, row, "region")?),
            txt(&data.roi, row, "action")?,
        ) else {
            continue;
        };
        if REMOTE_ACTIONS.contains(&action.as_str()) {
            roi[i].remote_cost_usd += num(&data.roi, row, "cost_usd")?;
        }
        roi[i].cost_avoided_usd += num(&data.roi, row, "cost_avoided_usd")?;
    }
    let reasons: Vec<(String, u64)> = REASONS
        .iter()
        .map(|r| (r.to_string(), data.by_reason.get(*r).copied().unwrap_or(0)))
        .collect();
    Ok(vec![
        Chart::FailureHeatmap(Heatmap {
            regions,
            models,
            cells,
            halt_failure_rate: data.run.config.gate.halt_failure_rate,
        }),
        Chart::RecoveryRoi(roi),
        Chart::StateBreakdown(bars.into_values().collect()),
        Chart::TriageReasons(reasons),
    ])
}

/// (region, decision) in the gate's order.
fn decisions(gate: &Table) -> Result<Vec<(String, String)>> {
    gate.rows
        .iter()
        .map(|r| Ok((txt(gate, r, "region")?, txt(gate, r, "decision")?)))
        .collect()
}

/// The top cohorts (rank 1 in their region, worst Wilson lower bound first) and gateways (rank 1
/// in their region, highest lift first).
fn top_rows(t: &Table, order_by: &str) -> Result<Vec<Vec<Cell>>> {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for row in &t.rows {
        if num(t, row, "rank")? == 1.0 {
            rows.push(row.clone());
        }
    }
    let key = t.column(order_by)?;
    rows.sort_by(|a, b| {
        let (x, y) = (
            a[key].as_f64().unwrap_or(0.0),
            b[key].as_f64().unwrap_or(0.0),
        );
        y.total_cmp(&x)
    });
    rows.truncate(TOP);
    Ok(rows)
}

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

fn summary(data: &Data, files: &[String]) -> Value {
    let halted: Vec<String> = decisions(&data.gate)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, d)| d == "HALT")
        .map(|(r, _)| r)
        .collect();
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

/// Text made safe for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Text made safe for a Markdown table cell: no pipes, no line breaks, no raw HTML.
pub fn escape_md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            '*' => out.push_str("\\*"),
            '_' => out.push_str("\\_"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A cell as the report shows it: rates as percentages, money as dollars, counts with separators.
fn shown(column: &str, cell: &Cell) -> String {
    match (column, cell) {
        (_, Cell::Null) => "–".to_string(),
        (c, Cell::Float(x)) if c.contains("rate") || c.starts_with("wilson") || c == "share" => {
            format!("{:.2}%", 100.0 * x)
        }
        (c, x) if c.ends_with("_usd") => charts::usd(x.as_f64().unwrap_or(0.0)),
        ("lift", Cell::Float(x)) => format!("{x:.2}×"),
        (_, Cell::Int(n)) if *n >= 0 => charts::count(*n as u64),
        (_, other) => other.text(),
    }
}

/// The KPI tiles: (label, value, note).
fn tiles(k: &Kpis) -> Vec<(&'static str, String, String)> {
    vec![
        (
            "Devices",
            charts::count(k.devices),
            format!("{} reports in", charts::count(k.rows_in)),
        ),
        (
            "Healthy",
            format!("{:.1}%", 100.0 * k.healthy_share),
            format!("{} devices", charts::count(k.healthy)),
        ),
        (
            "Failed",
            charts::count(k.failed),
            format!("{:.2}% of devices", 100.0 * k.failure_rate),
        ),
        (
            "Bricked",
            charts::count(k.bricked),
            "need rollback, service or RMA".into(),
        ),
        (
            "Quarantined rows",
            charts::count(k.quarantined_rows),
            format!("of {} reports", charts::count(k.rows_in)),
        ),
        (
            "Blind devices",
            charts::count(k.blind_devices),
            "no clean report at all".into(),
        ),
        (
            "Cost avoided",
            charts::usd(k.cost_avoided_usd),
            format!(
                "{} truck rolls; actions cost {}",
                charts::count(k.truck_rolls_avoided),
                charts::usd(k.cost_usd)
            ),
        ),
    ]
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Ubuntu,sans-serif;margin:2rem auto;max-width:1240px;color:#212121;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.meta{color:#616161;margin-top:0}.tiles{display:flex;flex-wrap:wrap;gap:.8rem}
.tile{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:140px;flex:1}
.tile .v{font-size:1.7rem;font-weight:600}.tile .l{color:#616161;font-size:.85rem;text-transform:uppercase}
.tile .n{color:#757575;font-size:.8rem}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #eee;padding:.3rem .7rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#fafafa}
.HALT{background:#b71c1c;color:#fff}.WATCH{background:#ffb300}.PROCEED{background:#2e7d32;color:#fff}
.badge{padding:.1rem .5rem;border-radius:4px;font-weight:600;font-size:.8rem}
figure{margin:1.2rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#616161;font-size:.85rem}code{font-size:.85rem}td.wrap{max-width:360px;word-break:break-all}
";

fn html_table(out: &mut String, t: &Table, rows: &[Vec<Cell>], columns: &[&str]) -> Result<()> {
    out.push_str("<table><thead><tr>");
    for c in columns {
        let _ = write!(out, "<th>{}</th>", escape_html(c));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in columns {
            let cell = get(t, row, c)?;
            let text = escape_html(&shown(c, cell));
            if *c == "decision" {
                let _ = write!(out, "<td><span class=\"badge {text}\">{text}</span></td>");
            } else if matches!(cell, Cell::Int(_) | Cell::Float(_)) {
                let _ = write!(out, "<td class=\"num\">{text}</td>");
            } else {
                let _ = write!(out, "<td class=\"wrap\">{text}</td>");
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    Ok(())
}

const GATE_COLUMNS: [&str; 6] = [
    "region",
    "devices",
    "failed",
    "failure_rate",
    "wilson_high",
    "decision",
];
const COHORT_COLUMNS: [&str; 7] = [
    "region",
    "hw_model",
    "firmware_from",
    "firmware_target",
    "devices",
    "failure_rate",
    "wilson_low",
];
const GATEWAY_COLUMNS: [&str; 5] = ["region", "gateway_id", "devices", "failure_rate", "lift"];
const SAMPLE_COLUMNS: [&str; 8] = [
    "priority",
    "primary_reason",
    "problems",
    "device_id",
    "region",
    "reported_at",
    "source_file",
    "source_row",
];

/// An SVG from plotters as inline HTML: no XML namespace URL (HTML does not need it).
fn inline_svg(svg: &str) -> String {
    svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
}

fn html(data: &Data, svgs: &[(&Chart, String)]) -> String {
    let mut out = String::new();
    let id = escape_html(&data.run.run_id);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sentinel OTA report · run {id}</title><style>{CSS}</style></head><body>\n\
         <h1>Sentinel OTA report</h1>\n<p class=\"meta\">Run <code>{id}</code> · as of {} · inputs: {}</p>\n",
        escape_html(&data.run.as_of),
        escape_html(&data.inputs.join(", ")),
    );
    out.push_str("<div class=\"tiles\">\n");
    for (label, value, note) in tiles(&data.kpis) {
        let _ = writeln!(
            out,
            "<div class=\"tile\"><div class=\"l\">{}</div><div class=\"v\">{}</div><div class=\"n\">{}</div></div>",
            escape_html(label),
            escape_html(&value),
            escape_html(&note)
        );
    }
    out.push_str("</div>\n");
    let _ = write!(
        out,
        "<h2>Rollout gate</h2>\n<p>HALT when a region has at least {} devices and a failure rate above {:.2}%; \
         WATCH when the upper bound of its 95% Wilson interval is above it; PROCEED otherwise.</p>\n",
        data.run.config.gate.gate_min_devices,
        100.0 * data.run.config.gate.halt_failure_rate
    );
    let _ = html_table(&mut out, &data.gate, &data.gate.rows, &GATE_COLUMNS);
    out.push_str("<h2>Top bottlenecks</h2>\n<h3>Cohorts (worst in their region, by Wilson lower bound)</h3>\n");
    let cohorts = top_rows(&data.cohorts, "wilson_low").unwrap_or_default();
    let _ = html_table(&mut out, &data.cohorts, &cohorts, &COHORT_COLUMNS);
    out.push_str("<h3>Gateways (worst in their region, by lift over the region)</h3>\n");
    let gateways = top_rows(&data.gateways, "lift").unwrap_or_default();
    let _ = html_table(&mut out, &data.gateways, &gateways, &GATEWAY_COLUMNS);
    out.push_str("<h2>Charts</h2>\n");
    for (chart, svg) in svgs {
        let _ = writeln!(
            out,
            "<figure>{}<figcaption>{} ({}.png, {}.svg)</figcaption></figure>",
            inline_svg(svg),
            escape_html(chart.title()),
            chart.name(),
            chart.name()
        );
    }
    let _ = write!(
        out,
        "<h2>Triage sample</h2>\n<p>The first {} of {} quarantined reports, blind spots (P1) first; \
         the full queue is <code>stage/{}/triage.parquet</code> and the view triage_queue.</p>\n",
        data.sample.rows.len().min(TRIAGE_SAMPLE),
        charts::count(data.kpis.quarantined_rows),
        escape_html(&data.run.run_id)
    );
    let _ = html_table(&mut out, &data.sample, &data.sample.rows, &SAMPLE_COLUMNS);
    out.push_str(
        "<p class=\"meta\">Written by sentinel from sentinel.duckdb.</p>\n</body></html>\n",
    );
    out
}

fn md_table(out: &mut String, t: &Table, rows: &[Vec<Cell>], columns: &[&str]) -> Result<()> {
    let _ = writeln!(out, "| {} |", columns.join(" | ").replace('_', "\\_"));
    let _ = writeln!(
        out,
        "|{}|",
        columns.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| Ok(escape_md(&shown(c, get(t, row, c)?))))
            .collect::<Result<_>>()?;
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    Ok(())
}

fn markdown(data: &Data, charts: &[Chart]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Sentinel OTA report\n\nRun `{}` · as of {} · inputs: {}\n",
        escape_md(&data.run.run_id).replace('`', ""),
        escape_md(&data.run.as_of),
        escape_md(&data.inputs.join(", "))
    );
    out.push_str("| KPI | value | |\n|---|---|---|\n");
    for (label, value, note) in tiles(&data.kpis) {
        let _ = writeln!(
            out,
            "| {label} | **{}** | {} |",
            escape_md(&value),
            escape_md(&note)
        );
    }
    let _ = writeln!(
        out,
        "\n## Rollout gate\n\nHALT when a region has at least {} devices and a failure rate above {:.2}%; \
         WATCH when the upper bound of its 95% Wilson interval is above it; PROCEED otherwise.\n",
        data.run.config.gate.gate_min_devices,
        100.0 * data.run.config.gate.halt_failure_rate
    );
    let _ = md_table(&mut out, &data.gate, &data.gate.rows, &GATE_COLUMNS);
    out.push_str(
        "## Top bottlenecks\n\n### Cohorts (worst in their region, by Wilson lower bound)\n\n",
    );
    let cohorts = top_rows(&data.cohorts, "wilson_low").unwrap_or_default();
    let _ = md_table(&mut out, &data.cohorts, &cohorts, &COHORT_COLUMNS);
    out.push_str("### Gateways (worst in their region, by lift over the region)\n\n");
    let gateways = top_rows(&data.gateways, "lift").unwrap_or_default();
    let _ = md_table(&mut out, &data.gateways, &gateways, &GATEWAY_COLUMNS);
    out.push_str("## Charts\n\n");
    for chart in charts {
        let _ = writeln!(out, "![{}]({}.png)\n", chart.title(), chart.name());
    }
    let _ = writeln!(
        out,
        "## Triage sample\n\nThe first {} of {} quarantined reports, blind spots (P1) first.\n",
        data.sample.rows.len().min(TRIAGE_SAMPLE),
        charts::count(data.kpis.quarantined_rows)
    );
    let _ = md_table(&mut out, &data.sample, &data.sample.rows, &SAMPLE_COLUMNS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape_html("a\u{0}b"), "a\u{FFFD}b");
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(escape_md("a|b\nc<d>"), "a\\|b c&lt;d&gt;");
    }
}
