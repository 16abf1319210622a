//! `partition`: splits inputs into shards by device.

use anyhow::Result;

use super::{Output, now_whole_seconds};
use crate::cli::PartitionArgs;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, out: &Output, args: PartitionArgs) -> Result<u8> {
    let opts = crate::recover::shard::PartitionOptions {
        inputs: args.input,
        shards: args.shards,
        out: args.out.unwrap_or_else(|| ws.partition_dir()),
        as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
        skip_unknown: args.skip_unknown,
    };
    let spinner = out.spinner("partitioning by device");
    let summary = crate::recover::shard::partition(&opts);
    spinner.finish_and_clear();
    let summary = summary?;
    out.summary(&summary, || {
        format!(
            "{} rows into {} shards in {} ({}; {:.2} s)",
            summary.rows_in,
            summary.shards,
            summary.out,
            summary
                .rows_per_shard
                .iter()
                .enumerate()
                .map(|(k, n)| format!("shard {k}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            summary.seconds
        )
    })?;
    Ok(0)
}
