//! `report` (SPEC section 7): the charts, report.html, report.md and summary.json of one run, in
//! `reports/<run_id>/`.
//!
//! Everything is read from the database through the analytics session (read-only) and written
//! into a fresh temporary folder next to the destination; only a complete report is renamed into
//! place, so a failure or a kill leaves the previous report (or none), never half of one. Every
//! string that comes from the data is escaped for the format it lands in.

pub mod charts;
mod html;
mod markdown;
mod summary;

pub use html::escape_html;
pub use markdown::escape_md;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::analytics::{self, Cell, Session, Table};
use crate::vocab::{self, Action, Reason};
use crate::workspace::Workspace;
use charts::{Chart, HeatCell, Heatmap, RoiBar, StateBar};

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

/// The report's own queries and templates (reports/, compiled in like queries/).
const KPI_SQL: &str = include_str!("../../reports/kpis.sql");
const COUNT_SQL: &str = include_str!("../../reports/counts.sql");
const SAMPLE_SQL: &str = include_str!("../../reports/triage_sample.sql");

/// Fills a template: each `{{name}}` becomes its value, which the caller has escaped. A
/// placeholder without a value is an error (the templates' tests render every one).
fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").with_context(|| {
            format!(
                "report template: unclosed placeholder at {:?}",
                &rest[start..rest.len().min(start + 30)]
            )
        })?;
        let name = &after[..end];
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .with_context(|| format!("report template: no value for {{{{{name}}}}}"))?;
        out.push_str(value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills a fragment template (one tile, one figure): its final line break is not part of it.
fn fragment(template: &str, values: &[(&str, &str)]) -> Result<String> {
    fill(template.strip_suffix('\n').unwrap_or(template), values)
}

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
        html::html(&data, &svgs)?.as_bytes(),
        &mut files,
    )?;
    write(
        staging.path(),
        "report.md",
        markdown::markdown(&data, &charts)?.as_bytes(),
        &mut files,
    )?;
    files.push("summary.json".into());
    let mut summary_json = serde_json::to_string_pretty(&summary::summary(&data, &files))?;
    summary_json.push('\n');
    write(
        staging.path(),
        "summary.json",
        summary_json.as_bytes(),
        &mut Vec::new(),
    )?;
    crate::workspace::replace_folder(staging, &dest, ws.report_aside(id)?)?;

    let decisions = decisions(&data.gate)?;
    Ok(ReportSummary {
        run_id: id.clone(),
        dir: dest.display().to_string(),
        files,
        halted_regions: vocab::halted_regions(
            decisions.iter().map(|(r, d)| (r.as_str(), d.as_str())),
        ),
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
            bar.counts[i] += num(m, row, &state.as_str().to_ascii_lowercase())? as u64;
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
        if Action::parse(&action).is_some_and(|a| Action::REMOTE.contains(&a)) {
            roi[i].remote_cost_usd += num(&data.roi, row, "cost_usd")?;
        }
        roi[i].cost_avoided_usd += num(&data.roi, row, "cost_avoided_usd")?;
    }
    let reasons: Vec<(String, u64)> = Reason::ALL
        .iter()
        .map(|r| {
            (
                r.to_string(),
                data.by_reason.get(r.as_str()).copied().unwrap_or(0),
            )
        })
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

/// Renders a table's rows, in the given columns, for one page (HTML or Markdown).
type TableRenderer = fn(&Table, &[Vec<Cell>], &[&str]) -> Result<String>;

/// The values both report pages (HTML and Markdown) fill in the same way: the gate's thresholds,
/// the four tables as `table` renders them, and the triage sample's counts.
fn page_values(data: &Data, table: TableRenderer) -> Result<Vec<(&'static str, String)>> {
    let cohorts = top_rows(&data.cohorts, "wilson_low").unwrap_or_default();
    let gateways = top_rows(&data.gateways, "lift").unwrap_or_default();
    let gate = &data.run.config.gate;
    Ok(vec![
        ("gate_min_devices", gate.gate_min_devices.to_string()),
        (
            "halt_failure_pct",
            format!("{:.2}", 100.0 * gate.halt_failure_rate),
        ),
        (
            "gate_table",
            table(&data.gate, &data.gate.rows, &GATE_COLUMNS)?,
        ),
        (
            "cohort_table",
            table(&data.cohorts, &cohorts, &COHORT_COLUMNS)?,
        ),
        (
            "gateway_table",
            table(&data.gateways, &gateways, &GATEWAY_COLUMNS)?,
        ),
        (
            "sample_shown",
            data.sample.rows.len().min(TRIAGE_SAMPLE).to_string(),
        ),
        ("quarantined", charts::count(data.kpis.quarantined_rows)),
        (
            "sample_table",
            table(&data.sample, &data.sample.rows, &SAMPLE_COLUMNS)?,
        ),
    ])
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

    /// Every placeholder of every template is one the code fills, and nothing else is left.
    #[test]
    fn templates_have_only_known_placeholders() {
        use super::html::{FIGURE_HTML, HTML, TILE_HTML};
        use super::markdown::{FIGURE_MD, KPI_ROW_MD, MARKDOWN};
        let page = [
            "run_id",
            "css",
            "as_of",
            "inputs",
            "tiles",
            "kpi_rows",
            "gate_min_devices",
            "halt_failure_pct",
            "gate_table",
            "cohort_table",
            "gateway_table",
            "figures",
            "sample_shown",
            "quarantined",
            "sample_table",
        ];
        let item = ["label", "value", "note", "svg", "title", "name"];
        for (template, names) in [
            (HTML, &page[..]),
            (MARKDOWN, &page[..]),
            (TILE_HTML, &item[..]),
            (FIGURE_HTML, &item[..]),
            (KPI_ROW_MD, &item[..]),
            (FIGURE_MD, &item[..]),
        ] {
            let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, "V")).collect();
            let out = fill(template, &values).unwrap();
            assert!(!out.contains("{{") && !out.contains("}}"), "{out}");
        }
        assert!(fill("a {{nope}} b", &[]).is_err());
        assert!(fill("a {{open", &[]).is_err());
        assert_eq!(
            fill("<{{x}}>{{x}}", &[("x", "&lt;")]).unwrap(),
            "<&lt;>&lt;"
        );
    }
}
