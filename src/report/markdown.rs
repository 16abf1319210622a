//! The Markdown report (to paste into a ticket): reports/report.md filled with the run's values,
//! every one escaped so that no value can break a table or inject markup.

use anyhow::Result;

use super::charts::Chart;
use super::{Data, fill, fragment, get, page_values, shown, tiles};
use crate::analytics::{Cell, Table};

pub(super) const MARKDOWN: &str = include_str!("../../reports/report.md");
pub(super) const KPI_ROW_MD: &str = include_str!("../../reports/kpi_row.md");
pub(super) const FIGURE_MD: &str = include_str!("../../reports/figure.md");

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

/// A table as Markdown (no final line break), every cell escaped.
fn md_table(t: &Table, rows: &[Vec<Cell>], columns: &[&str]) -> Result<String> {
    let mut lines = vec![
        format!("| {} |", columns.join(" | ").replace('_', "\\_")),
        format!(
            "|{}|",
            columns.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        ),
    ];
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| Ok(escape_md(&shown(c, get(t, row, c)?))))
            .collect::<Result<_>>()?;
        lines.push(format!("| {} |", cells.join(" | ")));
    }
    Ok(lines.join("\n"))
}

/// The Markdown report: reports/report.md filled with the run's escaped values.
pub(super) fn markdown(data: &Data, charts: &[Chart]) -> Result<String> {
    let kpi_rows = tiles(&data.kpis)
        .iter()
        .map(|(label, value, note)| {
            fragment(
                KPI_ROW_MD,
                &[
                    ("label", label),
                    ("value", &escape_md(value)),
                    ("note", &escape_md(note)),
                ],
            )
        })
        .collect::<Result<Vec<_>>>()?
        .join("\n");
    let figures = charts
        .iter()
        .map(|chart| {
            fragment(
                FIGURE_MD,
                &[("title", chart.title()), ("name", chart.name())],
            )
        })
        .collect::<Result<Vec<_>>>()?
        .join("\n\n");
    let mut values: Vec<(&str, String)> = vec![
        ("run_id", escape_md(&data.run.run_id).replace('`', "")),
        ("as_of", escape_md(&data.run.as_of)),
        ("inputs", escape_md(&data.inputs.join(", "))),
        ("kpi_rows", kpi_rows),
        ("figures", figures),
    ];
    values.extend(page_values(data, md_table)?);
    let values: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    fill(MARKDOWN, &values)
}
