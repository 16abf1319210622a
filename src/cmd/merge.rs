//! `merge`: checks a sharded run's shards and publishes it as one run.

use anyhow::Result;

use super::Output;
use crate::cli::MergeArgs;
use crate::support::parallel;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, out: &Output, args: MergeArgs) -> Result<u8> {
    let spinner = out.spinner("merging shards");
    let summary = crate::recover::shard::merge(ws, args.run_id.as_deref(), parallel::threads());
    spinner.finish_and_clear();
    let summary = summary?;
    out.summary(&summary, || {
        format!(
            "merged {} shards\n{}",
            summary.shards,
            super::recover::text(&summary.run)
        )
    })?;
    Ok(0)
}
