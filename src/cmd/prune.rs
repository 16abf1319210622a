//! `prune`: keeps the runs that finished last, removes the others' rows and files together.

use anyhow::{Result, bail};

use super::Output;
use crate::cli::PruneArgs;
use crate::support::parallel;
use crate::warehouse;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, out: &Output, args: PruneArgs) -> Result<u8> {
    let summary = step(ws, args.keep)?;
    out.summary(&summary, || {
        format!(
            "kept {} runs, removed {}{}",
            summary.kept.len(),
            summary.removed.len(),
            if summary.removed.is_empty() {
                String::new()
            } else {
                format!(": {}", summary.removed.join(", "))
            }
        )
    })?;
    Ok(0)
}

/// `prune`: the database must exist (there is nothing to prune otherwise).
fn step(ws: &Workspace, keep: u64) -> Result<warehouse::PruneSummary> {
    let db = ws.database();
    if !db.is_file() {
        bail!(
            "no database at {} (run `sentinel recover` or `sentinel run` first)",
            db.display()
        );
    }
    let mut conn = warehouse::open(&db, parallel::threads())?;
    warehouse::prune(&mut conn, ws, usize::try_from(keep).unwrap_or(usize::MAX))
}
