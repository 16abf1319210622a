//! The HTML report: reports/report.html filled with the run's values, every one HTML-escaped,
//! the charts' SVG inlined, no script and no external URL.

use std::fmt::Write as _;

use anyhow::Result;

use super::charts::Chart;
use super::{Data, fill, fragment, get, page_values, shown, tiles};
use crate::analytics::{Cell, Table};

pub(super) const CSS: &str = include_str!("../../reports/report.css");
pub(super) const HTML: &str = include_str!("../../reports/report.html");
pub(super) const TILE_HTML: &str = include_str!("../../reports/tile.html");
pub(super) const FIGURE_HTML: &str = include_str!("../../reports/figure.html");

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

/// A table as HTML (no final line break): numbers right-aligned, decisions as badges.
fn html_table(t: &Table, rows: &[Vec<Cell>], columns: &[&str]) -> Result<String> {
    let mut out = String::from("<table><thead><tr>");
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
    out.push_str("</tbody></table>");
    Ok(out)
}

/// An SVG from plotters as inline HTML: no XML namespace URL (HTML does not need it).
fn inline_svg(svg: &str) -> String {
    svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
}

/// The HTML report: reports/report.html filled with the run's escaped values.
pub(super) fn html(data: &Data, svgs: &[(&Chart, String)]) -> Result<String> {
    let id = escape_html(&data.run.run_id);
    let tiles = tiles(&data.kpis)
        .iter()
        .map(|(label, value, note)| {
            fragment(
                TILE_HTML,
                &[
                    ("label", &escape_html(label)),
                    ("value", &escape_html(value)),
                    ("note", &escape_html(note)),
                ],
            )
        })
        .collect::<Result<Vec<_>>>()?
        .join("\n");
    let figures = svgs
        .iter()
        .map(|(chart, svg)| {
            fragment(
                FIGURE_HTML,
                &[
                    ("svg", &inline_svg(svg)),
                    ("title", &escape_html(chart.title())),
                    ("name", chart.name()),
                ],
            )
        })
        .collect::<Result<Vec<_>>>()?
        .join("\n");
    let mut values: Vec<(&str, String)> = vec![
        ("run_id", id),
        ("css", CSS.to_string()),
        ("as_of", escape_html(&data.run.as_of)),
        ("inputs", escape_html(&data.inputs.join(", "))),
        ("tiles", tiles),
        ("figures", figures),
    ];
    values.extend(page_values(data, html_table)?);
    let values: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    fill(HTML, &values)
}
