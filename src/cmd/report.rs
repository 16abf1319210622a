//! `report`: the exec report of one run.

use std::path::Path;

use anyhow::Result;

use super::Output;
use crate::cli::ReportArgs;
use crate::report;
use crate::support::parallel;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, out: &Output, args: ReportArgs) -> Result<u8> {
    let summary = step(ws, args.run_id.as_deref(), out)?;
    out.summary(&summary, || text(&summary))?;
    Ok(0)
}

pub(super) fn step(
    ws: &Workspace,
    run_id: Option<&str>,
    out: &Output,
) -> Result<report::ReportSummary> {
    let spinner = out.spinner("writing the report");
    let summary = report::report(ws, run_id, parallel::threads());
    spinner.finish_and_clear();
    summary
}

pub(super) fn text(s: &report::ReportSummary) -> String {
    format!(
        "report of run {} in {} ({} files, {:.2} s): {}",
        s.run_id,
        s.dir,
        s.files.len(),
        s.seconds,
        Path::new(&s.dir).join("report.html").display()
    )
}
